"""What `vdit app` does with one request, without Gradio (so it is testable without a browser).

One run: parse the sentences (one per line), check the limits (sentences, characters, frames), run the
predictor window by window through `vdit segment`'s writer (`vdit.inference.export.segment_to_dir`:
masks/<i>/<frame>.png, overlay.mp4, summary.json), then add a frame strip (a few overlay frames and a
legend of each sentence's colour) and a zip of the mask PNGs. Every user mistake is a one-line
`VditError` whose message the page shows as it is.

Run folders live under one work root; only the last KEEP_RUNS are kept (Gradio copies what it serves
into its own cache, so an older run folder is never needed again).
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vdit.app import DEFAULT_MAX_FRAMES, DEFAULT_WINDOW  # noqa: F401 (re-exported)
from vdit.errors import InputError, VditError
from vdit.inference.export import FRAME_NAME, MASKS_DIR, OVERLAY_NAME, SUMMARY_NAME, segment_to_dir
from vdit.inference.io import FrameSource, VideoWriter, open_source
from vdit.inference.overlay import TEXT_COLORS, overlay_masks, text_color
from vdit.inference.predictor import VDITPredictor, normalize_texts

# One colour per sentence: beyond len(TEXT_COLORS) two sentences would share a colour in the overlay.
MAX_SENTENCES = len(TEXT_COLORS)
# Referring expressions are short; CLIP-style text encoders truncate long inputs silently (77 tokens).
MAX_SENTENCE_CHARS = 200
KEEP_RUNS = 4

OUT_DIR = "out"
STRIP_NAME = "frame_strip.png"
MASKS_ZIP = "masks.zip"
RUN_PREFIX = "run-"

# Frame strip layout (pixels).
STRIP_FRAMES = 6
STRIP_TILE_HEIGHT = 128
STRIP_GAP = 8
STRIP_LABEL_HEIGHT = 16
LEGEND_LINE_HEIGHT = 18
LEGEND_SWATCH = 12
STRIP_BACKGROUND = (255, 255, 255)
STRIP_INK = (0, 0, 0)

GENERATED_PREFIX = "vdit-generated-clip"
BUILTIN_LABEL = "built-in miniature model"
REAL_VIDEO_NOTE = ("The built-in model is a miniature one trained only on generated clips of coloured shapes: "
                   "its masks on a real video mean nothing (start the app with --weights DIR for a real model).")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".ogv")

Progress = Callable[[int, "int | None", str], None]


# ---------------------------------------------------------------------------------------------- inputs


def parse_sentences(text: str | None) -> list[str]:
    """The text box -> referring expressions: one per non-blank line, whitespace collapsed."""
    sentences = [line for line in (" ".join(raw.split()) for raw in (text or "").splitlines()) if line]
    if not sentences:
        raise InputError("type at least one sentence (one per line)")
    if len(sentences) > MAX_SENTENCES:
        raise InputError(f"{len(sentences)} sentences: at most {MAX_SENTENCES} (one colour each)")
    for i, sentence in enumerate(sentences):
        if len(sentence) > MAX_SENTENCE_CHARS:
            raise InputError(f"sentence {i + 1} is too long ({len(sentence)} characters; at most {MAX_SENTENCE_CHARS})")
    return normalize_texts(sentences)


def parse_first_frames(value: Any) -> int | None:
    """'first frames only' field: None or 0 = the whole video, else a positive whole number."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"'first frames only' must be a whole number, got {value!r}") from exc
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise InputError(f"'first frames only' must be 0 (all) or a positive whole number, got {value!r}")
    return int(number) or None


def expected_frames(source: FrameSource) -> int | None:
    """Frame count known before decoding (a video container's declaration may be absent: None)."""
    known = len(source.files) if source.kind != "video" else source.declared_frames
    if source.max_frames is not None:
        return source.max_frames if known is None else min(known, source.max_frames)
    return known


def _mention_name_only(message: str, path: Path) -> str:
    """Uploads live under long cache paths; the page names the file only."""
    for long in {str(path.resolve()), str(path)}:
        message = message.replace(long, path.name)
    return message


@dataclass
class _CappedSource(FrameSource):
    """A FrameSource that refuses to yield more than `cap` frames (a container may under-declare)."""

    cap: int = DEFAULT_MAX_FRAMES

    def __iter__(self) -> Iterator[np.ndarray]:
        for i, frame in enumerate(super().__iter__()):
            if i >= self.cap:
                raise InputError(f"the video has more than {self.cap} frames, this app's limit: "
                                 "set 'first frames only' (or start the app with a larger --max-frames)")
            yield frame


# ---------------------------------------------------------------------------------------------- outputs


def strip_indices(num_frames: int, count: int = STRIP_FRAMES) -> list[int]:
    """Evenly spaced frame indices (first and last included) for the frame strip."""
    if num_frames <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, min(count, num_frames))})


