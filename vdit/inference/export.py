"""Segment a video file / frames folder / image and write masks, an overlay video and a summary.

Output layout (DIR = the output directory):

    DIR/masks/<text_index>/<frame:05d>.png   8-bit grey, 0 / 255, original resolution
    DIR/overlay.mp4                          the frames with each text's masks tinted in its colour
    DIR/summary.json                         texts, windows, chosen query per window, per-frame scores...

Completeness: everything is first written into a fresh `DIR/.partial-<pid>@<host>-XXXXXXXX` folder. Only
after the last frame is written are the outputs moved into DIR, `summary.json` last (and any older
summary.json removed first), so `summary.json` present in DIR means the masks and overlay beside it are
complete and belong to it. A failure removes the partial folder and leaves DIR as it was (a DIR this run
created is removed again). A partial folder left by a killed run (its process no longer running on this
host) is removed by the next run into DIR. summary.json is strict JSON: a non-finite score is `null`.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vdit.errors import InputError
from vdit.inference.io import FrameSource, VideoWriter, write_mask_png
from vdit.inference.overlay import overlay_masks, text_color
from vdit.inference.predictor import VDITPredictor, normalize_texts

MASKS_DIR = "masks"
OVERLAY_NAME = "overlay.mp4"
SUMMARY_NAME = "summary.json"
PARTIAL_PREFIX = ".partial-"
FRAME_NAME = "{:05d}.png"
SCORE_DIGITS = 6  # rounding of scores in summary.json


def summary_json(summary: dict[str, Any]) -> str:
    """Strict JSON (non-finite numbers as null) with one top-level key per line (per-frame lists stay on
    one line each)."""
    from vdit.fileio import dumps_json

    items = [f"  {json.dumps(k)}: {dumps_json(v)}" for k, v in summary.items()]
    return "{\n" + ",\n".join(items) + "\n}\n"


def _partial_prefix() -> str:
    """Partial folders name their owner, so a later run can tell a killed run's leftovers from a live one."""
    return f"{PARTIAL_PREFIX}{os.getpid()}@{socket.gethostname()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove the partial folders in `out` whose process is gone (killed runs); returns them. Folders of
    another host, or of a process still running here, are left alone; an unparsable name (an earlier
    vdit version's `.partial-XXXXXXXX`) counts as stale."""
    removed = []
    host = socket.gethostname()
    for path in out.glob(f"{PARTIAL_PREFIX}*"):
        owner = path.name[len(PARTIAL_PREFIX):]
        pid_text, at, rest = owner.partition("@")
        if at and pid_text.isdigit():
            if rest.rsplit("-", 1)[0] != host or _process_alive(int(pid_text)):
                continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def prepare_output(out_dir: str | Path) -> tuple[Path, Path]:
    """Create DIR (if needed) and a fresh partial folder inside it, after removing a killed run's partial
    folders; InputError when not writable."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(out)
        partial = Path(tempfile.mkdtemp(prefix=_partial_prefix(), dir=out))
    except OSError as exc:
        raise InputError(f"output directory {out} is not writable: {exc.strerror or exc}") from exc
    return out, partial


def commit_output(partial: Path, out: Path) -> list[str]:
    """Move the finished outputs from `partial` into `out`, summary.json last; returns the names moved."""
    names = sorted(p.name for p in partial.iterdir() if p.name != SUMMARY_NAME)
    (out / SUMMARY_NAME).unlink(missing_ok=True)  # an older summary must never describe newer files
    for name in names:
        dst = out / name
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        elif dst.exists() or dst.is_symlink():
            dst.unlink()
        os.replace(partial / name, dst)
    os.replace(partial / SUMMARY_NAME, out / SUMMARY_NAME)
    partial.rmdir()
    return names + [SUMMARY_NAME]


def _recording(frames: Iterator[np.ndarray], buffer: collections.deque) -> Iterator[np.ndarray]:
    """Pass frames through while keeping them until the window that contains them is written."""
    for frame in frames:
        buffer.append(frame)
        yield frame


def segment_to_dir(predictor: VDITPredictor, source: FrameSource, texts: list[str] | str, out_dir: str | Path,
                   progress: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `predictor` over `source` and write masks, overlay and summary into `out_dir` (see the
    module docstring for the layout and the completeness guarantee). Returns the summary dict.
    `progress(window_result)` is called after each window; `extra` is merged into the summary."""
    from vdit.fileio import first_missing

    texts = normalize_texts(texts)
    created = first_missing(Path(out_dir))
    out, partial = prepare_output(out_dir)
    try:
        summary = _write_outputs(predictor, source, texts, partial, progress)
        summary.update(extra or {})
        (partial / SUMMARY_NAME).write_text(summary_json(summary))
        commit_output(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if created is not None:  # this run made DIR: leave no empty folder behind
            shutil.rmtree(created, ignore_errors=True)
        raise
    return summary


def _write_outputs(predictor: VDITPredictor, source: FrameSource, texts: list[str], partial: Path,
                   progress: Any) -> dict[str, Any]:
    start_time = time.perf_counter()
    mask_dirs = [partial / MASKS_DIR / str(i) for i in range(len(texts))]
    for d in mask_dirs:
        d.mkdir(parents=True)
    buffer: collections.deque = collections.deque()
    windows: list[tuple[tuple[int, int], list[int], list[list[float]]]] = []
    frame_scores: list[list[float]] = [[] for _ in texts]
    mask_area: list[list[float]] = [[] for _ in texts]
    with VideoWriter(partial / OVERLAY_NAME, source.fps) as writer:
        for win in predictor.iter_segment(_recording(iter(source), buffer), texts):
            for j in range(win.end - win.start):
                frame = buffer.popleft()
                masks = win.masks[:, j]
                for s, d in enumerate(mask_dirs):
                    write_mask_png(d / FRAME_NAME.format(win.start + j), masks[s])
                    mask_area[s].append(round(float(masks[s].mean()), SCORE_DIGITS))
                writer.write(overlay_masks(frame, masks))
            for s in range(len(texts)):
                frame_scores[s].extend(round(float(v), SCORE_DIGITS) for v in win.frame_scores[s])
            # keep only the small per-window facts; the masks themselves are already on disk
            windows.append(((win.start, win.end), win.chosen_query.tolist(), win.query_scores.tolist()))
            if progress is not None:
                progress(win)
        num_frames = writer.frames_written
    return {
        "input": str(source.path),
        "input_kind": source.kind,
        "num_frames": num_frames,
        "fps": source.fps,
        "size": list(source.size),
        "model_input_size": list(predictor.input_size(*source.size)),
        "texts": texts,
        "colors": [list(text_color(i)) for i in range(len(texts))],
        "window": predictor.window,
        "windows": [list(bounds) for bounds, _, _ in windows],
        "chosen_query": [[chosen[s] for _, chosen, _ in windows] for s in range(len(texts))],
        "query_scores": [[[round(v, SCORE_DIGITS) for v in scores[s]] for _, _, scores in windows]
                         for s in range(len(texts))],
        "frame_scores": frame_scores,
        "mask_area": mask_area,
        "threshold": predictor.threshold,
        "short_side": predictor.short_side,
        "max_size": predictor.max_size,
        "sharing": predictor.sharing,
        "device": str(predictor.device),
        "amp": predictor.amp,
        "paths": {
            "masks": [f"{MASKS_DIR}/{i}/" + FRAME_NAME.replace("{:05d}", "%05d") for i in range(len(texts))],
            "overlay": OVERLAY_NAME,
            "summary": SUMMARY_NAME,
        },
        "elapsed_s": round(time.perf_counter() - start_time, 3),
    }
