"""A2D/JHMDB/RefCOCO metrics: hand-computed IoU cases and the mAP wrapper against a direct COCOeval call."""
import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vdit.errors import DataError, EvaluationError
from vdit.evaluation.coco_map import AP_LABELS, coco_segm_map, evaluate_referring_coco, image_id_table
from vdit.evaluation.referring_iou import iou_statistics, sample_iou, top1_iou_metrics

H, W = 20, 30


def rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def coco_gt(image_ids, masks):
    images = [{"id": i, "height": H, "width": W} for i in image_ids]
    anns = [{"id": k + 1, "image_id": i, "category_id": 1, "segmentation": rle(m), "iscrowd": 0,
             "area": int(m.sum()), "bbox": list(mask_utils.toBbox(rle(m)))}
            for k, (i, m) in enumerate(zip(image_ids, masks))]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}


def test_sample_iou_by_hand():
    gt = box(0, 10, 0, 10)  # 100 px
    pred = box(5, 15, 0, 10)  # 100 px, 50 shared -> I = 50, U = 150
    iou, inter, union = sample_iou(pred, gt)
    assert (inter, union) == (50, 150)
    assert iou == pytest.approx((50 + 1e-6) / (150 + 1e-6), rel=1e-7)
    assert sample_iou(np.zeros((4, 4)), np.zeros((4, 4)))[0] == 1.0  # (0 + eps) / (0 + eps)
    assert sample_iou(box(0, 2, 0, 2), box(5, 7, 5, 7))[0] == pytest.approx(1e-6 / (8 + 1e-6), rel=1e-5)


def test_statistics_by_hand_and_strict_thresholds():
    # IoUs 0.6 (exactly representable as counts 3/5 -> slightly above with eps), 0.9 from 9/10, 0.2
    samples = [(3, 5, 0.6), (9, 10, 0.9), (1, 5, 0.2)]
    stats = iou_statistics(samples)
    assert stats.overall_iou == pytest.approx(13 / 20)
    assert stats.mean_iou == pytest.approx((0.6 + 0.9 + 0.2) / 3)
    # strict ">": 0.6 is not above 0.6, 0.9 is not above 0.9
    assert stats.precision_at == {0.5: 2 / 3, 0.6: 1 / 3, 0.7: 1 / 3, 0.8: 1 / 3, 0.9: 0.0}


def test_top1_uses_highest_score_and_first_gt_annotation():
    gt = coco_gt(["v_a_f_1_i_1", "v_b_f_3_i_2"], [box(0, 10, 0, 10), box(0, 4, 0, 5)])
    preds = [
        {"image_id": "v_a_f_1_i_1", "category_id": 1, "segmentation": rle(box(0, 10, 0, 10)), "score": 0.2},
        {"image_id": "v_a_f_1_i_1", "category_id": 1, "segmentation": rle(box(0, 10, 0, 5)), "score": 0.9},
        {"image_id": "v_b_f_3_i_2", "category_id": 1, "segmentation": rle(box(0, 4, 0, 5)), "score": 0.5},
    ]
    stats = top1_iou_metrics(gt, preds)
    # image 1: top-score mask covers 50 of 100 GT px (I=50, U=100); image 2: exact (I=U=20)
    assert stats.overall_iou == pytest.approx(70 / 120)
    assert stats.mean_iou == pytest.approx(((50 + 1e-6) / (100 + 1e-6) + 1.0) / 2, rel=1e-6)
    # image 1's IoU is 0.5 in float32 ((50 + 1e-6) rounds to 50): not strictly above 0.5
    assert stats.precision_at == {0.5: 0.5, 0.6: 0.5, 0.7: 0.5, 0.8: 0.5, 0.9: 0.5}
    with pytest.raises(EvaluationError, match="no prediction for image 'v_b_f_3_i_2'"):
        top1_iou_metrics(gt, preds[:2])


