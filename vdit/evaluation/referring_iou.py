"""Overall IoU, mean IoU and precision@K of the top-scoring prediction per sample (spec 6.3 / 6.4).

This is `calculate_precision_at_k_and_iou_metrics` of MTTR / SgMg / VD-IT (`datasets/a2d_eval.py`), used
for A2D-Sentences, JHMDB-Sentences and (on segmentation masks) RefCOCO/+/g:

* every GT image id holds exactly one GT instance (its first annotation is used);
* the prediction with the highest score is taken (``sorted(preds, key=score)[-1]``: on equal scores the
  last one in input order wins);
* IoU = (I + 1e-6) / (U + 1e-6), computed in float32 like the official torch code (the counts are exact,
  the ratio is rounded to float32);
* overall IoU = sum(I) / sum(U) over the dataset, mean IoU = mean of the per-sample IoUs,
  P@K = fraction of samples with IoU strictly greater than K, K in 0.5..0.9.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vdit.errors import DataError, EvaluationError

IOU_EPS = 1e-6
PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def sample_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, int, int]:
    """(IoU, intersection, union) of one binary prediction against one binary GT mask (MTTR formula)."""
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise EvaluationError(f"prediction {pred.shape} and ground truth {gt.shape} masks differ in size")
    inter = int(np.count_nonzero(pred & gt))
    union = int(np.count_nonzero(pred | gt))
    eps = np.float32(IOU_EPS)
    iou = (np.float32(inter) + eps) / (np.float32(union) + eps)
    return float(iou), inter, union


@dataclass
class ReferringIoU:
    """Top-1 IoU statistics over a set of samples."""

    overall_iou: float
    mean_iou: float
    precision_at: dict[float, float]
    n_samples: int

    def to_json_dict(self) -> dict:
        out = {"overall_iou": self.overall_iou, "mean_iou": self.mean_iou, "n_samples": self.n_samples}
        out.update({f"P@{k}": v for k, v in self.precision_at.items()})
        return out


def iou_statistics(samples: Iterable[tuple[int, int, float]]) -> ReferringIoU:
    """Aggregate (intersection, union, iou) triples into overall/mean IoU and P@K."""
    total_i = total_u = 0.0
    ious: list[float] = []
    hits = dict.fromkeys(PRECISION_THRESHOLDS, 0)
    for inter, union, iou in samples:
        total_i += inter
        total_u += union
        ious.append(iou)
        for k in PRECISION_THRESHOLDS:
            if iou > k:
                hits[k] += 1
    if not ious:
        raise EvaluationError("no sample to evaluate")
    n = len(ious)
    overall = total_i / total_u if total_u > 0 else float("nan")
    return ReferringIoU(overall, float(np.mean(ious)), {k: hits[k] / n for k in PRECISION_THRESHOLDS}, n)


def annotation_mask(segmentation, height: int, width: int, where: str) -> np.ndarray:
    """Binary mask of a COCO segmentation: polygons, uncompressed RLE or compressed RLE."""
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
            rle = segmentation
        else:
            raise ValueError("expected polygons or an RLE dict with 'size' and 'counts'")
        return mask_utils.decode(rle).astype(bool)
    except Exception as exc:  # pycocotools raises bare TypeError/ValueError on malformed input
        raise DataError(f"{where}: cannot decode segmentation: {exc}") from None


def top1_iou_metrics(gt: dict, predictions: list[dict], gt_name: str = "ground truth",
                     pred_name: str = "predictions") -> ReferringIoU:
    """Top-1 IoU statistics of COCO-style `predictions` against a COCO-format `gt` dict.

    gt: {"images": [{"id", "height", "width"}...], "annotations": [{"image_id", "segmentation"}...]};
    predictions: [{"image_id", "segmentation": RLE, "score"}...]. Image ids may be strings or ints.
    """
    anns_by_image: dict = defaultdict(list)
    for ann in gt["annotations"]:
        anns_by_image[ann["image_id"]].append(ann)
    preds_by_image: dict = defaultdict(list)
    for pred in predictions:
        preds_by_image[pred["image_id"]].append(pred)

    def samples():
        for image in gt["images"]:
            image_id = image["id"]
            if not anns_by_image[image_id]:
                raise DataError(f"{gt_name}: image {image_id!r} has no annotation")
            if not preds_by_image[image_id]:
                raise EvaluationError(f"{pred_name}: no prediction for image {image_id!r}")
            h, w = int(image["height"]), int(image["width"])
            gt_mask = annotation_mask(anns_by_image[image_id][0]["segmentation"], h, w,
                                      f"{gt_name} image {image_id!r}")
            best = sorted(preds_by_image[image_id], key=lambda p: p["score"])[-1]
            pred_mask = annotation_mask(best["segmentation"], h, w, f"{pred_name} image {image_id!r}")
            iou, inter, union = sample_iou(pred_mask, gt_mask)
            yield inter, union, iou

    return iou_statistics(samples())
