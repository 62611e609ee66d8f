"""Shared fixtures of the engine tests: a tiny generated benchmark and a one-step run, built once per
session (the tiny foundation models: tests/conftest.py's `tiny_root`)."""
from __future__ import annotations

import pytest

from _engine_helpers import SYNTH_FRAMES, SYNTH_SIDE, SYNTH_VIDEOS


@pytest.fixture(scope="session")
def engine_synth_root(tmp_path_factory):
    from vdit.data.synthetic import make_synthetic_benchmark

    root = tmp_path_factory.mktemp("engine_synth") / "bench"
    make_synthetic_benchmark(root, num_train_videos=SYNTH_VIDEOS, num_valid_videos=0, num_heldout_videos=0,
                             num_frames=SYNTH_FRAMES, height=SYNTH_SIDE, width=SYNTH_SIDE, seed=0)
    return root



@pytest.fixture(scope="session")
def engine_one_step_run(tiny_root, engine_synth_root, tmp_path_factory):
    """A run stopped after one optimizer step (train.max_steps=1): one checkpoint, no final weights.
    Tests copy it before altering anything."""
    from _engine_helpers import tiny_args
    from vdit.cli.main import main

    out = tmp_path_factory.mktemp("one_step") / "run"
    assert main(tiny_args(tiny_root, engine_synth_root, out, "train.max_steps=1")) == 0
    return out
