"""Ref-YouTube-VOS: the on-disk layout and its training / evaluation dataset.

Layout (spec 7.1)::

    <root>/<split>/JPEGImages/<vid>/<frame>.jpg
    <root>/<split>/Annotations/<vid>/<frame>.png     palette PNG, pixel = object id (0 = background)
    <root>/<split>/meta.json                         {"videos": {vid: {"objects": {id: {"category", "frames"}}}}}
    <root>/meta_expressions/<split>/meta_expressions.json
        {"videos": {vid: {"expressions": {exp_id: {"exp": str, "obj_id": str}}, "frames": [names]}}}

Frame names carry no extension and are sorted lexicographically. The real `valid` split has no
Annotations; the Ref-DAVIS conversion and the synthetic benchmark do (then eval samples carry masks).
The dataset machinery shared with the other video datasets: `vdit.data.video_dataset`; the writer of
this layout: `vdit.data.ytvos_writer`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vdit.data.png import read_index_png
from vdit.data.transforms import ClipTransform
from vdit.data.video_dataset import (
    DEFAULT_NUM_FRAMES, ExpressionRecord, RefVideoDataset, VideoRecord, parse_meta_expressions,
)
from vdit.errors import DataError
from vdit.fileio import read_json

FRAME_EXT = ".jpg"
MASK_EXT = ".png"
DEFAULT_CATEGORY = "object"

def meta_expressions_path(root: str | Path, split: str) -> Path:
    return Path(root) / "meta_expressions" / split / "meta_expressions.json"


def read_ytvos_categories(root: str | Path, split: str) -> dict[str, dict[int, str]]:
    """{video: {obj_id: category}} from <root>/<split>/meta.json; {} when the file is absent."""
    path = Path(root) / split / "meta.json"
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise DataError(f"{path}: expected an object with a 'videos' mapping")
    out: dict[str, dict[int, str]] = {}
    for vid, entry in data["videos"].items():
        objects = entry.get("objects", {}) if isinstance(entry, dict) else {}
        try:
            out[vid] = {int(k): str(v.get("category", DEFAULT_CATEGORY)) for k, v in objects.items()}
        except (AttributeError, TypeError, ValueError):
            raise DataError(f"{path}: video {vid!r}: malformed 'objects'")


class RefYTVOSDataset(RefVideoDataset):
    """Ref-YouTube-VOS in its release layout (also Ref-DAVIS converted, and the synthetic benchmark).

    `split` names the folder (train, valid, or any split written in the same layout). For `valid`,
    the videos listed in meta_expressions/test/meta_expressions.json are removed when that file
    exists (`exclude_test`), leaving the 202 videos the server scores (spec 6.1).
    """

    dataset_name = "ytvos"

    def __init__(self, root: str | Path, split: str = "train", num_frames: int = DEFAULT_NUM_FRAMES,
                 transform: ClipTransform | None = None, *, exclude_test: bool = True, **kwargs: Any):
        self.exclude_test = exclude_test
        super().__init__(root, split, num_frames, transform, **kwargs)

    def _load_index(self) -> tuple[dict[str, VideoRecord], list[ExpressionRecord]]:
        videos, expressions = parse_meta_expressions(meta_expressions_path(self.root, self.split))
        test_path = meta_expressions_path(self.root, "test")
        if self.split == "valid" and self.exclude_test and test_path.is_file():
            test_videos, _ = parse_meta_expressions(test_path)
            videos = {k: v for k, v in videos.items() if k not in test_videos}
        self._annotation_dirs = {
            vid: (self.root / self.split / "Annotations" / vid).is_dir() for vid in videos
        }
        return videos, expressions

    def _frame_path(self, video_id: str, frame: str) -> Path:
        return self.root / self.split / "JPEGImages" / video_id / f"{frame}{FRAME_EXT}"

    def _mask_path(self, video_id: str, frame: str) -> Path:
        return self.root / self.split / "Annotations" / video_id / f"{frame}{MASK_EXT}"

    def _has_annotations(self, exp: ExpressionRecord) -> bool:
        return self._annotation_dirs.get(exp.video_id, False)

    def _required_files(self, exp: ExpressionRecord) -> list[Path]:
        files = super()._required_files(exp)
        if self._has_annotations(exp):
            files += [self._mask_path(exp.video_id, f) for f in self.videos[exp.video_id].frames]
        return files

    def _read_masks(self, exp: ExpressionRecord, indices: Sequence[int], hw: tuple[int, int]) -> np.ndarray:
        video = self.videos[exp.video_id]
        out = np.zeros((len(indices), *hw), dtype=bool)
        for t, i in enumerate(indices):
            path = self._mask_path(video.video_id, video.frames[i])
            ids = read_index_png(path)
            if ids.shape != hw:
                raise DataError(f"mask {path} has size {ids.shape}, its frame has {hw}")
            out[t] = np.isin(ids, exp.obj_ids)
        return out


def num_train_samples(root: str | Path, split: str, num_frames: int) -> int:
    """sum over expressions of ceil(n_frames / T): the length of a train-mode dataset."""
    videos, expressions = parse_meta_expressions(meta_expressions_path(root, split))
    return sum(math.ceil(len(videos[e.video_id].frames) / num_frames) for e in expressions)
