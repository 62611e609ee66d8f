"""Frame benchmark drivers (spec 6.3, 6.4): A2D-Sentences, JHMDB-Sentences and RefCOCO/+/g.

A2D / JHMDB: a 5-frame window centred on the annotated frame (edge frames repeated), short side 360 (or
the model config's `input_short_side`) and long side at most 640; the backbone sees the whole window,
the head only the annotated frame (`valid_indices`), and every query goes through MSO. Each sample runs
through `VDITPredictor.predict_clip` (the video drivers' predictor: same model verbs, same autocast, the
post-processing of `vdit.inference.postprocess`): for each query the mask logits are cropped to the
unpadded size, bilinearly upsampled to the original size and thresholded (sigmoid > 0.5), encoded as
COCO RLE with the query's score (sigmoid of its logit). The predictions are scored against the COCO-format
ground truth: mask mAP (COCOeval, useCats=0) and the top-1 overall IoU / mean IoU / P@K.

RefCOCO/+/g: one image (T = 1), every query, same post-processing; the top-1 IoU figures (overall IoU
is the number the README reports) against the converted `instances_<ds>_<split>.json`.

One sample per forward pass (B = 1, as the official evaluation: the predicted noise is standardised over
the whole batch). The ground truth is restricted to the evaluated images (written as gt_evaluated.json,
next to predictions.json, so `vdit score a2d|jhmdb|refcoco` can re-score them).

Each sample is one item of the run's `EvalSession` (vdit.inference.benchmarks): under torchrun every rank
predicts its share and records each sample's predictions; rank 0 merges them in sample order (the
order one process writes) and scores.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from vdit.data.transforms import ClipTransform, Resize, build_transforms
from vdit.data.types import ClipSample
from vdit.errors import EvaluationError
from vdit.fileio import read_json, write_json
from vdit.inference.benchmark_session import FRAME_MAX_SIZE, BenchmarkOptions, item_seed, limited, session_of
from vdit.inference.predictor import VDITPredictor

A2D_SPLIT = "test"
REFCOCO_SPLIT = "val"
PREDICTIONS_FILE = "predictions.json"
GT_FILE = "gt_evaluated.json"
CATEGORY_ID = 1  # referring segmentation is class-agnostic: one dummy category


def eval_transform(name: str, opts: BenchmarkOptions) -> ClipTransform:
    """The dataset's evaluation resize (short side, long-side cap) with the options' sizes."""
    max_size = opts.input_max_size(FRAME_MAX_SIZE)
    if max_size is None:  # build_transforms reads None as its default cap, so build the uncapped resize here
        return ClipTransform([Resize(opts.short_side, None)], name=f"{name}/eval")
    return build_transforms(name, train=False, eval_short_side=opts.short_side, max_size=max_size)


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a bool mask [H, W] (Fortran order, counts as a str: JSON-ready)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def frame_predictor(model: nn.Module, opts: BenchmarkOptions) -> VDITPredictor:
    """The predictor of the frame protocols: the samples come resized by the dataset's transform (the
    predictor resizes nothing), so its device, threshold and autocast are what matter (`amp=None` = off
    here, see BenchmarkOptions)."""
    return VDITPredictor(model=model, device=opts.device, short_side=None, max_size=None, threshold=opts.threshold,
                         amp=bool(opts.amp))


def predict_sample(predictor: VDITPredictor, sample: ClipSample) -> list[dict[str, Any]]:
    """One prediction per query for the sample's annotated frame: {image_id, category_id, RLE, score}."""
    valid = list(sample.valid_indices) if sample.valid_indices is not None else None
    # The head runs on the annotated frame only (A2D/JHMDB) or on the single image (RefCOCO): t = 1.
    # The frames come from 8-bit images: finite, no check on the device.
    res = predictor.predict_clip(sample.frames, [sample.text], tuple(sample.orig_size), queries="all",
                                 valid_indices=valid, check_values=False)
    image_id = sample.meta["image_id"]
    return [{"image_id": image_id, "category_id": CATEGORY_ID, "segmentation": encode_rle(m), "score": float(s)}
            for m, s in zip(res.masks[0, 0], res.frame_scores[0, 0])]


def sample_key(index: int) -> str:
    """The session item name of dataset sample `index`."""
    return f"sample-{index:07d}"


