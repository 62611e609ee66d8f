"""Mixed precision: bf16 / fp16 autocast runs a step with a finite loss and fp32 master weights; fp16
adds loss scaling (its scale is logged)."""
from __future__ import annotations

import math

import pytest
import torch

from _engine_helpers import final_weights, tiny_args
from vdit.cli.main import main
from vdit.engine.run_log import read_metrics


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_step(tiny_root, engine_synth_root, tmp_path, amp):
    out = tmp_path / "run"
    args = tiny_args(tiny_root, engine_synth_root, out, "train.epochs=1", "data.max_samples=2")
    assert main([*args, "--amp", amp]) == 0
    rows = [r for r in read_metrics(out) if r["event"] == "train"]
    assert len(rows) == 1 and math.isfinite(rows[0]["loss"])
    assert ("amp_scale" in rows[0]) == (amp == "fp16")
    weights = final_weights(out)
    assert all(t.dtype == torch.float32 for t in weights.values())  # master weights stay fp32
