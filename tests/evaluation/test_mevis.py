"""MeViS J&F: union ground truth, per-expression frame means, mean over expressions."""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vdit.errors import DataError, EvaluationError
from vdit.evaluation.jf import boundary_f_measure, region_jaccard
from vdit.evaluation.mevis import evaluate_mevis

H, W = 24, 40


def rle(mask):
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def mevis(tmp_path, davis_tools):
    frames = ["00000", "00001", "00002"]
    objects = {  # anno_id -> per-frame masks (None = absent in that frame)
        "10": [box(2, 10, 2, 12), box(3, 11, 3, 13), None],
        "11": [box(12, 20, 20, 35), box(12, 20, 22, 37), box(12, 20, 24, 39)],
        "12": [box(0, 5, 30, 40), None, None],
    }
    meta = {"videos": {
        "v1": {"frames": frames, "expressions": {
            "0": {"exp": "the left one", "obj_id": [0], "anno_id": [10]},
            "1": {"exp": "both moving", "obj_id": [0, 1], "anno_id": [10, 11]},
        }},
        "v2": {"frames": frames[:2], "expressions": {
            "0": {"exp": "corner", "obj_id": [2], "anno_id": [12]},
        }},
    }}
    mask_dict = {k: [rle(m) if m is not None else None for m in v] for k, v in objects.items()}
    root = tmp_path / "valid_u"
    root.mkdir()
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    (root / "mask_dict.json").write_text(json.dumps(mask_dict))
    rng = np.random.default_rng(0)
    preds = {}
    for vid, entry in meta["videos"].items():
        for exp_id in entry["expressions"]:
            for frame in entry["frames"]:
                y0, x0 = int(rng.integers(0, 12)), int(rng.integers(0, 20))
                pred = box(y0, y0 + 8, x0, x0 + 15)
                preds[(vid, exp_id, frame)] = pred
                davis_tools.write_png(tmp_path / "res" / "Annotations" / vid / exp_id / f"{frame}.png",
                                      pred.astype(np.uint8) * 255, mode="L")
    return root, tmp_path / "res", meta, objects, preds


def expected(meta, objects, preds, skip_video=None):
    per_exp = {}
    for vid, entry in meta["videos"].items():
        for exp_id, exp in entry["expressions"].items():
            if vid == skip_video:
                per_exp[f"{vid}_{exp_id}"] = (0.0, 0.0)
                continue
            js, fs = [], []
            for t, frame in enumerate(entry["frames"]):
                gt = np.zeros((H, W), bool)
                for anno in exp["anno_id"]:
                    if objects[str(anno)][t] is not None:
                        gt |= objects[str(anno)][t]
                js.append(region_jaccard(gt, preds[(vid, exp_id, frame)]))
                fs.append(boundary_f_measure(gt, preds[(vid, exp_id, frame)]))
            per_exp[f"{vid}_{exp_id}"] = (np.mean(js), np.mean(fs))
    return per_exp


def test_mevis_matches_definition(mevis):
    root, res, meta, objects, preds = mevis
    got = evaluate_mevis(root / "meta_expressions.json", root / "mask_dict.json", res)
    want = expected(meta, objects, preds)
    assert set(got.per_expression) == set(want)
    for k, (j, f) in want.items():
        assert got.per_expression[k] == pytest.approx([j, f], abs=1e-12)
    j = np.mean([v[0] for v in want.values()])
    f = np.mean([v[1] for v in want.values()])
    assert got.j == pytest.approx(j) and got.f == pytest.approx(f) and got.jf == pytest.approx((j + f) / 2)
    assert 0 < got.jf < 1


def test_mevis_missing_video(mevis):
    root, res, meta, objects, preds = mevis
    import shutil
    shutil.rmtree(res / "Annotations" / "v2")
    with pytest.raises(EvaluationError, match="no results for video 'v2'"):
        evaluate_mevis(root / "meta_expressions.json", root / "mask_dict.json", res)
    got = evaluate_mevis(root / "meta_expressions.json", root / "mask_dict.json", res, missing_as_zero=True)
    assert got.missing_videos == ["v2"] and got.per_expression["v2_0"] == [0.0, 0.0]
    want = expected(meta, objects, preds, skip_video="v2")
    j, f = np.mean([v[0] for v in want.values()]), np.mean([v[1] for v in want.values()])
    assert got.jf == pytest.approx((j + f) / 2)


def test_mevis_bad_input(mevis, davis_tools):
    root, res, meta, objects, preds = mevis
    (res / "Annotations" / "v1" / "1" / "00002.png").unlink()
    with pytest.raises(EvaluationError, match=r"v1/1/00002\.png"):
        evaluate_mevis(root / "meta_expressions.json", root / "mask_dict.json", res)
    davis_tools.write_png(res / "Annotations" / "v1" / "1" / "00002.png", np.zeros((H + 2, W), np.uint8), "L")
    with pytest.raises(EvaluationError, match=r"00002\.png is 40x26"):
        evaluate_mevis(root / "meta_expressions.json", root / "mask_dict.json", res)
    (root / "mask_dict.json").write_text("[1, 2")
    with pytest.raises(DataError, match=r"mask_dict\.json: cannot parse json"):
        evaluate_mevis(root / "meta_expressions.json", root / "mask_dict.json", res)
    (root / "mask_dict.json").write_text(json.dumps({"10": [rle(box(0, 2, 0, 2))] * 3, "12": [None] * 2}))
    with pytest.raises(DataError, match="anno_id 11 is not in the mask dictionary"):
        evaluate_mevis(root / "meta_expressions.json", root / "mask_dict.json", res)