def test_refcoco_polygon_ground_truth():
    gt = {"images": [{"id": 1, "height": H, "width": W}],
          "annotations": [{"id": 1, "image_id": 1, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]],
                           "area": 100, "iscrowd": 0, "category_id": 1}]}
    poly_mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[0, 0, 10, 0, 10, 10, 0, 10]], H, W)))
    preds = [{"image_id": 1, "segmentation": rle(poly_mask.astype(bool)), "score": 1.0}]
    assert top1_iou_metrics(gt, preds).overall_iou == 1.0


def direct_cocoeval(gt, preds):
    """What the official engine.evaluate_a2d does, on the ids as given."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(preds))
        ev = COCOeval(coco, dt, iouType="segm")
        ev.params.useCats = 0
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(AP_LABELS, ev.stats[:6]))


def hand_made_dataset(rng, string_ids=True):
    ids = [f"v_vid{k % 4}_f_{k}_i_{k % 3}" if string_ids else 100 - k for k in range(12)]
    masks = []
    for _ in ids:
        y, x = rng.integers(0, 10), rng.integers(0, 18)
        masks.append(box(y, y + int(rng.integers(3, 10)), x, x + int(rng.integers(3, 12))))
    gt = coco_gt(ids, masks)
    preds = []
    for i, m in zip(ids, masks):
        for q in range(3):
            shifted = np.roll(m, shift=(int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
            # tied scores across images exercise the image-order tie-breaking
            preds.append({"image_id": i, "category_id": 1, "segmentation": rle(shifted),
                          "score": float(rng.choice([0.25, 0.5, 0.75]))})
    return gt, preds


@pytest.mark.parametrize("string_ids", [True, False])
def test_map_wrapper_equals_direct_cocoeval(string_ids):
    gt, preds = hand_made_dataset(np.random.default_rng(4), string_ids)
    ours = coco_segm_map(gt, preds)
    direct = direct_cocoeval(gt, preds)
    assert ours.keys() == direct.keys()
    for k in AP_LABELS:
        assert ours[k] == pytest.approx(direct[k], abs=1e-12), k
    assert 0.0 < ours["mAP 0.5:0.95"] < 1.0


def test_perfect_predictions_give_map_one():
    gt, _ = hand_made_dataset(np.random.default_rng(0))
    preds = [{"image_id": a["image_id"], "category_id": 1, "segmentation": a["segmentation"], "score": 1.0}
             for a in gt["annotations"]]
    ours = coco_segm_map(gt, preds)
    assert ours["mAP 0.5:0.95"] == pytest.approx(1.0) and ours["AP 0.5"] == pytest.approx(1.0)


def test_image_id_table_keeps_sorted_order():
    gt = coco_gt(["b", "a", "c"], [box(0, 2, 0, 2)] * 3)
    assert image_id_table(gt) == {"a": 1, "b": 2, "c": 3}


def test_evaluate_files_and_bad_input(tmp_path):
    gt, preds = hand_made_dataset(np.random.default_rng(1))
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(preds))
    out = evaluate_referring_coco(gt_path, pred_path)
    assert set(AP_LABELS) <= set(out) and {"overall_iou", "mean_iou", "P@0.5", "P@0.9"} <= set(out)
    assert out["n_samples"] == 12

    (tmp_path / "corrupt.json").write_text("{not json")
    with pytest.raises(DataError, match=r"corrupt\.json"):
        evaluate_referring_coco(tmp_path / "corrupt.json", pred_path)
    with pytest.raises(DataError, match=r"corrupt\.json: cannot parse json"):
        evaluate_referring_coco(gt_path, tmp_path / "corrupt.json")
    bad = [dict(p) for p in preds]
    bad[3]["image_id"] = "v_unknown_f_0_i_0"
    pred_path.write_text(json.dumps(bad))
    with pytest.raises(EvaluationError, match="v_unknown_f_0_i_0"):
        evaluate_referring_coco(gt_path, pred_path)
    pred_path.write_text(json.dumps([{"image_id": "x", "score": 1.0}]))
    with pytest.raises(EvaluationError, match="prediction #0 lacks segmentation"):
        evaluate_referring_coco(gt_path, pred_path)
    del gt["annotations"][0]["area"]
    gt_path.write_text(json.dumps(gt))
    with pytest.raises(DataError, match="lacks area"):
        evaluate_referring_coco(gt_path, pred_path)