def _read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img) > 0


def _tile(frame: np.ndarray) -> Image.Image:
    """One overlay frame at the strip's height: nearest when enlarging (tiny clips stay crisp)."""
    h, w = frame.shape[:2]
    scale = STRIP_TILE_HEIGHT / h
    size = (max(1, round(w * scale)), STRIP_TILE_HEIGHT)
    return Image.fromarray(frame).resize(size, Image.NEAREST if scale >= 1 else Image.BILINEAR)


def write_frame_strip(frames: Iterator[np.ndarray] | FrameSource, masks_dir: Path, texts: list[str],
                      num_frames: int, dest: Path) -> Path:
    """A row of overlay frames (each sentence tinted in its colour, as in overlay.mp4 but from the
    lossless PNG masks) with the frame numbers, then one legend line per sentence: its colour swatch,
    its number and its text."""
    picks = strip_indices(num_frames)
    wanted = set(picks)
    tiles: list[tuple[int, Image.Image]] = []
    for t, frame in enumerate(frames):
        if t in wanted:
            masks = np.stack([_read_mask(masks_dir / str(s) / FRAME_NAME.format(t)) for s in range(len(texts))])
            tiles.append((t, _tile(overlay_masks(frame, masks))))
        if t >= picks[-1]:
            break
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    legend = [f"{s + 1}: {text}" for s, text in enumerate(texts)]
    legend_w = max(int(measure.textlength(line, font=font)) for line in legend) + LEGEND_SWATCH + 3 * STRIP_GAP
    tiles_w = sum(tile.width for _, tile in tiles) + (len(tiles) + 1) * STRIP_GAP
    height = STRIP_GAP + STRIP_TILE_HEIGHT + STRIP_LABEL_HEIGHT + len(texts) * LEGEND_LINE_HEIGHT + STRIP_GAP
    canvas = Image.new("RGB", (max(tiles_w, legend_w), height), STRIP_BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    x = STRIP_GAP
    for t, tile in tiles:
        canvas.paste(tile, (x, STRIP_GAP))
        draw.text((x, STRIP_GAP + STRIP_TILE_HEIGHT + 2), f"frame {t}", fill=STRIP_INK, font=font)
        x += tile.width + STRIP_GAP
    y = STRIP_GAP + STRIP_TILE_HEIGHT + STRIP_LABEL_HEIGHT
    for s, line in enumerate(legend):
        top = y + s * LEGEND_LINE_HEIGHT + (LEGEND_LINE_HEIGHT - LEGEND_SWATCH) // 2
        draw.rectangle((STRIP_GAP, top, STRIP_GAP + LEGEND_SWATCH - 1, top + LEGEND_SWATCH - 1), fill=text_color(s))
        draw.text((2 * STRIP_GAP + LEGEND_SWATCH, y + s * LEGEND_LINE_HEIGHT + 3), line, fill=STRIP_INK, font=font)
    canvas.save(dest)
    return dest


def zip_masks(masks_dir: Path, dest: Path) -> Path:
    """masks/<sentence>/<frame>.png -> one zip with the same layout (stored: PNGs are compressed)."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as zf:
        for sentence_dir in sorted(masks_dir.iterdir(), key=lambda p: int(p.name)):
            for png in sorted(sentence_dir.glob("*.png")):
                zf.write(png, arcname=f"{MASKS_DIR}/{sentence_dir.name}/{png.name}")
    return dest


# ---------------------------------------------------------------------------------------------- samples


@dataclass
class Sample:
    """A video the page offers without an upload, with sentences to start from."""

    label: str
    path: Path
    sentences: list[str]
    generated: bool = False


def is_generated_clip(path: str | Path) -> bool:
    """The generated demo clip keeps its file name through Gradio's upload cache."""
    return Path(path).name.startswith(GENERATED_PREFIX)


def generated_sample(folder: Path, seed: int | None = None) -> Sample:
    """The `vdit demo` clip (miniature world, never seen in training) as an mp4, and its two sentences."""
    from vdit.mini.demo import DEMO_FPS, DEMO_SEED, demo_clip

    seed = DEMO_SEED if seed is None else seed
    video, expressions = demo_clip(seed)
    path = Path(folder) / f"{GENERATED_PREFIX}-seed{seed}.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.partial.mp4")
        with VideoWriter(tmp, DEMO_FPS) as writer:
            for frame in video.frames:
                writer.write(frame)
        os.replace(tmp, path)
    return Sample(f"generated clip (miniature world, seed {seed})", path, [e.text for e in expressions], True)


_CAPTION_ROW = re.compile(r'^\|\s*([^|]+?)\s*\|\s*"?([^"|]+?)"?\s*\|')


