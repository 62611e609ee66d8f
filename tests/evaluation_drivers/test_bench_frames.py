"""A2D-Sentences, JHMDB-Sentences and RefCOCO drivers end to end on tiny datasets in the real layouts."""
import json

import pytest

from vdit.evaluation.coco_map import AP_LABELS
from vdit.inference.benchmarks import run_benchmark

IOU_KEYS = ["overall_iou", "mean_iou", "P@0.5", "P@0.9"]
# A2D frames go through H.264 (4:2:0 chroma), RefCOCO images through JPEG: flat boxes survive, but allow
# a pixel at the borders; through a resize (padding, crop, upsampling) a little more.
ORACLE_MIN_IOU = 0.95
ORACLE_MIN_IOU_RESIZED = 0.85


def test_a2d_oracle(a2d_root, oracle, bench_options, tmp_path):
    metrics = run_benchmark("a2d", oracle, bench_options(a2d_root, tmp_path / "out"))
    assert metrics["n_samples"] == 3
    assert metrics["overall_iou"] > ORACLE_MIN_IOU and metrics["mean_iou"] > ORACLE_MIN_IOU
    assert metrics["mAP 0.5:0.95"] > 0.9 and metrics["AP 0.5"] == pytest.approx(1.0)
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(preds) == 3 * oracle.num_queries  # every query of every sample
    assert {p["image_id"] for p in preds} == {"v_clip_1_f_2_i_1", "v_clip_1_f_2_i_2", "v_clip_1_f_4_i_2"}
    assert all(p["segmentation"]["size"] == [64, 96] for p in preds)


def test_a2d_oracle_through_resize_and_padding(a2d_root, oracle, bench_options, tmp_path):
    metrics = run_benchmark("a2d", oracle, bench_options(a2d_root, tmp_path / "out", short_side=72))
    assert metrics["overall_iou"] > ORACLE_MIN_IOU_RESIZED


def test_a2d_tiny_model(a2d_root, drivers_model, bench_options, tmp_path, fractions):
    metrics = run_benchmark("a2d", drivers_model, bench_options(a2d_root, tmp_path / "out", limit=2))
    assert metrics["n_samples"] == 2
    fractions(metrics, IOU_KEYS + ["mAP 0.5:0.95", "AP 0.5"])
    assert set(AP_LABELS) <= set(metrics)
    gt = json.loads((tmp_path / "out" / "gt_evaluated.json").read_text())
    assert len(gt["images"]) == 2  # the ground truth restricted to the evaluated samples


def test_jhmdb_oracle_and_tiny_model(jhmdb_root, oracle, drivers_model, bench_options, tmp_path, fractions):
    metrics = run_benchmark("jhmdb", oracle, bench_options(jhmdb_root, tmp_path / "oracle"))
    assert metrics["n_samples"] == 2 and metrics["overall_iou"] > 0.95  # PNG frames: lossless
    metrics = run_benchmark("jhmdb", drivers_model, bench_options(jhmdb_root, tmp_path / "tiny"))
    fractions(metrics, IOU_KEYS + ["mAP 0.5:0.95"])


def test_refcoco_oracle_and_tiny_model(refcoco_root, oracle, drivers_model, bench_options, tmp_path, fractions):
    metrics = run_benchmark("refcoco", oracle, bench_options(refcoco_root, tmp_path / "oracle"))
    assert metrics["dataset"] == "refcoco" and metrics["split"] == "val" and metrics["n_samples"] == 3
    assert metrics["overall_iou"] > ORACLE_MIN_IOU
    assert "mAP 0.5:0.95" not in metrics  # RefCOCO reports IoU only
    metrics = run_benchmark("refcoco", drivers_model, bench_options(refcoco_root, tmp_path / "tiny"))
    fractions(metrics, IOU_KEYS)


def test_the_top_scored_query_is_scored(a2d_root, oracle, bench_options, tmp_path):
    """With the scores reversed the wrong (complement) masks rank first and the IoU collapses."""
    oracle.query_logits = (-1.0, 0.0, 3.0)
    metrics = run_benchmark("a2d", oracle, bench_options(a2d_root, tmp_path / "out"))
    assert metrics["overall_iou"] < 0.3