def predict_dataset(model: nn.Module, dataset, opts: BenchmarkOptions, benchmark: str = "a2d"
                    ) -> list[dict[str, Any]] | None:
    """Predictions of the (first `limit`) samples: this rank predicts its share (skipping the samples an
    interrupted run finished); rank 0 returns every sample's, in sample order, the other ranks None."""
    predictor = frame_predictor(model, opts)
    indices = limited(range(len(dataset)), opts.limit)
    if not indices:
        raise EvaluationError("the dataset has no samples to evaluate")
    session = session_of(opts, model, benchmark)
    session.prepare()
    keys = [sample_key(i) for i in indices]
    mine = session.own(indices)
    todo = [i for i in mine if session.finished(sample_key(i)) is None]
    opts.begin(len(mine), "sample", done=len(mine) - len(todo))
    for n, i in enumerate(todo, start=1):
        with item_seed(sample_key(i), predictor.device):
            predictions = predict_sample(predictor, dataset[i])
        session.save(sample_key(i), {"predictions": predictions})
        opts.note(f"[{n}/{len(todo)}] sample {i}")
    records = session.collect(keys)
    if records is None:
        return None
    return [p for key in keys for p in records[key]["predictions"]]


def gt_subset(gt: dict[str, Any], image_ids: set) -> dict[str, Any]:
    """The COCO ground truth restricted to `image_ids` (every evaluated image must be in it)."""
    known = {image["id"] for image in gt.get("images", [])}
    absent = sorted(str(i) for i in image_ids - known)
    if absent:
        raise EvaluationError(f"predicted images missing from the ground truth: {', '.join(absent[:5])}")
    out = {k: v for k, v in gt.items() if k not in ("images", "annotations")}
    out["images"] = [im for im in gt["images"] if im["id"] in image_ids]
    out["annotations"] = [a for a in gt["annotations"] if a.get("image_id") in image_ids]
    return out


def score_predictions(gt_path: Path, predictions: list[dict[str, Any]], opts: BenchmarkOptions,
                      with_map: bool) -> dict[str, Any]:
    """Write predictions.json and gt_evaluated.json; mAP (optional) + top-1 IoU figures."""
    from vdit.evaluation.coco_map import coco_segm_map, validate_gt
    from vdit.evaluation.referring_iou import top1_iou_metrics

    gt = validate_gt(read_json(gt_path, "COCO ground truth"), gt_path)
    subset = gt_subset(gt, {p["image_id"] for p in predictions})
    pred_path = write_json(opts.out_dir / PREDICTIONS_FILE, predictions)
    write_json(opts.out_dir / GT_FILE, subset)
    metrics: dict[str, Any] = {}
    if with_map:
        metrics.update(coco_segm_map(subset, predictions, str(pred_path)))
    metrics.update(top1_iou_metrics(subset, predictions, str(gt_path), str(pred_path)).to_json_dict())
    metrics["predictions"] = str(pred_path)
    return metrics


def run_a2d(model: nn.Module, opts: BenchmarkOptions) -> dict[str, Any] | None:
    from vdit.data.a2d import A2D_TEST_GT_JSON, A2DSentencesDataset

    opts = opts.for_model(model)
    split = opts.split or A2D_SPLIT
    dataset = A2DSentencesDataset(opts.data_root, split, transform=eval_transform("a2d", opts), sampling="window")
    predictions = predict_dataset(model, dataset, opts, "a2d")
    if predictions is None:  # not rank 0: rank 0 scores
        return None
    return {"split": split, **score_predictions(opts.data_root / A2D_TEST_GT_JSON, predictions, opts, True)}


def run_jhmdb(model: nn.Module, opts: BenchmarkOptions) -> dict[str, Any] | None:
    from vdit.data.jhmdb import JHMDB_GT_JSON, JHMDBSentencesDataset

    opts = opts.for_model(model)
    dataset = JHMDBSentencesDataset(opts.data_root, data_root=opts.jhmdb_data_root,
                                    transform=eval_transform("jhmdb", opts))
    predictions = predict_dataset(model, dataset, opts, "jhmdb")
    if predictions is None:
        return None
    return score_predictions(opts.data_root / JHMDB_GT_JSON, predictions, opts, True)


def run_refcoco(model: nn.Module, opts: BenchmarkOptions) -> dict[str, Any] | None:
    from vdit.data.refcoco import RefCOCODataset, converted_json_path

    opts = opts.for_model(model)
    split = opts.split or REFCOCO_SPLIT
    dataset = RefCOCODataset(opts.data_root, opts.refcoco_set, split, transform=eval_transform("refcoco", opts),
                             num_frames=1)
    predictions = predict_dataset(model, dataset, opts, "refcoco")
    if predictions is None:
        return None
    gt_path = converted_json_path(opts.data_root, opts.refcoco_set, split)
    return {"dataset": opts.refcoco_set, "split": split, **score_predictions(gt_path, predictions, opts, False)}


__all__ = ["run_a2d", "run_jhmdb", "run_refcoco", "predict_sample", "predict_dataset", "encode_rle", "gt_subset",
           "sample_key", "score_predictions"]
