"""A run interrupted and resumed ends bit-for-bit where the uninterrupted run ends (tiny model, CPU)."""
from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from _engine_helpers import final_weights, tiny_args
from vdit.cli.main import main
from vdit.engine import checkpoint as ck
from vdit.engine import trainer as tr
from vdit.engine.run_log import read_metrics

CRASH_AT_STEP = 7  # 2 epochs x 4 steps; checkpoints at 3, 4 (epoch end), 6 -> resume mid-epoch 2 from step 6
CKPT_EVERY = 3
LR_DROP_STEP = 5  # between the checkpoints of steps 4 and 6: the resumed run must continue at the lowered rate
RUN_SETS = (f"train.ckpt_every={CKPT_EVERY}", f"train.lr_drop_steps=[{LR_DROP_STEP}]")


class Crash(RuntimeError):
    """Stands for a killed process (not a VditError, so it escapes the CLI)."""


def _crash_at(monkeypatch, step: int) -> None:
    original = tr.Trainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)

        def hook(state):
            if state.global_step == step:
                raise Crash(f"simulated crash after step {step}")

        self.on_step_end = hook

    monkeypatch.setattr(tr.Trainer, "__init__", init)


@pytest.fixture(scope="module")
def uninterrupted(tiny_root, engine_synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(tiny_args(tiny_root, engine_synth_root, out, *RUN_SETS)) == 0
    return out


@pytest.fixture(scope="module")
def crashed(tiny_root, engine_synth_root, tmp_path_factory):
    """The same run, killed after step 7 (its last checkpoint is step 6, mid-epoch 2)."""
    out = tmp_path_factory.mktemp("crashed") / "run"
    args = tiny_args(tiny_root, engine_synth_root, out, *RUN_SETS)
    with pytest.MonkeyPatch.context() as m:
        _crash_at(m, CRASH_AT_STEP)
        with pytest.raises(Crash):
            main(args)
    return out


def _copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def test_resume_is_bit_exact(tmp_path, crashed, uninterrupted):
    out = _copy(crashed, tmp_path)
    latest = ck.open_checkpoint(out)
    assert latest.path.name == ck.checkpoint_name(6)
    assert (latest.state.epoch, latest.state.batch_in_epoch, latest.state.global_step) == (1, 2, 6)
    assert not (out / "final").exists()

    assert main(["train", "--resume", str(out)]) == 0
    resumed, reference = final_weights(out), final_weights(uninterrupted)
    assert resumed.keys() == reference.keys()
    for name in reference:
        assert torch.equal(resumed[name], reference[name]), name

    # The replayed steps saw the same data and dropout: identical losses, step by step.
    def losses(run):
        return {r["step"]: r["loss"] for r in read_metrics(run) if r["event"] == "train"}

    replayed, ref = losses(out), losses(uninterrupted)
    for step in (CRASH_AT_STEP, CRASH_AT_STEP + 1):
        assert replayed[step] == ref[step]

    # The step drop: x gamma after step LR_DROP_STEP, in both runs (the resumed one read it from step 6's
    # optimiser state). Each step's record shows the rate that step used.
    def lrs(run):
        return {r["step"]: r["lr/default"] for r in read_metrics(run) if r["event"] == "train"}

    cfg = ck.load_run_config(latest)
    for run in (out, uninterrupted):
        rates = lrs(run)
        assert rates[LR_DROP_STEP] == cfg.train.lr
        assert rates[LR_DROP_STEP + 1] == pytest.approx(cfg.train.lr * cfg.train.gamma, rel=1e-12)
        assert rates[CRASH_AT_STEP + 1] == rates[LR_DROP_STEP + 1]


def _rewrite_in_layout2(ckpt_dir) -> None:
    """Rewrite a checkpoint as vdit wrote it in weights layout 2, before the modules were renamed: model and
    optimiser keys (tensors, parameter names, scalars) under the old names, and a manifest that matches."""
    import json

    from safetensors.torch import save_file

    from vdit.models.vdit import LAYOUT_3_RENAMES, WEIGHTS_LAYOUT_KEY

    def old(name: str) -> str:
        for previous, current in LAYOUT_3_RENAMES:
            if name.startswith(current):
                return previous + name[len(current):]
        return name

    model = load_file(str(ckpt_dir / ck.MODEL_FILE))
    save_file({old(k): v for k, v in model.items()}, str(ckpt_dir / ck.MODEL_FILE),
              metadata={"format": "pt", "vdit_version": "0.1.0", WEIGHTS_LAYOUT_KEY: "2"})
    optim = load_file(str(ckpt_dir / ck.OPTIM_TENSORS))
    assert any(old(k) != k for k in optim)
    save_file({old(k): v for k, v in optim.items()}, str(ckpt_dir / ck.OPTIM_TENSORS), metadata={"format": ck.FORMAT})
    meta = json.loads((ckpt_dir / ck.OPTIM_META).read_text())
    for group in meta["param_groups"]:
        group["param_names"] = [old(n) for n in group["param_names"]]
    meta["scalars"] = {old(n): v for n, v in meta["scalars"].items()}
    (ckpt_dir / ck.OPTIM_META).write_text(json.dumps(meta))
    state = json.loads((ckpt_dir / ck.STATE_FILE).read_text())
    for name in (ck.MODEL_FILE, ck.OPTIM_TENSORS, ck.OPTIM_META):
        state["files"][name] = {"bytes": (ckpt_dir / name).stat().st_size, "sha256": ck.sha256_file(ckpt_dir / name)}
    (ckpt_dir / ck.STATE_FILE).write_text(json.dumps(state))


def test_resume_from_a_layout2_checkpoint_is_bit_exact(tmp_path, crashed, uninterrupted):
    """A run checkpointed before the layout-3 renames (mask_refine, backbone.act_postprocess) resumes, with
    its optimiser moments, to exactly where the uninterrupted run ends."""
    out = _copy(crashed, tmp_path)
    latest = ck.open_checkpoint(out)
    _rewrite_in_layout2(latest.path)
    assert "mask_refine.conv1_1div8.weight" in load_file(str(latest.path / ck.MODEL_FILE))
    assert main(["train", "--resume", str(out)]) == 0
    resumed, reference = final_weights(out), final_weights(uninterrupted)
    assert resumed.keys() == reference.keys()
    for name in reference:
        assert torch.equal(resumed[name], reference[name]), name


def test_rng_state_matters(tmp_path, monkeypatch, crashed, uninterrupted):
    """Control: resuming without restoring the RNG (dropout, VAE sampling) does not reproduce the run,
    so the exactness above really depends on the saved generator states."""
    out = _copy(crashed, tmp_path)
    monkeypatch.setattr(tr, "load_rng", lambda *a, **k: False)
    assert main(["train", "--resume", str(out)]) == 0
    resumed, reference = final_weights(out), final_weights(uninterrupted)
    assert any(not torch.equal(resumed[n], reference[n]) for n in reference)


def test_crash_during_save_keeps_latest(tiny_root, engine_synth_root, tmp_path, monkeypatch):
    """A save that dies half-way leaves `latest` on the previous complete checkpoint."""
    out = tmp_path / "run"
    args = tiny_args(tiny_root, engine_synth_root, out, "train.ckpt_every=1", "train.epochs=1")
    import vdit.config as config

    real_save_yaml = config.save_yaml
    dying = f"{ck.TMP_PREFIX}{ck.checkpoint_name(2)}"

    def flaky(cfg, path):
        if dying in str(path):  # dies inside checkpoint 2, after its weights and optimizer files
            raise Crash("disk died")
        return real_save_yaml(cfg, path)

    monkeypatch.setattr(config, "save_yaml", flaky)
    with pytest.raises(Crash):
        main(args)
    ckpt = ck.open_checkpoint(out)
    assert ckpt.path.name == ck.checkpoint_name(1)
    assert (out / "checkpoints" / f"{ck.TMP_PREFIX}{ck.checkpoint_name(2)}").is_dir()  # the half-written one
    monkeypatch.setattr(config, "save_yaml", real_save_yaml)
    assert main(["train", "--resume", str(out)]) == 0
    assert not any(p.name.startswith(ck.TMP_PREFIX) for p in (out / "checkpoints").iterdir())
    assert (out / "final" / "model.safetensors").is_file()
