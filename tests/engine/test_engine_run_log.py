"""Run records: JSON lines always (valid JSON even for NaN), TensorBoard optional."""
from __future__ import annotations

import io
import json
import sys

import pytest
import yaml

from vdit.engine.run_log import LOG_FILE, METRICS_FILE, RunLogger, loss_log_values, read_metrics


def test_without_tensorboard_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    stream = io.StringIO()
    log = RunLogger(tmp_path, stream=stream)
    assert not log.has_tensorboard
    assert stream.getvalue() == ""  # a run that fails before its first scalars prints only its error
    log.scalars(1, {"loss": 1.0})  # a no-op without TensorBoard
    log.scalars(2, {"loss": 1.0})
    log.record("train", step=1, loss=float("nan"), grad_norm=float("inf"), lr=2.5)
    log.info("hello")
    log.close()
    out = stream.getvalue()
    assert out.count("tensorboard is not installed") == 1 and "[vdit train] hello" in out
    # strict JSON: non-finite values are null, never a bare NaN / Infinity
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c}")) for line in lines]
    assert rows[0]["loss"] is None and rows[0]["grad_norm"] is None and rows[0]["lr"] == 2.5
    assert rows[0]["event"] == "train"
    assert read_metrics(tmp_path) == rows
    assert "hello" in (tmp_path / LOG_FILE).read_text()


def test_disabled_logger_writes_nothing(tmp_path):
    stream = io.StringIO()
    log = RunLogger(tmp_path, enabled=False, stream=stream)
    log.info("x")
    log.record("train", step=1)
    log.close()
    assert stream.getvalue() == "" and not any(tmp_path.iterdir())


def test_tensorboard_events_when_installed(tmp_path):
    import pytest

    pytest.importorskip("tensorboard")
    log = RunLogger(tmp_path, stream=io.StringIO())
    assert log.has_tensorboard
    log.scalars(3, {"loss": 0.5})
    log.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir())


# Spec 4.1: per-layer loss weights; the auxiliary layers repeat them with suffixes _0, _1, ...
SPEC_LAYER_WEIGHTS = {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_mask": 2.0, "loss_dice": 5.0,
                      "loss_mask_low": 2.0, "loss_dice_low": 5.0}


def test_loss_log_values_follow_the_official_engine():
    """DETR-lineage train_one_epoch: `loss` = weighted total, `k` = weight_dict[k] * k (scaled),
    `k_unscaled` = the criterion's raw term; a term without a weight is only logged unscaled."""
    raw = {"loss_ce": 0.5, "loss_dice": 0.25, "loss_ce_0": 0.125, "extra": 3.0, "loss": 2.5}
    weights = {"loss_ce": 2.0, "loss_dice": 5.0, "loss_ce_0": 2.0}
    assert loss_log_values(raw, weights) == {
        "loss": 2.5,
        "loss_ce": 1.0, "loss_dice": 1.25, "loss_ce_0": 0.25,
        "loss_ce_unscaled": 0.5, "loss_dice_unscaled": 0.25, "loss_ce_0_unscaled": 0.125, "extra_unscaled": 3.0,
    }
    with pytest.raises(KeyError, match="loss"):
        loss_log_values({"loss_ce": 0.5}, weights)


def test_train_records_hold_scaled_and_unscaled_terms(engine_one_step_run):
    """A real run's train record: every term of every decoder layer, scaled under its official name and
    raw as `_unscaled`, with `loss` their weighted sum (spec 4.1 weights, restated here)."""
    cfg = yaml.safe_load((engine_one_step_run / "config.yaml").read_text())
    aux = cfg["model"]["head"]["dec_layers"] - 1 if cfg["model"]["loss"]["aux_loss"] else 0
    rows = [r for r in read_metrics(engine_one_step_run) if r["event"] == "train"]
    assert len(rows) == 1
    row = rows[0]
    scaled_sum = 0.0
    names = []
    for suffix in [""] + [f"_{i}" for i in range(aux)]:
        for term, weight in SPEC_LAYER_WEIGHTS.items():
            name = term + suffix
            names.append(name)
            assert row[name] == pytest.approx(weight * row[name + "_unscaled"], rel=1e-12), name
            scaled_sum += row[name]
    assert row["loss"] == pytest.approx(scaled_sum, rel=1e-6)
    loss_keys = {k for k in row if k.startswith("loss")}
    assert loss_keys == {"loss", *names, *(n + "_unscaled" for n in names)}
