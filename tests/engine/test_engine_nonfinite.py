"""A NaN/Inf loss skips the optimiser step with a message; N in a row stop the run (non-zero exit)."""
from __future__ import annotations

import math

import torch

from _engine_helpers import tiny_args
from vdit.cli.main import main
from vdit.engine import trainer as tr
from vdit.engine.run_log import read_metrics
from vdit.losses import weighted_total


def _poison(monkeypatch, bad_steps) -> None:
    """Make loss_ce NaN on the micro-steps whose (1-based) number is in `bad_steps` (all when None)."""
    real_build = tr.build_criterion

    def build(*args, **kwargs):
        criterion = real_build(*args, **kwargs)
        calls = {"n": 0}

        def poisoned(out, batch):
            losses = criterion(out, batch)
            calls["n"] += 1
            if bad_steps is None or calls["n"] in bad_steps:
                losses["loss_ce"] = losses["loss_ce"] * math.nan
                losses["loss"] = weighted_total(losses, criterion.weight_dict)
            return losses

        poisoned.weight_dict = criterion.weight_dict  # the trainer logs weighted terms with it
        return poisoned

    monkeypatch.setattr(tr, "build_criterion", build)


def _snapshots(monkeypatch, store: dict) -> None:
    original = tr.Trainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)

        def hook(state):
            params = self.model.trainable_named_parameters()
            store[state.global_step] = {n: p.detach().clone() for n, p in params.items()}

        self.on_step_end = hook

    monkeypatch.setattr(tr.Trainer, "__init__", init)


def test_nan_step_is_skipped_and_reported(tiny_root, engine_synth_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _poison(monkeypatch, bad_steps={2})
    params: dict = {}
    _snapshots(monkeypatch, params)
    assert main(tiny_args(tiny_root, engine_synth_root, out, "train.epochs=1")) == 0
    err = capsys.readouterr().err
    assert "step 2 (epoch 1): non-finite loss (loss, loss_ce); optimizer step skipped (1 in a row" in err
    # the skipped step left every parameter untouched; the others moved them
    assert all(torch.equal(params[1][n], params[2][n]) for n in params[1])
    assert any(not torch.equal(params[2][n], params[3][n]) for n in params[2])
    records = read_metrics(out)
    skipped = [r for r in records if r["event"] == "nonfinite"]
    assert [(r["step"], r["consecutive"]) for r in skipped] == [(2, 1)]
    assert [r for r in records if r["event"] == "done"][0]["skipped_steps"] == 1
    assert (out / "final" / "model.safetensors").is_file()


def test_consecutive_nan_steps_stop_the_run(tiny_root, engine_synth_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _poison(monkeypatch, bad_steps=None)
    code = main(tiny_args(tiny_root, engine_synth_root, out, "train.max_consecutive_nonfinite=3"))
    assert code != 0
    err = capsys.readouterr().err
    assert "vdit train: error: 3 consecutive optimizer steps had a non-finite loss or gradient" in err
    assert err.count("optimizer step skipped") == 3
    assert not (out / "final").exists()
