"""Presets carry the supplementary's recipes; optimiser groups, LR schedule, sampler."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vdit.config import RunConfig, TrainConfig, apply_overrides, load_yaml, save_yaml
from vdit.engine.optim import build_optimizer, build_scheduler, group_lrs, lr_scale, param_groups
from vdit.engine.recipes import RUN_PRESETS, run_preset
from vdit.engine.sampler import EpochBatchSampler
from vdit.errors import ConfigError


def _recipe(name):
    t = run_preset(name).train
    return (t.epochs, t.lr, tuple(t.lr_drops), t.gamma, t.num_frames, t.batch_size, t.train_text_encoder)


def test_supplementary_recipes():
    assert _recipe("pretrain_refcoco") == (12, 2.5e-5, (8, 10), 0.1, 1, 2, True)
    assert run_preset("pretrain_refcoco").train.lr_text_encoder == 2.5e-6
    assert run_preset("pretrain_refcoco").data.refcoco_sets == ("refcoco", "refcoco+", "refcocog")
    assert _recipe("ytvos") == (9, 5e-5, (6, 8), 0.1, 5, 1, False)
    assert _recipe("ytvos_from_pretrain") == (6, 5e-5, (3, 5), 0.1, 5, 1, False)
    assert run_preset("ytvos_from_pretrain").train.init_required
    a2d = run_preset("a2d")
    assert _recipe("a2d") == (6, 5e-5, (3, 5), 0.1, 5, 1, False)
    assert a2d.data.name == "a2d" and a2d.train.init_required and a2d.train.init_exclude == ("class_embed.",)
    for cfg in map(run_preset, RUN_PRESETS):
        assert cfg.train.weight_decay == 5e-4 and cfg.train.clip_max_norm == 0.1 and cfg.train.seed == 42
        assert cfg.train.amp == "none"  # the official training scripts run fp32


def test_ablation_presets():
    modes = {n: run_preset(n).model.backbone.prompt.mode for n in ("ytvos", "ytvos_vdi", "ytvos_vdt", "ytvos_concat")}
    assert modes == {"ytvos": "attn", "ytvos_vdi": "image", "ytvos_vdt": "text", "ytvos_concat": "concat"}
    steps = {n: run_preset(n).model.backbone.noise.step for n in RUN_PRESETS if n.startswith("ytvos_step")}
    assert steps == {"ytvos_step5": 5, "ytvos_step10": 10, "ytvos_step50": 50, "ytvos_step100": 100}
    assert run_preset("ytvos").model.backbone.noise.step == 1
    for name in [*modes, *steps]:
        assert _recipe(name) == _recipe("ytvos")


def test_tiny_preset_points_at_foundation(tiny_root):
    cfg = run_preset("tiny_synthetic", tiny_root)
    assert cfg.model.foundation.t2v == str(tiny_root / "t2v")
    assert (cfg.data.name, cfg.train.num_frames, cfg.train.num_workers) == ("synthetic", 2, 0)
    with pytest.raises(ConfigError, match="lacks t2v/"):
        run_preset("tiny_synthetic", tiny_root / "t2v")


def test_run_config_yaml_round_trip(tmp_path):
    cfg = apply_overrides(run_preset("a2d"), ["train.grad_accum=4", "model.backbone.noise.step=10"])
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(RunConfig, tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("override, message", [
    ("train.amp=fp8", "train.amp='fp8'"),
    ("train.lr_drops=[8, 6]", "increasing order"),
    ("train.lr_drop_steps=[300, 300]", "increasing order"),
    ("train.lr_drop_steps=[0]", "steps >= 1"),
    ("train.grad_accum=0", "train.grad_accum=0: must be >= 1"),
    ("data.name=kinetics", "data.name='kinetics'"),
    ("train.epoch=3", "did you mean train.'epochs'?"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("?", r"\?")):
        apply_overrides(run_preset("ytvos"), [override])


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.text_encoder = nn.Linear(2, 2)
        self.transformer = nn.Linear(2, 2)
        self.frozen = nn.Linear(2, 2).requires_grad_(False)


def test_param_groups_by_component():
    model = Toy()
    tc = TrainConfig(lr=2.5e-5, lr_text_encoder=2.5e-6)
    groups = param_groups(model, tc)
    assert [(g["component"], g["lr"], g["param_names"]) for g in groups] == [
        ("default", 2.5e-5, ["transformer.weight", "transformer.bias"]),
        ("text_encoder", 2.5e-6, ["text_encoder.weight", "text_encoder.bias"]),
    ]
    model.text_encoder.requires_grad_(False)
    assert [g["component"] for g in param_groups(model, tc)] == ["default"]
    opt = build_optimizer(model, tc)
    assert opt.param_groups[0]["weight_decay"] == 5e-4 and opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_multistep_schedule_per_epoch():
    model = Toy()
    tc = TrainConfig(lr=5e-5, lr_drops=(6, 8), epochs=9)
    opt = build_optimizer(model, tc)
    sched = build_scheduler(opt, tc)
    lrs = []
    for _ in range(tc.epochs):
        lrs.append(group_lrs(opt)["default"])
        opt.step()  # no gradients: a no-op, keeps the optimizer-before-scheduler order
        sched.step()
    assert lrs[:6] == [5e-5] * 6
    assert lrs[6:8] == pytest.approx([5e-6] * 2) and lrs[8] == pytest.approx(5e-7)


def test_linear_lr_scaling():
    tc = TrainConfig(lr_scaling="linear", lr_reference_batch=2, batch_size=1, grad_accum=2)
    assert lr_scale(tc, world_size=4) == 4.0
    assert lr_scale(TrainConfig(), world_size=8) == 1.0  # default: lr as given


def test_sampler_splits_global_batches_across_ranks():
    single = EpochBatchSampler(10, batch_size=2, world_size=1, rank=0, seed=42)
    ranks = [EpochBatchSampler(10, batch_size=1, world_size=2, rank=r, seed=42) for r in range(2)]
    for epoch in (0, 1):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        together = [sorted(a + b) for a, b in zip(*(list(r) for r in ranks))]
        assert together == [sorted(b) for b in single]
    single.set_epoch(0)
    first = list(single)
    single.set_epoch(1)
    assert list(single) != first  # a new order per epoch


def test_sampler_resume_and_accumulation():
    s = EpochBatchSampler(11, batch_size=2, seed=1, grad_accum=2)
    assert len(s) == 4  # 5 full batches, cut to a multiple of the accumulation
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3, start_batch=2)
    assert list(s) == full[2:] and s.remaining() == 2
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        EpochBatchSampler(3, batch_size=2, world_size=2)
