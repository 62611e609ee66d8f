"""COCO-style mask mAP for A2D-Sentences / JHMDB-Sentences (and RefCOCO), via pycocotools (spec 6.3).

As in the official `engine.evaluate_a2d`: ``COCOeval(gt, gt.loadRes(predictions), iouType='segm')`` with
``params.useCats = 0``; the reported figures are ``stats[:6]`` (mAP@[.5:.95], AP50, AP75, AP S/M/L).

Image ids. The MTTR-generated ground truth uses string image ids (A2D: ``v_<video>_f_<frame>_i_<inst>``,
JHMDB: ``v_<video>_f_<frame>``). We map every GT image id to an int before handing the data to
pycocotools (its C/numpy internals and some forks expect ints): the ids are sorted exactly as COCOeval
sorts them (``sorted(getImgIds())``) and numbered 1..N in that order, so image order, and with it the
tie-breaking of equal scores in `accumulate`, is the same as with the original ids. Predictions are
mapped with the same table; an id absent from the GT is an error.

Predictions: ``{"image_id", "category_id": 1, "segmentation": RLE, "score"}``. A ``bbox`` field is dropped
before `loadRes` (pycocotools would otherwise take the area from it; SgMg's RefCOCO predictions carry an
xyxy box there), so the area used for the S/M/L ranges is the mask area.
"""
from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

from vdit.errors import DataError, EvaluationError
from vdit.evaluation.referring_iou import top1_iou_metrics
from vdit.fileio import read_json

AP_LABELS = ("mAP 0.5:0.95", "AP 0.5", "AP 0.75", "AP 0.5:0.95 S", "AP 0.5:0.95 M", "AP 0.5:0.95 L")
# The single dummy category of referring segmentation (categories are not predicted).
DUMMY_CATEGORY = {"id": 1, "name": "object"}


def validate_gt(gt, path: Path | str) -> dict:
    """Check a COCO-format GT dict has what COCOeval needs; DataError names the file and the entry."""
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list) \
            or not isinstance(gt.get("annotations"), list):
        raise DataError(f"{path}: a COCO ground truth needs 'images' and 'annotations' lists")
    if not gt["images"]:
        raise DataError(f"{path}: no images")
    for image in gt["images"]:
        missing = [k for k in ("id", "height", "width") if k not in image]
        if missing:
            raise DataError(f"{path}: image entry {image!r:.120} lacks {', '.join(missing)}")
    id_types = {type(image["id"]) for image in gt["images"]}
    if len(id_types) > 1:
        raise DataError(f"{path}: image ids mix types ({', '.join(sorted(t.__name__ for t in id_types))})")
    known = {image["id"] for image in gt["images"]}
    for ann in gt["annotations"]:
        missing = [k for k in ("id", "image_id", "segmentation", "area", "iscrowd") if k not in ann]
        if missing:
            raise DataError(f"{path}: annotation {ann.get('id', '?')} lacks {', '.join(missing)}")
        if ann["image_id"] not in known:
            raise DataError(f"{path}: annotation {ann['id']} refers to unknown image {ann['image_id']!r}")
    return gt


def validate_predictions(preds, path: Path | str) -> list[dict]:
    """Check the prediction list format; EvaluationError names the file and the first bad entry."""
    if not isinstance(preds, list):
        raise EvaluationError(f"{path}: predictions must be a JSON list of objects")
    if not preds:
        raise EvaluationError(f"{path}: the prediction list is empty")
    for index, pred in enumerate(preds):
        if not isinstance(pred, dict):
            raise EvaluationError(f"{path}: prediction #{index} is not an object")
        missing = [k for k in ("image_id", "segmentation", "score") if k not in pred]
        if missing:
            raise EvaluationError(f"{path}: prediction #{index} lacks {', '.join(missing)}")
        seg = pred["segmentation"]
        if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
            raise EvaluationError(f"{path}: prediction #{index} segmentation must be an RLE dict with 'size' and "
                                  f"'counts'")
        if not isinstance(pred["score"], (int, float)):
            raise EvaluationError(f"{path}: prediction #{index} score is not a number")
    return preds


def image_id_table(gt: dict) -> dict:
    """Original image id -> int id 1..N, numbered in COCOeval's sorted order of the original ids."""
    return {orig: index + 1 for index, orig in enumerate(sorted(image["id"] for image in gt["images"]))}


def _mapped_inputs(gt: dict, predictions: list[dict], pred_name: str) -> tuple[dict, list[dict]]:
    table = image_id_table(gt)
    gt2 = copy.deepcopy(gt)
    for image in gt2["images"]:
        image["id"] = table[image["id"]]
    for ann in gt2["annotations"]:
        ann["image_id"] = table[ann["image_id"]]
    gt2.setdefault("categories", [dict(DUMMY_CATEGORY)])
    preds2 = []
    for index, pred in enumerate(predictions):
        if pred["image_id"] not in table:
            raise EvaluationError(f"{pred_name}: prediction #{index} refers to image {pred['image_id']!r}, which "
                                  f"is not in the ground truth")
        seg = dict(pred["segmentation"])
        if isinstance(seg.get("counts"), bytes):
            seg["counts"] = seg["counts"].decode("ascii")
        preds2.append({"image_id": table[pred["image_id"]], "category_id": pred.get("category_id", 1),
                       "segmentation": seg, "score": float(pred["score"])})
    return gt2, preds2


def coco_segm_map(gt: dict, predictions: list[dict], pred_name: str = "predictions") -> dict[str, float]:
    """stats[:6] of COCOeval(segm, useCats=0) as {label: value}; pycocotools' printing is swallowed."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt2, preds2 = _mapped_inputs(gt, predictions, pred_name)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt2
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(preds2)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="segm")
        coco_eval.params.useCats = 0
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return {label: float(value) for label, value in zip(AP_LABELS, coco_eval.stats[:6])}


def evaluate_referring_coco(gt_path: Path | str, predictions_path: Path | str,
                            with_map: bool = True) -> dict[str, float]:
    """A2D/JHMDB/RefCOCO metrics from a COCO GT json and a prediction json.

    Returns the COCO mAP figures (when `with_map`), then ``P@0.5``..``P@0.9``, ``overall_iou``,
    ``mean_iou`` and ``n_samples`` of the top-score prediction per GT image.
    """
    gt = validate_gt(read_json(gt_path, "COCO ground truth"), gt_path)
    preds = validate_predictions(read_json(predictions_path, "prediction file"), predictions_path)
    out: dict[str, float] = {}
    if with_map:
        out.update(coco_segm_map(gt, preds, str(predictions_path)))
    ious = top1_iou_metrics(gt, preds, str(gt_path), str(predictions_path))
    out.update(ious.to_json_dict())
    return out