def read_captions(folder: Path) -> dict[str, str]:
    """File name -> caption from a README.md table `| file | "caption" |` beside the videos (optional)."""
    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return {}
    captions = {}
    for line in readme.read_text(errors="replace").splitlines():
        match = _CAPTION_ROW.match(line.strip())
        if match and Path(match.group(1)).suffix.lower() in VIDEO_SUFFIXES:
            captions[match.group(1)] = match.group(2)
    return captions


def folder_samples(folder: Path | None) -> list[Sample]:
    """The video files of a folder (e.g. ../shared/videos beside a checkout), captions as sentences."""
    if folder is None or not Path(folder).is_dir():
        return []
    captions = read_captions(Path(folder))
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    return [Sample(p.name, p.resolve(), [captions[p.name]] if p.name in captions else []) for p in files]


def default_samples_dir() -> Path | None:
    """../shared/videos beside a source checkout, when present (never copied into the package)."""
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "videos"
    return folder if folder.is_dir() else None


# ---------------------------------------------------------------------------------------------- a run


@dataclass
class AppResult:
    """What one request produced: the files the page shows / offers, and its status lines."""

    run_dir: Path
    overlay: Path
    strip: Path
    masks_zip: Path
    summary: Path
    num_frames: int
    texts: list[str]
    message: str
    note: str | None = None  # the built-in model on a real video


class SegmentApp:
    """The page's back end: one predictor (built once), runs written under `work_root`."""

    def __init__(self, predictor: VDITPredictor, work_root: str | Path, weights: str | None = None,
                 max_frames: int = DEFAULT_MAX_FRAMES, keep_runs: int = KEEP_RUNS):
        if max_frames < 1:
            raise InputError(f"max_frames must be >= 1, got {max_frames}")
        self.predictor = predictor
        self.work_root = Path(work_root)
        self.work_root.mkdir(parents=True, exist_ok=True)
        self.weights = weights
        self.max_frames = int(max_frames)
        self.keep_runs = max(1, int(keep_runs))

    @property
    def model_label(self) -> str:
        return BUILTIN_LABEL if self.weights is None else f"weights {self.weights}"

    def _prune_runs(self) -> None:
        runs = sorted(self.work_root.glob(RUN_PREFIX + "*"), key=lambda p: p.stat().st_mtime)
        for old in runs[:max(0, len(runs) - (self.keep_runs - 1))]:
            shutil.rmtree(old, ignore_errors=True)

    def open_video(self, video: str | Path | None, first_frames: int | None) -> FrameSource:
        """Probe the input and check the frame limit before any model work."""
        if video is None or not str(video).strip():
            raise InputError("upload a video or pick a sample")
        if first_frames is not None and first_frames > self.max_frames:
            raise InputError(f"'first frames only' is {first_frames}; this app segments at most {self.max_frames} frames")
        path = Path(video)
        try:
            source = open_source(path, max_frames=first_frames)
        except VditError as exc:
            raise type(exc)(_mention_name_only(str(exc), path)) from exc
        known = expected_frames(source)
        if known is not None and known > self.max_frames:
            raise InputError(f"the video has {known} frames; this app segments at most {self.max_frames}: "
                             "set 'first frames only' (or start the app with a larger --max-frames)")
        return _CappedSource(**vars(source), cap=self.max_frames)

    def run(self, video: str | Path | None, text: str | None, first_frames: Any = None,
            progress: Progress | None = None) -> AppResult:
        """Segment the sentences of `text` (one per line) in `video`; VditError (one line) on bad input."""
        start = time.perf_counter()
        texts = parse_sentences(text)
        source = self.open_video(video, parse_first_frames(first_frames))
        total = expected_frames(source)
        self._prune_runs()
        run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=self.work_root))
        out = run_dir / OUT_DIR
        if progress is not None:
            progress(0, total, "segmenting")

        def on_window(win: Any) -> None:
            if progress is not None:
                done = win.end if total is None else min(win.end, total)
                progress(done, total, f"frames {win.start}-{win.end - 1}")

        try:
            summary = segment_to_dir(self.predictor, source, texts, out, progress=on_window,
                                     extra={"weights": self.weights or "built-in", "app": True})
            num_frames = int(summary["num_frames"])
            strip = write_frame_strip(source, out / MASKS_DIR, texts, num_frames, run_dir / STRIP_NAME)
            masks_zip = zip_masks(out / MASKS_DIR, run_dir / MASKS_ZIP)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        elapsed = time.perf_counter() - start
        plural = "" if len(texts) == 1 else "s"
        message = (f"Segmented {num_frames} frames × {len(texts)} sentence{plural} in {elapsed:.1f} s "
                   f"({self.model_label}).")
        note = REAL_VIDEO_NOTE if self.weights is None and not is_generated_clip(source.path) else None
        return AppResult(run_dir=run_dir, overlay=out / OVERLAY_NAME, strip=strip, masks_zip=masks_zip,
                         summary=out / SUMMARY_NAME, num_frames=num_frames, texts=texts, message=message, note=note)
