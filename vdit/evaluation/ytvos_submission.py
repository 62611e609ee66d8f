"""Ref-YouTube-VOS submission: writing the masks, zipping them, and checking a zip before upload (spec 6.1).

Layout (what `inference_ytvos.py` writes and the CodaLab server scores):

    Annotations/<video_id>/<exp_id>/<frame>.png   8-bit grey ('L') PNG, 0 = background, 255 = object

zipped as ``zip -r submission.zip Annotations`` (entries start with ``Annotations/``).

The validator reads a ``meta_expressions.json`` (spec 7.1: ``{"videos": {vid: {"expressions": {exp_id:
{...}}, "frames": [...]}}}``) and reports every problem with the offending file name: missing videos,
expressions or frames, unexpected entries, PNGs that are not single-channel 8-bit, that hold values other
than 0 and 255, or whose size is wrong. Sizes are checked against the JPEG frames when a frames root is
given, otherwise for consistency across all masks of a video.
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vdit.errors import DataError, EvaluationError
from vdit.fileio import read_json

SUBMISSION_DIR = "Annotations"
FOREGROUND_VALUE = 255
BACKGROUND_VALUE = 0
ALLOWED_PNG_MODES = ("L", "P")


# --------------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------------
def mask_png_path(out_dir: Path | str, video: str, exp_id: str, frame: str) -> Path:
    """out_dir/Annotations/<video>/<exp_id>/<frame>.png"""
    return Path(out_dir) / SUBMISSION_DIR / video / str(exp_id) / f"{frame}.png"


def write_expression_masks(out_dir: Path | str, video: str, exp_id: str, frames: Sequence[str],
                           masks: np.ndarray) -> list[Path]:
    """Write one expression's binary masks (T, H, W) as 0/255 'L' PNGs; returns the written paths."""
    from PIL import Image

    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] != len(frames):
        raise EvaluationError(f"video {video} expression {exp_id}: expected masks of shape (T={len(frames)}, H, W), "
                              f"got {masks.shape}")
    paths = []
    for frame, mask in zip(frames, masks):
        path = mask_png_path(out_dir, video, exp_id, frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.where(mask.astype(bool), FOREGROUND_VALUE, BACKGROUND_VALUE).astype(np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def zip_submission(out_dir: Path | str, zip_path: Path | str) -> Path:
    """Zip out_dir/Annotations into `zip_path` with entries ``Annotations/<video>/<exp>/<frame>.png``."""
    out_dir, zip_path = Path(out_dir), Path(zip_path)
    root = out_dir / SUBMISSION_DIR
    if not root.is_dir():
        raise EvaluationError(f"nothing to zip: {root} does not exist")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, path.relative_to(out_dir).as_posix())
    return zip_path


# --------------------------------------------------------------------------------------------------------
# Validator
# --------------------------------------------------------------------------------------------------------
@dataclass
class ValidationReport:
    """Outcome of `validate_submission`: every problem found, one line each, naming the file."""

    problems: list[str] = field(default_factory=list)
    n_expected: int = 0
    n_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def load_meta_expressions(path: Path | str) -> dict[str, dict]:
    """The "videos" mapping of a meta_expressions.json, checked for the fields the validator needs."""
    meta = read_json(path, "meta_expressions file")
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict):
        raise DataError(f"{path} has no 'videos' mapping")
    for vid, entry in videos.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("expressions"), dict) \
                or not isinstance(entry.get("frames"), list):
            raise DataError(f"{path}: video {vid!r} needs an 'expressions' mapping and a 'frames' list")
    return videos


def _frames_dir(frames_root: Path) -> Path:
    """Accept a dataset root (with valid/JPEGImages), a split folder (with JPEGImages) or JPEGImages itself."""
    for candidate in (frames_root / "valid" / "JPEGImages", frames_root / "JPEGImages"):
        if candidate.is_dir():
            return candidate
    return frames_root


def _expected_size(frames_dir: Path | None, video: str, frame: str, cache: dict) -> tuple[int, int] | None:
    """(W, H) of the video's JPEG frame (cached per video; all frames of a video share one size)."""
    if frames_dir is None:
        return None
    if video not in cache:
        from PIL import Image

        jpg = frames_dir / video / f"{frame}.jpg"
        try:
            with Image.open(jpg) as im:
                cache[video] = im.size
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read frame {jpg} to get the size of video {video!r}: {exc}") from None
    return cache[video]


def _check_png(data: bytes, name: str) -> tuple[tuple[int, int] | None, list[str]]:
    """(size, problems) of one submitted PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return None, [f"{name}: not a readable PNG ({exc})"]
    problems = []
    if image.format != "PNG":
        problems.append(f"{name}: is a {image.format} image, not a PNG")
    if image.mode not in ALLOWED_PNG_MODES:
        problems.append(f"{name}: mode {image.mode!r}, expected a single-channel 8-bit grey 'L' PNG")
    else:
        values = np.unique(np.asarray(image))
        bad = [int(v) for v in values if v not in (BACKGROUND_VALUE, FOREGROUND_VALUE)]
        if bad:
            problems.append(f"{name}: pixel values {bad[:5]} found, a binary mask uses only 0 and 255")
    return image.size, problems


def validate_submission(zip_path: Path | str, meta_path: Path | str, frames_root: Path | str | None = None,
                        exclude_meta_path: Path | str | None = None) -> ValidationReport:
    """Check a submission zip against meta_expressions.json; returns a report listing every problem.

    exclude_meta_path: videos of this meta file are not expected (the official valid meta also lists the
    test videos; pass meta_expressions/test/meta_expressions.json to subtract them, spec 6.1).
    """
    zip_path = Path(zip_path)
    videos = load_meta_expressions(meta_path)
    if exclude_meta_path is not None:
        excluded = set(load_meta_expressions(exclude_meta_path))
        videos = {v: e for v, e in videos.items() if v not in excluded}
    frames_dir = _frames_dir(Path(frames_root)) if frames_root is not None else None
    try:
        zf = zipfile.ZipFile(zip_path)
    except FileNotFoundError:
        raise EvaluationError(f"submission zip not found: {zip_path}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise EvaluationError(f"{zip_path} is not a readable zip file: {exc}") from None

    report = ValidationReport()
    with zf:
        entries = {info.filename: info for info in zf.infolist() if not info.is_dir()}
        expected: set[str] = set()
        size_cache: dict[str, tuple[int, int]] = {}
        for video, entry in videos.items():
            reference: tuple[tuple[int, int], str] | None = None
            for exp_id in entry["expressions"]:
                for frame in entry["frames"]:
                    name = f"{SUBMISSION_DIR}/{video}/{exp_id}/{frame}.png"
                    expected.add(name)
                    report.n_expected += 1
                    if name not in entries:
                        report.problems.append(f"{name}: missing")
                        continue
                    size, problems = _check_png(zf.read(name), name)
                    report.n_checked += 1
                    report.problems.extend(problems)
                    if size is None:
                        continue
                    want = _expected_size(frames_dir, video, frame, size_cache)
                    if want is not None and size != want:
                        report.problems.append(f"{name}: size {size[0]}x{size[1]}, the video's frames are "
                                               f"{want[0]}x{want[1]}")
                    elif want is None and reference is None:
                        reference = (size, name)
                    elif want is None and size != reference[0]:
                        report.problems.append(f"{name}: size {size[0]}x{size[1]} differs from {reference[0][0]}x"
                                               f"{reference[0][1]} of {reference[1]}")
        for name in sorted(set(entries) - expected):
            report.problems.append(f"{name}: unexpected file (not a frame of an expression in {meta_path})")
    return report
