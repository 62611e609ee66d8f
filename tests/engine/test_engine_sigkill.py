"""Resume after a real `kill -9` (issue 20): the process gets SIGKILL, so no `finally`, no atexit and no
lock release by Python runs. Once mid-training, once inside a checkpoint write; either way the resumed
run ends with parameters and optimiser state bit-identical to an uninterrupted run.

(tests/engine/test_engine_resume.py covers the same with exceptions standing for the crash.)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from _engine_helpers import final_weights, tiny_args
from vdit.cli.main import main
from vdit.engine import checkpoint as ck

CKPT_EVERY = 3  # 2 epochs x 4 steps: checkpoints at 3, 4 (epoch end), 6, 8 (the end)
KILL_AFTER_STEP = 7
KILL_IN_SAVE_OF = 6  # inside step 6's checkpoint: after its weights and optimiser files, before state.json

KILLER = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(int(os.environ.get("VDIT_TEST_THREADS", "1")))  # as tests/conftest.py
    mode, step, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if mode == "step":
        from vdit.engine import trainer as tr
        init = tr.Trainer.__init__
        def patched(self, *a, **k):
            init(self, *a, **k)
            def hook(state):
                if state.global_step == step:
                    os.kill(os.getpid(), signal.SIGKILL)
            self.on_step_end = hook
        tr.Trainer.__init__ = patched
    else:
        import vdit.config as config
        from vdit.engine.checkpoint import TMP_PREFIX, checkpoint_name
        save_yaml = config.save_yaml
        dying = TMP_PREFIX + checkpoint_name(step)
        def flaky(cfg, path):
            if dying in str(path):
                os.kill(os.getpid(), signal.SIGKILL)
            return save_yaml(cfg, path)
        config.save_yaml = flaky
    from vdit.cli.main import main
    main(argv)
""")


def _killed(args: list[str], mode: str, step: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, mode, str(step), *args], env=env, capture_output=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-3000:]


def _tensors(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _assert_same_end(run, reference) -> None:
    for name in ("model.safetensors", "optimizer.safetensors"):
        last = ck.checkpoint_name(8)
        got, want = _tensors(run / "checkpoints" / last / name), _tensors(reference / "checkpoints" / last / name)
        assert got.keys() == want.keys()
        for key in want:
            assert torch.equal(got[key], want[key]), f"{name}: {key}"
    got, want = final_weights(run), final_weights(reference)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


@pytest.fixture(scope="module")
def uninterrupted(tiny_root, engine_synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("sigkill_reference") / "run"
    assert main(tiny_args(tiny_root, engine_synth_root, out, f"train.ckpt_every={CKPT_EVERY}",
                          "train.keep_checkpoints=0")) == 0
    return out


def test_resume_after_sigkill_mid_training(tiny_root, engine_synth_root, tmp_path, uninterrupted):
    run = tmp_path / "run"
    args = tiny_args(tiny_root, engine_synth_root, run, f"train.ckpt_every={CKPT_EVERY}",
                     "train.keep_checkpoints=0")
    _killed(args, "step", KILL_AFTER_STEP)
    assert ck.open_checkpoint(run).path.name == ck.checkpoint_name(6)
    assert not (run / "final").exists()

    assert main(["train", "--resume", str(run)]) == 0  # the dead process's lock is gone with it
    _assert_same_end(run, uninterrupted)


def test_resume_after_sigkill_inside_a_checkpoint_write(tiny_root, engine_synth_root, tmp_path,
                                                        uninterrupted):
    run = tmp_path / "run"
    args = tiny_args(tiny_root, engine_synth_root, run, f"train.ckpt_every={CKPT_EVERY}",
                     "train.keep_checkpoints=0")
    _killed(args, "save", KILL_IN_SAVE_OF)
    checkpoints = run / "checkpoints"
    half = checkpoints / f"{ck.TMP_PREFIX}{ck.checkpoint_name(KILL_IN_SAVE_OF)}"
    assert (half / "optimizer.safetensors").is_file() and not (half / ck.STATE_FILE).exists()
    assert ck.open_checkpoint(run).path.name == ck.checkpoint_name(4)  # `latest` still names a complete one

    assert main(["train", "--resume", str(run)]) == 0
    assert not any(p.name.startswith(ck.TMP_PREFIX) for p in checkpoints.iterdir())
    _assert_same_end(run, uninterrupted)

