"""MeViS J&F (valid_u / valid split), following the official `tools/eval_mevis.py` of henghuiding/MeViS.

Inputs (the MeViS release layout):

    <split>/meta_expressions.json  {"videos": {vid: {"frames": [...], "expressions": {exp_id:
                                        {"exp": str, "obj_id": [...], "anno_id": [...]}}}}}
    <split>/mask_dict.json         {"<anno_id>": [RLE or null, one per frame of the video]}
    results: <P>/<vid>/<exp_id>/<frame>.png  (or <P>/Annotations/<vid>/...), non-zero = foreground

What the official evaluator does, and this module reproduces:

* the ground truth of an expression is the union of the masks of all its `anno_id`s (an expression can
  refer to several objects), frame by frame, in the order of the video's "frames" list;
* per frame J (`db_eval_iou`) and F (`db_eval_boundary`, tolerance 0.008 of the diagonal) with the same
  functions as DAVIS and no void pixels; an expression's J (F) is the plain mean over its frames;
* J (F) of the split = mean over expressions; J&F = (J + F) / 2;
* a video with no results folder scores J = F = 0 for its expressions (the official prints
  "<vid> not found"); here that needs `missing_as_zero=True`, otherwise it is an error.

Predictions are read as label PNGs (any 8-bit grey or palette image) and binarised with ``> 0``; the
official reads them with cv2 in grey-scale, which is the same for the 0/255 masks it expects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vdit.errors import DataError, EvaluationError
from vdit.evaluation.jf import BOUNDARY_THRESHOLD, frame_jf
from vdit.evaluation.masks_io import read_label_png
from vdit.fileio import read_json

META_FILE = "meta_expressions.json"
MASK_DICT_FILE = "mask_dict.json"


@dataclass
class MevisResult:
    """Split-level J, F, J&F (fractions) and each expression's [J, F] keyed "<video>_<exp_id>"."""

    j: float
    f: float
    jf: float
    per_expression: dict[str, list[float]]
    missing_videos: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict:
        return {"J&F": self.jf, "J": self.j, "F": self.f, "per_expression": self.per_expression,
                "missing_videos": list(self.missing_videos)}


def _expressions(meta: dict, meta_path: Path) -> dict:
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict) or not videos:
        raise DataError(f"{meta_path} has no 'videos' mapping")
    for vid, entry in videos.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("frames"), list) \
                or not isinstance(entry.get("expressions"), dict):
            raise DataError(f"{meta_path}: video {vid!r} needs a 'frames' list and an 'expressions' mapping")
        for exp_id, exp in entry["expressions"].items():
            if not isinstance(exp, dict) or not isinstance(exp.get("anno_id"), list):
                raise DataError(f"{meta_path}: video {vid!r} expression {exp_id!r} has no 'anno_id' list")
    return videos


def _gt_union(mask_dict: dict, anno_ids: list, frame_idx: int, shape_hint: tuple[int, int] | None,
              where: str) -> np.ndarray | None:
    """Union of the decoded masks of `anno_ids` at one frame (None when every entry is empty)."""
    from pycocotools import mask as mask_utils

    union = None
    for anno_id in anno_ids:
        masks = mask_dict.get(str(anno_id))
        if not isinstance(masks, list):
            raise DataError(f"{where}: anno_id {anno_id} is not in the mask dictionary")
        if frame_idx >= len(masks):
            raise DataError(f"{where}: anno_id {anno_id} has {len(masks)} masks, fewer than the video's frames")
        rle = masks[frame_idx]
        if not rle:
            continue
        try:
            decoded = mask_utils.decode(rle).astype(bool)
        except Exception as exc:  # pycocotools raises bare TypeError/ValueError on malformed RLE
            raise DataError(f"{where}: cannot decode the RLE of anno_id {anno_id} at frame {frame_idx}: "
                            f"{exc}") from None
        union = decoded if union is None else (union | decoded)
    if union is None and shape_hint is not None:
        union = np.zeros(shape_hint, dtype=bool)
    return union


