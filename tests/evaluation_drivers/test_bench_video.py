"""Ref-YouTube-VOS, Ref-DAVIS17 and MeViS drivers end to end on tiny datasets in the real layouts."""
import json
import zipfile

import numpy as np
import pytest

from vdit.evaluation.davis import SUMMARY_KEYS
from vdit.inference.benchmarks import METRICS_FILE, run_benchmark

# The oracle is exact at the native size (lossless enough: flat boxes in high-quality JPEG); through a
# resize (not a multiple of 16: padding, crop and upsampling) the box borders blur by a pixel.
ORACLE_MIN = 0.99
ORACLE_MIN_RESIZED = 0.9


def test_ytvos_oracle_scores_one_and_writes_a_valid_submission(ytvos_root, oracle, bench_options, tmp_path):
    metrics = run_benchmark("ytvos", oracle, bench_options(ytvos_root, tmp_path / "out"))
    assert metrics["submission_valid"], metrics["submission_problems"]
    assert metrics["n_videos"] == 2 and metrics["n_expressions"] == 4 and metrics["n_expressions_scored"] == 4
    assert metrics["J&F"] > ORACLE_MIN and metrics["J"] > ORACLE_MIN
    with zipfile.ZipFile(tmp_path / "out" / "submission.zip") as zf:
        names = set(zf.namelist())
    assert "Annotations/vid_a/1/00002.png" in names and len(names) == 2 * 3 + 2 * 2
    assert json.loads((tmp_path / "out" / METRICS_FILE).read_text())["J&F"] == metrics["J&F"]


def test_ytvos_oracle_through_resize_and_padding(ytvos_root, oracle, bench_options, tmp_path):
    metrics = run_benchmark("ytvos", oracle, bench_options(ytvos_root, tmp_path / "out", short_side=72))
    assert metrics["J&F"] > ORACLE_MIN_RESIZED  # 64x96 -> 72x108, padded to 80x112, cropped, upsampled back


def test_ytvos_limit_and_tiny_model(ytvos_root, drivers_model, bench_options, tmp_path, fractions):
    metrics = run_benchmark("ytvos", drivers_model, bench_options(ytvos_root, tmp_path / "out", limit=1))
    assert metrics["n_videos"] == 1 and metrics["submission_valid"]
    fractions(metrics, ["J&F", "J", "F"])
    assert set(metrics["per_expression"]) == {"vid_a_0", "vid_a_1"}
    from PIL import Image

    mask = Image.open(tmp_path / "out" / "Annotations" / "vid_a" / "0" / "00000.png")
    assert mask.mode == "L" and mask.size == (96, 64) and set(np.unique(np.asarray(mask))) <= {0, 255}


def test_ref_davis_oracle(davis_root, oracle, bench_options, tmp_path):
    metrics = run_benchmark("davis", oracle, bench_options(davis_root, tmp_path / "out"))
    assert metrics["n_videos"] == 2
    assert set(metrics["anno_sets"]) == {f"anno_{a}" for a in range(4)}
    for a in range(4):
        assert metrics["anno_sets"][f"anno_{a}"]["J&F-Mean"] > ORACLE_MIN
    assert metrics["J&F-Mean"] > ORACLE_MIN
    from vdit.data.png import read_index_png

    labels = read_index_png(tmp_path / "out" / "DVS_Annotations" / "anno_2" / "blackswan" / "00001.png")
    assert set(np.unique(labels)) == {0, 1, 2}  # both objects merged into one palette map


def test_ref_davis_tiny_model(davis_root, drivers_model, bench_options, tmp_path, fractions):
    metrics = run_benchmark("davis", drivers_model, bench_options(davis_root, tmp_path / "out", limit=1))
    assert metrics["n_videos"] == 1
    fractions(metrics, ["J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "F-Recall"])
    scores = json.loads((tmp_path / "out" / "davis_scores.json").read_text())
    assert set(scores) == {"mean", "anno_0", "anno_1", "anno_2", "anno_3"}
    assert set(scores["mean"]) == set(SUMMARY_KEYS)


def test_ref_davis_needs_the_raw_ground_truth(davis_root, oracle, bench_options, tmp_path):
    from vdit.errors import DataError

    with pytest.raises(DataError, match="not found"):
        run_benchmark("davis", oracle, bench_options(davis_root, tmp_path / "out", davis_root=tmp_path / "nowhere"))
    assert oracle.calls == 0  # checked before any inference


def test_mevis_oracle_and_tiny_model(mevis_root, oracle, drivers_model, bench_options, tmp_path, fractions):
    metrics = run_benchmark("mevis", oracle, bench_options(mevis_root, tmp_path / "oracle"))
    assert metrics["split"] == "valid_u" and metrics["n_expressions"] == 2
    assert metrics["J&F"] > ORACLE_MIN  # the two-object expression is scored against the union
    metrics = run_benchmark("mevis", drivers_model, bench_options(mevis_root, tmp_path / "tiny"))
    fractions(metrics, ["J&F", "J", "F"])
    assert set(metrics["per_expression"]) == {"mv_1_0", "mv_1_1"}


def test_merge_object_probs():
    from vdit.inference.benchmarks_video import merge_object_probs

    probs = np.array([[[0.9, 0.4, 0.6, 0.05]], [[0.7, 0.45, 0.8, 0.08]]], dtype=np.float32)[:, :, None, :]
    labels = merge_object_probs(probs, threshold=0.5)  # [t=1, 1, 4]
    # 0.9 > 0.7 -> obj 1; both < 0.5 -> background; 0.8 > 0.6 -> obj 2; tiny values lose to the 0.1 plane
    assert labels.tolist() == [[[1, 0, 2, 0]]]


def test_outputs_never_go_inside_the_dataset(ytvos_root, oracle, bench_options, tmp_path):
    from vdit.errors import ConfigError

    with pytest.raises(ConfigError, match="inside the dataset folder"):
        bench_options(ytvos_root, ytvos_root / "valid")
    assert (ytvos_root / "valid" / "Annotations" / "vid_a").is_dir()


def test_a_rerun_replaces_stale_masks(ytvos_root, oracle, bench_options, tmp_path):
    run_benchmark("ytvos", oracle, bench_options(ytvos_root, tmp_path / "out"))
    metrics = run_benchmark("ytvos", oracle, bench_options(ytvos_root, tmp_path / "out", limit=1))
    assert metrics["submission_valid"], metrics["submission_problems"]  # vid_b's old masks are gone
    assert not (tmp_path / "out" / "Annotations" / "vid_b").exists()
