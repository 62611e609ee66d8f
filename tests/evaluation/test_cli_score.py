"""`vdit score ...` (and its deprecated alias `vdit eval`) through the real entry point (vdit.cli.main.main)."""
import json
import zipfile

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vdit.cli.main import main
from vdit.evaluation.davis import SUMMARY_KEYS, evaluate_davis
from vdit.evaluation.ytvos_submission import write_expression_masks, zip_submission

SHAPE = (30, 48)


@pytest.fixture
def davis_case(tmp_path, davis_tools):
    rng = np.random.default_rng(0)
    gt = {"alpha": davis_tools.blob_sequence(rng, 5, SHAPE, 2), "beta": davis_tools.blob_sequence(rng, 4, SHAPE, 1)}
    res = {"alpha": davis_tools.blob_sequence(rng, 5, SHAPE, 2), "beta": davis_tools.blob_sequence(rng, 4, SHAPE, 1)}
    for task in ("unsupervised", "semi-supervised"):
        davis_tools.make_davis(tmp_path / "DAVIS", task, gt)
    return tmp_path / "DAVIS", davis_tools.write_results(tmp_path / "res", res), davis_tools


@pytest.mark.parametrize("task", ["unsupervised", "semi-supervised"])
def test_davis_command_writes_json(davis_case, tmp_path, capsys, task):
    root, results, _ = davis_case
    out = tmp_path / "out" / "davis.json"
    rc = main(["score", "davis", "--davis-root", str(root), "--results", str(results), "--task", task,
               "--json", str(out), "--per-object"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert list(data) == list(SUMMARY_KEYS) + ["per_object"]
    direct = evaluate_davis(root, results, task=task)
    assert data == direct.to_json_dict()
    assert set(data["per_object"]) == {"alpha_1", "alpha_2", "beta_1"}
    text = capsys.readouterr().out
    assert "J&F-Mean" in text and "alpha_2" in text


def test_davis_command_sequences_and_errors(davis_case, tmp_path, capsys):
    root, results, _ = davis_case
    out = tmp_path / "one.json"
    assert main(["score", "davis", "--davis-root", str(root), "--results", str(results), "--sequences", "beta",
                 "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["per_object"]) == {"beta_1"}
    rc = main(["score", "davis", "--davis-root", str(root), "--results", str(tmp_path / "nothing")])
    assert rc == 2
    assert "vdit score: error: results folder not found" in capsys.readouterr().err
    assert main(["score", "davis", "--davis-root", str(root), "--results", str(results), "--sequences", " , "]) == 2
    assert "--sequences is empty" in capsys.readouterr().err


def test_eval_is_a_deprecated_alias_of_score(davis_case, tmp_path, capsys):
    """`vdit eval` (the name before `vdit score`) works the same for one release, with one line on stderr."""
    root, results, _ = davis_case
    outputs = {}
    for name in ("score", "eval"):
        out = tmp_path / f"{name}.json"
        assert main([name, "davis", "--davis-root", str(root), "--results", str(results), "--json", str(out)]) == 0
        captured = capsys.readouterr()
        outputs[name] = (out.read_text(), captured.out.replace(str(out), "OUT"), captured.err)
    assert outputs["eval"][:2] == outputs["score"][:2]
    assert outputs["score"][2] == ""
    assert outputs["eval"][2].splitlines() == [outputs["eval"][2].strip()]
    assert "deprecated, use `vdit score`" in outputs["eval"][2]
    rc = main(["eval", "davis", "--davis-root", str(root), "--results", str(tmp_path / "nothing")])
    assert rc == 2 and "vdit eval: error: results folder not found" in capsys.readouterr().err


def test_ref_davis_command(davis_case, tmp_path):
    root, results, tools = davis_case
    rng = np.random.default_rng(3)
    for a in range(4):
        res = {"alpha": tools.blob_sequence(rng, 5, SHAPE, 2), "beta": tools.blob_sequence(rng, 4, SHAPE, 1)}
        tools.write_results(tmp_path / "ref" / f"anno_{a}", res)
    out = tmp_path / "ref.json"
    assert main(["score", "ref-davis", "--davis-root", str(root), "--results-root", str(tmp_path / "ref"),
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"mean", "anno_0", "anno_1", "anno_2", "anno_3"}
    assert data["mean"]["J&F-Mean"] == pytest.approx(np.mean([data[f"anno_{a}"]["J&F-Mean"] for a in range(4)]))


def test_ytvos_validate_command(tmp_path, capsys):
    meta = {"videos": {"v": {"expressions": {"0": {"exp": "x", "obj_id": "1"}}, "frames": ["00000", "00001"]}}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    write_expression_masks(tmp_path / "out", "v", "0", ["00000", "00001"], np.zeros((2, 6, 8), bool))
    good = zip_submission(tmp_path / "out", tmp_path / "good.zip")
    assert main(["score", "ytvos-validate", "--zip", str(good), "--meta", str(tmp_path / "meta.json")]) == 0
    assert "OK" in capsys.readouterr().out
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.write(tmp_path / "out" / "Annotations" / "v" / "0" / "00000.png", "Annotations/v/0/00000.png")
    assert main(["score", "ytvos-validate", "--zip", str(tmp_path / "bad.zip"), "--meta",
                 str(tmp_path / "meta.json")]) == 1
    text = capsys.readouterr().out
    assert "Annotations/v/0/00001.png: missing" in text and "INVALID: 1 problem" in text


def _coco_files(tmp_path, image_ids):
    m = np.zeros((10, 12), np.uint8)
    m[2:7, 3:9] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    r["counts"] = r["counts"].decode("ascii")
    gt = {"images": [{"id": i, "height": 10, "width": 12} for i in image_ids],
          "annotations": [{"id": k + 1, "image_id": i, "category_id": 1, "segmentation": r, "area": 30,
                           "iscrowd": 0, "bbox": [3, 2, 6, 5]} for k, i in enumerate(image_ids)],
          "categories": [{"id": 1, "name": "object"}]}
    preds = [{"image_id": i, "category_id": 1, "segmentation": r, "score": 0.9} for i in image_ids]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    return tmp_path / "gt.json", tmp_path / "pred.json"


@pytest.mark.parametrize("bench", ["a2d", "jhmdb"])
def test_a2d_jhmdb_commands(tmp_path, bench):
    gt, pred = _coco_files(tmp_path, ["v_x_f_1_i_0", "v_y_f_2_i_1"])
    out = tmp_path / "m.json"
    assert main(["score", bench, "--gt", str(gt), "--predictions", str(pred), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["mAP 0.5:0.95"] == pytest.approx(1.0) and data["overall_iou"] == 1.0 and data["P@0.9"] == 1.0


def test_refcoco_command(tmp_path):
    gt, pred = _coco_files(tmp_path, [1, 2, 3])
    out = tmp_path / "r.json"
    assert main(["score", "refcoco", "--gt", str(gt), "--predictions", str(pred), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert "mAP 0.5:0.95" not in data and data["overall_iou"] == 1.0 and data["n_samples"] == 3


def test_mevis_command(tmp_path, davis_tools, capsys):
    m = np.zeros((8, 10), np.uint8)
    m[1:5, 2:7] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    r["counts"] = r["counts"].decode("ascii")
    root = tmp_path / "valid_u"
    root.mkdir()
    (root / "meta_expressions.json").write_text(json.dumps({"videos": {"v": {
        "frames": ["00000"], "expressions": {"0": {"exp": "x", "obj_id": [0], "anno_id": [5]}}}}}))
    (root / "mask_dict.json").write_text(json.dumps({"5": [r]}))
    davis_tools.write_png(tmp_path / "res" / "v" / "0" / "00000.png", m * 255, "L")
    out = tmp_path / "mevis.json"
    assert main(["score", "mevis", "--mevis-root", str(root), "--results", str(tmp_path / "res"),
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["J&F"] == 1.0 and data["per_expression"] == {"v_0": [1.0, 1.0]}
    assert main(["score", "mevis", "--results", str(tmp_path / "res")]) == 2
    assert "--mevis-root" in capsys.readouterr().err
