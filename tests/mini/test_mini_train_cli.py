"""`vdit mini train / eval / ablations` end to end on the two-step smoke foundation and the smoke benchmark
(seconds; the shipped models are exercised by test_mini_e2e.py)."""
import json

import pytest


@pytest.fixture(scope="module")
def smoke_run(smoke_build, smoke_bench, tmp_path_factory):
    """`vdit mini train` for 2 steps (T=2), scored on the smoke benchmark's valid split."""
    from vdit.cli.main import main

    out = tmp_path_factory.mktemp("mini_train") / "run"
    code = main(["mini", "train", "--foundation", str(smoke_build[0]), "--data", str(smoke_bench), "--out", str(out),
                 "--steps", "2", "--threads", "1", "--set", "train.num_frames=2", "--eval-limit", "1"])
    assert code == 0
    return out


def test_mini_train_saves_head_and_scores(smoke_run, capsys):
    from vdit.models.vdit import load_model_config

    head = smoke_run / "head"
    assert (head / "model.safetensors").is_file()
    assert load_model_config(head).foundation.arch == "mini"
    scores = json.loads((smoke_run / "eval" / "mini_scores.json").read_text())
    assert list(scores) == ["valid"]  # the smoke benchmark has no heldout videos
    s = scores["valid"]
    assert 0.0 <= s["J&F"] <= 1.0 and s["J&F"] == pytest.approx((s["J"] + s["F"]) / 2)
    assert sum(k["n"] for k in s["by_kind"].values()) == s["n_expressions"] > 0
    log = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "stopped" and log[-1]["step"] == 2  # vdit train's trainer and run folder


def test_mini_eval_cli(smoke_run, smoke_bench, tmp_path, capsys):
    from vdit.cli.main import main

    code = main(["mini", "eval", "--weights", str(smoke_run / "head"), "--data", str(smoke_bench),
                 "--out", str(tmp_path / "ev"), "--limit", "1", "--threads", "1"])
    assert code == 0
    assert capsys.readouterr().out.startswith("valid: J&F ")
    again = json.loads((tmp_path / "ev" / "mini_scores.json").read_text())
    first = json.loads((smoke_run / "eval" / "mini_scores.json").read_text())
    assert again["valid"]["J&F"] == pytest.approx(first["valid"]["J&F"])  # deterministic inference


def test_mini_ablations_run_resume_and_table(smoke_build, smoke_bench, tmp_path, capsys):
    from vdit.cli.main import main
    from vdit.mini.ablations import BEGIN_MARKER

    md, runs = tmp_path / "miniature.md", tmp_path / "runs"
    argv = ["mini", "ablations", "--seeds", "1", "--steps", "1", "--runs", str(runs), "--out", str(md),
            "--only", "vd_it", "--only", "text_blind", "--foundation", str(smoke_build[0]), "--data",
            str(smoke_bench), "--eval-limit", "1", "--threads", "1"]
    assert main(argv) == 0
    result = json.loads((runs / "text_blind" / "seed-0" / "result.json").read_text())
    assert result["control"] == "text_blind" and result["steps"] == 1 and result["seed"] == 42
    assert not (runs / "text_blind" / "seed-0" / "checkpoints").exists()
    text = md.read_text()
    assert BEGIN_MARKER in text and "| text-blind (empty caption) |" in text and "partial table" in text
    stamp = (runs / "vd_it" / "seed-0" / "result.json").stat().st_mtime_ns
    assert main(argv) == 0  # finished runs are not repeated
    assert (runs / "vd_it" / "seed-0" / "result.json").stat().st_mtime_ns == stamp
    assert "2 of 11 runs finished" in capsys.readouterr().out
