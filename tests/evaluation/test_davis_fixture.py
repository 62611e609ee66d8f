"""Correctness bar: every figure the official davis2017-evaluation reports on the shared fixture, to 1e-9.

The layout is the one ../shared/fixtures/davis/README.md describes: for the unsupervised protocol the
OSVOS masks are the ground truth (Annotations_unsupervised) and the RVOS masks the results; for the
semi-supervised protocol the other way round (Annotations = RVOS, results = OSVOS).
"""
import json
import os
from pathlib import Path

import pytest

from vdit.evaluation.davis import SUMMARY_KEYS, evaluate_davis

TOLERANCE = 1e-9
METHODS = {"unsupervised": ("osvos", "rvos"), "semi-supervised": ("rvos", "osvos")}


def build_layout(fixture: Path, root: Path, task: str, sequences: list[str]) -> Path:
    gt_method, res_method = METHODS[task]
    folder = "Annotations_unsupervised" if task == "unsupervised" else "Annotations"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    for seq in sequences:
        gt_dir = root / folder / "480p" / seq
        jpg_dir = root / "JPEGImages" / "480p" / seq
        gt_dir.mkdir(parents=True)
        jpg_dir.mkdir(parents=True)
        for png in sorted((fixture / gt_method / seq).glob("*.png")):
            os.symlink(png, gt_dir / png.name)
            (jpg_dir / f"{png.stem}.jpg").write_bytes(b"")  # the evaluator only lists the frames
    return fixture / res_method


@pytest.mark.slow
@pytest.mark.parametrize("task", ["unsupervised", "semi-supervised"])
def test_matches_official_evaluator(shared_dir, tmp_path, task):
    fixture = shared_dir / "fixtures" / "davis"
    expected = json.loads((fixture / "expected_public.json").read_text())[task]
    sequences = sorted({name.rsplit("_", 1)[0] for name in expected["per_object"]})
    assert len(sequences) == 8
    results = build_layout(fixture, tmp_path / "DAVIS", task, sequences)

    got = evaluate_davis(tmp_path / "DAVIS", results, task=task)

    for key in SUMMARY_KEYS:
        assert abs(got.summary[key] - expected[key]) <= TOLERANCE, (key, got.summary[key], expected[key])
    assert set(got.per_object) == set(expected["per_object"])
    for name, want in expected["per_object"].items():
        for measure in ("J", "F"):
            assert abs(got.per_object[name][measure] - want[measure]) <= TOLERANCE, (name, measure)
    as_json = got.to_json_dict()
    assert list(as_json)[:7] == list(SUMMARY_KEYS) and as_json["per_object"] == got.per_object
