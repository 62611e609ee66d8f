"""MeViS (motion expressions video segmentation): format reader, writer and dataset.

Layout of the release::

    <root>/train/JPEGImages/<vid>/<frame>.jpg
    <root>/train/meta_expressions.json     {"videos": {vid: {"expressions": {exp_id: {"exp": str,
                                              "obj_id": [int, ...], "anno_id": [int, ...]}}, "frames": [...]}}}
    <root>/train/mask_dict.json            {"<anno_id>": [COCO RLE or null, one per frame of the video]}
    <root>/valid_u/...                     same as train (held-out part of train, with masks)
    <root>/valid/JPEGImages, meta_expressions.json      (no masks: scored by the server)

An expression may refer to several objects; its target mask is the union of its `anno_id` masks
(the official loader adds the decoded RLEs). Entry i of a mask_dict list belongs to the i-th frame of
the video's sorted frame list.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools import mask as coco_mask

from vdit.data.transforms import ClipTransform
from vdit.data.video_dataset import (
    DEFAULT_NUM_FRAMES, ExpressionRecord, RefVideoDataset, VideoRecord, parse_meta_expressions,
)
from vdit.data.ytvos import FRAME_EXT
from vdit.data.ytvos_writer import update_videos_json, write_frame_jpegs
from vdit.errors import DataError, InputError
from vdit.fileio import read_json, write_json

MEVIS_SPLITS_WITH_MASKS = ("train", "valid_u")
META_FILE = "meta_expressions.json"
MASK_FILE = "mask_dict.json"


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE (json-ready: counts as str) of a bool/uint8 mask [H,W]."""
    rle = coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: Mapping[str, Any], where: str) -> np.ndarray:
    """Bool mask [H,W] of a COCO RLE (DataError naming `where` when malformed)."""
    try:
        size = [int(s) for s in rle["size"]]
        counts = rle["counts"]
        if isinstance(counts, list):  # uncompressed RLE
            obj = coco_mask.frPyObjects({"size": size, "counts": counts}, size[0], size[1])
        else:
            obj = {"size": size, "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        with warnings.catch_warnings():
            # pycocotools' Cython decode trips numpy 2's __array__(copy=...) deprecation; harmless.
            warnings.simplefilter("ignore", DeprecationWarning)
            return coco_mask.decode(obj).astype(bool)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{where}: malformed RLE: {exc}") from exc


class MeViSDataset(RefVideoDataset):
    """MeViS train / valid_u / valid (train mode for `train`, eval mode otherwise by default).

    Sampling, transforms and resampling are the Ref-YTVOS ones (`RefVideoDataset`); the transform
    recipe is `build_transforms("mevis")` (A2D order, as MeViS's released ReferFormer loader).
    """

    dataset_name = "mevis"

    def __init__(self, root: str | Path, split: str = "train", num_frames: int = DEFAULT_NUM_FRAMES,
                 transform: ClipTransform | None = None, **kwargs: Any):
        self._mask_dict: dict[str, Any] | None = None
        super().__init__(root, split, num_frames, transform, **kwargs)

    def _split_dir(self) -> Path:
        return self.root / self.split

    def _load_index(self) -> tuple[dict[str, VideoRecord], list[ExpressionRecord]]:
        mask_path = self._split_dir() / MASK_FILE
        self._has_masks = mask_path.is_file()
        if not self._has_masks and self.split in MEVIS_SPLITS_WITH_MASKS:
            raise DataError(f"MeViS {self.split} needs {mask_path}")
        return parse_meta_expressions(self._split_dir() / META_FILE, require_anno_ids=self._has_masks)

    @property
    def mask_dict(self) -> dict[str, Any]:
        """mask_dict.json, read on first use (it is large for the real train split)."""
        if self._mask_dict is None:
            path = self._split_dir() / MASK_FILE
            data = read_json(path)
            if not isinstance(data, dict):
                raise DataError(f"{path}: expected an object {{anno_id: [RLE per frame]}}")
            self._mask_dict = data
        return self._mask_dict

    def _frame_path(self, video_id: str, frame: str) -> Path:
        return self._split_dir() / "JPEGImages" / video_id / f"{frame}{FRAME_EXT}"

    def _has_annotations(self, exp: ExpressionRecord) -> bool:
        return self._has_masks

    def _read_masks(self, exp: ExpressionRecord, indices: Sequence[int], hw: tuple[int, int]) -> np.ndarray:
        path = self._split_dir() / MASK_FILE
        n = len(self.videos[exp.video_id].frames)
        out = np.zeros((len(indices), *hw), dtype=bool)
        for anno in exp.anno_ids:
            per_frame = self.mask_dict.get(anno)
            if not isinstance(per_frame, list):
                raise DataError(f"{path}: anno_id {anno} (video {exp.video_id}, expression {exp.exp_id}) missing")
            if len(per_frame) != n:
                raise DataError(f"{path}: anno_id {anno} has {len(per_frame)} entries, "
                                f"video {exp.video_id} has {n} frames")
            for t, i in enumerate(indices):
                rle = per_frame[i]
                if rle is None:
                    continue
                m = decode_rle(rle, f"{path} anno_id {anno} frame {i}")
                if m.shape != hw:
                    raise DataError(f"{path}: anno_id {anno} frame {i} has size {m.shape}, the frame has {hw}")
                out[t] |= m
        return out


def write_mevis_video(
    root: str | Path,
    split: str,
    video_id: str,
    frames: np.ndarray | Sequence[Any],
    masks: np.ndarray | None,
    expressions: Mapping[str, Mapping[str, Any]],
    frame_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write one video in the MeViS layout and register it in the split's json files.

    masks: uint8 object ids [T,H,W] or None (like the real `valid` split). expressions:
    {exp_id: {"exp": str, "obj_id": int or list of ints}}. With masks, each object of the video gets a
    new anno_id (next free integer of mask_dict.json) with one RLE (or null) per frame, and each
    expression lists the anno_ids of its objects. Returns the video's meta_expressions entry.
    """
    split_dir = Path(root) / split
    # Unlike write_ytvos_video, repeated frame names are not refused here.
    names, arrays = write_frame_jpegs(split_dir / "JPEGImages" / video_id, frames, frame_names,
                                      f"write_mevis_video {video_id}", distinct_names=False)
    t = len(arrays)
    order = np.argsort(names, kind="stable")  # mask_dict entries follow the sorted frame list
    anno_of: dict[int, int] = {}
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (t, *arrays[0].shape[:2]):
            raise InputError(f"write_mevis_video {video_id}: masks shape {masks.shape} does not match frames")
        mask_path = split_dir / MASK_FILE
        mask_dict = read_json(mask_path) if mask_path.is_file() else {}
        next_id = max((int(k) for k in mask_dict), default=-1) + 1
        objects = sorted({int(o) for e in expressions.values() for o in _listify(e["obj_id"])})
        for obj in objects:
            anno_of[obj] = next_id
            mask_dict[str(next_id)] = [
                encode_rle(masks[i] == obj) if (masks[i] == obj).any() else None for i in order
            ]
            next_id += 1
        write_json(mask_path, mask_dict, indent=None, ensure_ascii=False)
    exp_entry: dict[str, Any] = {}
    for exp_id, exp in expressions.items():
        objs = [int(o) for o in _listify(exp["obj_id"])]
        item: dict[str, Any] = {"exp": str(exp["exp"]), "obj_id": objs}
        if masks is not None:
            item["anno_id"] = [anno_of[o] for o in objs]
        exp_entry[str(exp_id)] = item
    entry = {"expressions": exp_entry, "frames": names}
    update_videos_json(split_dir / META_FILE, video_id, entry)
    return entry


def _listify(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]
