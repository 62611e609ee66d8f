"""Writing videos in the Ref-YouTube-VOS layout (`vdit.data.ytvos`): JPEG frames, palette-PNG masks and
the split's json files. Tests, the dataset converters and the synthetic benchmark write real-layout
datasets with it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from vdit.data.png import write_index_png
from vdit.data.ytvos import DEFAULT_CATEGORY, FRAME_EXT, MASK_EXT, meta_expressions_path
from vdit.errors import DataError, InputError
from vdit.fileio import read_json, write_json

JPEG_QUALITY = 95
# 4:4:4 chroma: keeps thin coloured shapes' colours intact in small synthetic frames.
JPEG_SUBSAMPLING = 0


def frames_as_arrays(frames: np.ndarray | Sequence[Any]) -> list[np.ndarray]:
    """uint8 [T,H,W,3] array or a list of PIL images / arrays -> list of uint8 [H,W,3] arrays."""
    out = []
    for f in list(frames):
        arr = np.asarray(f.convert("RGB")) if isinstance(f, Image.Image) else np.asarray(f)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise InputError(f"frames must be uint8 [H,W,3] (or PIL images), got {arr.dtype} {arr.shape}")
        out.append(arr)
    return out


def write_jpeg(path: str | Path, frame: np.ndarray) -> Path:
    """Save one RGB uint8 frame as JPEG (fixed quality/subsampling, so output is reproducible)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame, mode="RGB").save(path, format="JPEG", quality=JPEG_QUALITY,
                                             subsampling=JPEG_SUBSAMPLING)
    return path


def default_frame_names(num_frames: int) -> list[str]:
    return [f"{i:05d}" for i in range(num_frames)]


def write_frame_jpegs(
    folder: str | Path, frames: np.ndarray | Sequence[Any], frame_names: Sequence[str] | None, who: str,
    *, distinct_names: bool = True,
) -> tuple[list[str], list[np.ndarray]]:
    """Write a video's frames as `<folder>/<name>.jpg`; returns (names, uint8 [H,W,3] arrays).

    frames: uint8 [T,H,W,3] or PIL images. frame_names default to 00000, 00001, ... InputError naming
    `who` when there are no frames, or not T names (or, with `distinct_names`, repeated ones).
    """
    arrays = frames_as_arrays(frames)
    t = len(arrays)
    if t == 0:
        raise InputError(f"{who}: no frames")
    names = list(frame_names) if frame_names is not None else default_frame_names(t)
    if len(names) != t or (distinct_names and len(set(names)) != t):
        raise InputError(f"{who}: need {t}{' distinct' if distinct_names else ''} frame names, got {names}")
    for name, arr in zip(names, arrays):
        write_jpeg(Path(folder) / f"{name}{FRAME_EXT}", arr)
    return names, arrays


def write_ytvos_video(
    root: str | Path,
    split: str,
    video_id: str,
    frames: np.ndarray | Sequence[Any],
    masks: np.ndarray | None,
    expressions: Mapping[str, Mapping[str, Any]],
    frame_names: Sequence[str] | None = None,
    categories: Mapping[Any, str] | None = None,
) -> dict[str, Any]:
    """Write one video in the Ref-YouTube-VOS layout and register it in the split's json files.

    frames: uint8 [T,H,W,3] or PIL images. masks: uint8 object ids [T,H,W] (palette PNGs are
    written), or None (no Annotations, like the real valid split). expressions: {exp_id: {"exp": str,
    "obj_id": str|int}}. Updates <split>/meta.json (objects present in the masks, or referred to)
    and meta_expressions/<split>/meta_expressions.json. Returns the video's meta_expressions entry.
    """
    root = Path(root)
    names, arrays = write_frame_jpegs(root / split / "JPEGImages" / video_id, frames, frame_names,
                                      f"write_ytvos_video {video_id}")
    t = len(arrays)
    h, w = arrays[0].shape[:2]
    objects: dict[str, dict[str, Any]] = {}
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (t, h, w):
            raise InputError(f"write_ytvos_video {video_id}: masks shape {masks.shape} != {(t, h, w)}")
        for name, ids in zip(names, masks):
            write_index_png(root / split / "Annotations" / video_id / f"{name}{MASK_EXT}", ids)
        for obj in sorted(int(v) for v in np.unique(masks) if v != 0):
            present = [n for n, m in zip(names, masks) if (m == obj).any()]
            objects[str(obj)] = {"frames": present}
    cats = {str(k): v for k, v in (categories or {}).items()}
    exp_entry: dict[str, Any] = {}
    for exp_id, exp in expressions.items():
        if "exp" not in exp or "obj_id" not in exp:
            raise InputError(f"write_ytvos_video {video_id}: expression {exp_id} needs 'exp' and 'obj_id'")
        exp_entry[str(exp_id)] = {"exp": str(exp["exp"]), "obj_id": str(exp["obj_id"])}
        objects.setdefault(str(exp["obj_id"]), {"frames": []})
    meta_objects = {
        k: {"category": cats.get(k, DEFAULT_CATEGORY), "frames": objects[k]["frames"]}
        for k in sorted(objects, key=int)
    }
    update_videos_json(root / split / "meta.json", video_id, {"objects": meta_objects})
    entry = {"expressions": exp_entry, "frames": names}
    update_videos_json(meta_expressions_path(root, split), video_id, entry)
    return entry


def update_videos_json(path: str | Path, video_id: str, entry: Mapping[str, Any]) -> None:
    """Set `videos[video_id] = entry` in a `{"videos": {...}}` json file (created when absent)."""
    path = Path(path)
    data = read_json(path) if path.is_file() else {"videos": {}}
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise DataError(f"{path}: expected an object with a 'videos' mapping")
    data["videos"][video_id] = dict(entry)
    write_json(path, data, indent=None, ensure_ascii=False)
