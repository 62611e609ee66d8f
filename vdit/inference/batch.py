"""Many videos with one loaded model: `vdit segment --videos DIR|LIST`.

    inputs = list_inputs("clips/")                   # or a text file listing one input per line
    names = output_names(inputs)                     # one output folder name per input
    summary = segment_videos(predictor, [(n, open_source(p)) for n, p in zip(names, inputs)], texts, "out/")

Layout (OUT = the output folder):

    OUT/<name>/masks/, overlay.mp4, summary.json   each video as `vdit segment --video` writes it
    OUT/batch_summary.json                          one entry per input, in input order (written last)

Inputs: with a folder, its entries sorted by name: video files (`VIDEO_EXTENSIONS`), images (a 1-frame
video each) and sub-folders (frames folders); hidden entries and other files are left out. With a text
file: one path per line (a video file, an image or a frames folder); blank lines and lines starting with
`#` are skipped, relative paths are relative to the list file's folder.

Names: the file name without its extension (the folder name for a frames folder); two inputs with the
same stem (clip.mp4, clip.avi) keep their extensions; inputs that still collide are an InputError.

Each video's folder appears complete or not at all (`segment_to_dir`). A video that fails with a
vdit error (e.g. a video that stops decoding half-way) is recorded in the batch summary and the next
video runs; any other exception, and Ctrl-C, stop the batch: the videos finished so far stay.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from vdit.data.video_io import IMAGE_EXTENSIONS
from vdit.errors import DataError, InputError, VditError
from vdit.inference.io import FrameSource

BATCH_SUMMARY = "batch_summary.json"
# Files a --videos folder contributes as videos (anything PyAV decodes can still be listed in a LIST).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".gif")
LIST_COMMENT = "#"


def _is_input(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    if path.is_dir():
        return True
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS


def list_inputs(spec: str | Path) -> list[Path]:
    """The inputs of `--videos`: a folder's videos / images / frames folders (sorted by name), or the paths a
    text file lists (see the module doc). DataError when `spec` does not exist, InputError when it names
    no input."""
    spec = Path(spec).expanduser()
    if spec.is_dir():
        inputs = sorted((p for p in spec.iterdir() if _is_input(p)), key=lambda p: p.name)
        if not inputs:
            raise InputError(f"--videos {spec}: no video files ({', '.join(VIDEO_EXTENSIONS)}), images or frames "
                             "folders in it")
        return inputs
    if not spec.exists():
        raise DataError(f"--videos {spec}: no such folder or list file")
    try:
        lines = spec.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--videos {spec}: not a folder, and not a readable text list of inputs ({exc})") from None
    inputs = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith(LIST_COMMENT):
            continue
        path = Path(entry).expanduser()
        inputs.append(path if path.is_absolute() else spec.parent / path)
    if not inputs:
        raise InputError(f"--videos {spec}: the list names no input (one path per line)")
    return inputs


def output_names(inputs: Sequence[Path]) -> list[str]:
    """One output folder name per input (see the module doc); InputError for inputs that collide."""
    def stem(p: Path) -> str:
        p = Path(os.path.normpath(p.absolute()))
        return p.name if p.is_dir() else p.stem

    names = [stem(p) for p in inputs]
    counts = Counter(names)
    names = [Path(os.path.normpath(p.absolute())).name if counts[n] > 1 else n for p, n in zip(inputs, names)]
    seen: dict[str, Path] = {}
    for path, name in zip(inputs, names):
        if not name or name.startswith(".") or name == BATCH_SUMMARY:
            raise InputError(f"--videos: {path} gives the output folder name {name!r}; rename the input")
        if name in seen:
            raise InputError(f"--videos: {seen[name]} and {path} would both write OUT/{name}; rename one of them")
        seen[name] = path
    return names


def expected_frames(source: FrameSource) -> int | None:
    """How many frames `source` will give, when known up front (a video may not declare its count)."""
    n = len(source.files) if source.kind != "video" else source.declared_frames
    if n is None:
        return source.max_frames
    return n if source.max_frames is None else min(n, source.max_frames)


def segment_videos(predictor: Any, sources: Sequence[tuple[str, FrameSource]], texts: list[str], out_dir: str | Path,
                   progress: Callable[[Any], None] | None = None,
                   on_video: Callable[[str, FrameSource], None] | None = None,
                   on_done: Callable[[dict[str, Any]], None] | None = None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Segment every source into `out_dir/<name>/` with the one `predictor`, then write
    `out_dir/batch_summary.json` (when `out_dir` exists: a batch whose every video failed in a folder it
    would have created leaves nothing). `on_video(name, source)` is called before each video,
    `progress(window_result)` after each window, `on_done(entry)` after each video with its summary
    entry. Returns the batch summary."""
    from vdit.fileio import write_json
    from vdit.inference.export import segment_to_dir

    out = Path(out_dir)
    start = time.perf_counter()
    entries: list[dict[str, Any]] = []
    for name, source in sources:
        if on_video is not None:
            on_video(name, source)
        entry: dict[str, Any] = {"name": name, "input": str(source.path), "output": str(out / name)}
        try:
            summary = segment_to_dir(predictor, source, texts, out / name, progress=progress, extra=extra)
        except VditError as exc:  # this input is bad; the others may be fine
            entry.update(status="failed", error=str(exc))
        else:
            entry.update(status="done", num_frames=summary["num_frames"], elapsed_s=summary["elapsed_s"])
        entries.append(entry)
        if on_done is not None:
            on_done(entry)
    batch = {
        "texts": list(texts),
        "num_videos": len(entries),
        "num_done": sum(e["status"] == "done" for e in entries),
        "num_failed": sum(e["status"] == "failed" for e in entries),
        "videos": entries,
        **(extra or {}),
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    if out.is_dir():
        write_json(out / BATCH_SUMMARY, batch)
    return batch


__all__ = ["BATCH_SUMMARY", "VIDEO_EXTENSIONS", "expected_frames", "list_inputs", "output_names", "segment_videos"]