def _rle_shape(mask_dict: dict, anno_ids: list) -> tuple[int, int] | None:
    for anno_id in anno_ids:
        for rle in mask_dict.get(str(anno_id)) or []:
            if rle and "size" in rle:
                return int(rle["size"][0]), int(rle["size"][1])
    return None


def resolve_results_dir(results: Path | str) -> Path:
    """The folder holding <video>/<exp_id>/<frame>.png: `results` or `results/Annotations`."""
    results = Path(results)
    if not results.is_dir():
        raise EvaluationError(f"results folder not found: {results}")
    nested = results / "Annotations"
    return nested if nested.is_dir() else results


def evaluate_expression(mask_dict: dict, video: str, frames: list[str], exp_id: str, anno_ids: list,
                        results_dir: Path, mask_dict_path: Path,
                        bound_th: float = BOUNDARY_THRESHOLD) -> tuple[float, float]:
    """(J, F) of one expression: per-frame J/F of the union GT vs the predicted mask, mean over frames."""
    where = f"{mask_dict_path} (video {video}, expression {exp_id})"
    shape = _rle_shape(mask_dict, anno_ids)
    js, fs = [], []
    for frame_idx, frame in enumerate(frames):
        path = results_dir / video / str(exp_id) / f"{frame}.png"
        pred = read_label_png(path, EvaluationError, "predicted mask") > 0
        gt = _gt_union(mask_dict, anno_ids, frame_idx, shape or pred.shape, where)
        if gt.shape != pred.shape:
            raise EvaluationError(f"predicted mask {path} is {pred.shape[1]}x{pred.shape[0]} (WxH) but the ground "
                                  f"truth is {gt.shape[1]}x{gt.shape[0]}")
        j, f = frame_jf(gt, pred, bound_th)
        js.append(j)
        fs.append(f)
    if not js:
        raise DataError(f"{where}: the video has no frames")
    return float(np.mean(js)), float(np.mean(fs))


def evaluate_mevis(meta_path: Path | str, mask_dict_path: Path | str, results: Path | str,
                   missing_as_zero: bool = False, bound_th: float = BOUNDARY_THRESHOLD,
                   progress=None) -> MevisResult:
    """Score a MeViS results folder: mean over expressions of per-expression mean J and F."""
    meta_path, mask_dict_path = Path(meta_path), Path(mask_dict_path)
    videos = _expressions(read_json(meta_path, "MeViS meta_expressions"), meta_path)
    mask_dict = read_json(mask_dict_path, "MeViS mask dictionary")
    if not isinstance(mask_dict, dict):
        raise DataError(f"{mask_dict_path} must be a mapping anno_id -> list of per-frame RLEs")
    results_dir = resolve_results_dir(results)
    per_expression: dict[str, list[float]] = {}
    missing: list[str] = []
    for video, entry in videos.items():
        if not (results_dir / video).is_dir():
            if not missing_as_zero:
                raise EvaluationError(f"no results for video {video!r}: folder {results_dir / video} not found "
                                      f"(use missing_as_zero / --missing-as-zero to score it 0 like the official)")
            missing.append(video)
            for exp_id in entry["expressions"]:
                per_expression[f"{video}_{exp_id}"] = [0.0, 0.0]
            continue
        for exp_id, exp in entry["expressions"].items():
            j, f = evaluate_expression(mask_dict, video, entry["frames"], exp_id, exp["anno_id"], results_dir,
                                       mask_dict_path, bound_th)
            per_expression[f"{video}_{exp_id}"] = [j, f]
        if progress is not None:
            progress(video)
    if not per_expression:
        raise DataError(f"{meta_path} lists no expression to evaluate")
    j_mean = float(np.mean([v[0] for v in per_expression.values()]))
    f_mean = float(np.mean([v[1] for v in per_expression.values()]))
    return MevisResult(j_mean, f_mean, (j_mean + f_mean) / 2, per_expression, missing)
