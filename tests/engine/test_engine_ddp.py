"""DDP (torchrun, gloo on CPU) and gradient accumulation give the parameters of the equivalent
single-process run with the same global batch (2 processes x 1 clip == 1 process x 2 clips == 1 clip x 2
accumulation steps), up to float summation order."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _engine_helpers import SYNTH_SIDE, final_weights, tiny_args
from vdit.cli.main import main

REPO = Path(__file__).resolve().parents[2]
# Batch-global or random parts of the model are switched off so that the split of a global batch
# into processes cannot matter: dropout, VAE posterior sampling, and the predicted noise (its
# standardisation is over the whole per-process batch tensor).
DETERMINISTIC = ("train.epochs=1", "model.head.dropout=0.0", "model.head.text_proj_dropout=0.0",
                 "model.backbone.vae_latent=mean", "model.backbone.noise.kind=none")
# One Adam step moves a parameter by up to ~lr (1e-4); summation-order noise was ~1e-6 on one CPU and
# 1.6e-5 on another (2026-12-05), so the bound sits between that noise and a missed or doubled step.
ATOL = 4e-5
SUBPROCESS_TIMEOUT_S = 600


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < ATOL, f"largest parameter difference {worst}"


@pytest.fixture(scope="module")
def single(tiny_root, engine_synth_root, tmp_path_factory):
    """1 process x batch 2 (the tiny preset's batch)."""
    out = tmp_path_factory.mktemp("single") / "run"
    assert main(tiny_args(tiny_root, engine_synth_root, out, *DETERMINISTIC)) == 0
    return out


def test_all_frames_valid(engine_synth_root):
    """Precondition of the accumulation comparison: with equal valid-frame counts per clip, the mean of
    per-micro-batch normalised losses equals the big batch's loss."""
    from vdit.config import DataConfig
    from vdit.engine.datasets import build_train_dataset, set_epoch

    ds = build_train_dataset(DataConfig(name="synthetic", root=str(engine_synth_root), max_samples=8,
                                        max_size=SYNTH_SIDE), num_frames=2, seed=42)
    set_epoch(ds, 0)
    assert all(bool(ds[i].valid.all()) for i in range(len(ds)))


@pytest.mark.slow
def test_ddp_two_processes_match_single(tiny_root, engine_synth_root, tmp_path, single):
    out = tmp_path / "ddp"
    args = tiny_args(tiny_root, engine_synth_root, out, *DETERMINISTIC, "train.batch_size=1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vdit", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es) x batch 1" in proc.stderr
    _assert_close(final_weights(out), final_weights(single))


def test_grad_accumulation_matches_big_batch(tiny_root, engine_synth_root, tmp_path, single):
    out = tmp_path / "accum"
    args = tiny_args(tiny_root, engine_synth_root, out, *DETERMINISTIC, "train.batch_size=1")
    assert main([*args, "--accum", "2"]) == 0
    _assert_close(final_weights(out), final_weights(single))
