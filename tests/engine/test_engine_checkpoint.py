"""Checkpoint pieces: optimiser / RNG / scheduler round trips without pickle, manifest checks, pruning,
initialisation from pre-trained weights."""
from __future__ import annotations

import collections
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load, save, save_file
from torch import nn

from vdit.config import TrainConfig
from vdit.engine import checkpoint as ck
from vdit.engine.optim import build_optimizer, build_scheduler


class Toy(nn.Module):
    """Two components, named like the real model's (text_encoder.* gets its own group)."""

    def __init__(self):
        super().__init__()
        self.text_encoder = nn.Linear(3, 4)
        self.class_embed = nn.Linear(4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.text_encoder(x)).sum() + self.class_embed(self.text_encoder(x)).sum()


def _train(model, opt, sched, steps, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(5, 3, generator=g)).backward()
        opt.step()
        sched.step()


def _setup(seed=0):
    torch.manual_seed(seed)
    model = Toy()
    tc = TrainConfig(lr=0.01, lr_text_encoder=0.001, lr_drops=(2, 4))
    opt = build_optimizer(model, tc)
    return model, opt, build_scheduler(opt, tc)


def test_optimizer_and_scheduler_round_trip_exactly():
    model, opt, sched = _setup()
    _train(model, opt, sched, 3, seed=1)
    tensors, meta = ck.optimizer_to_files(opt)
    blob = save(tensors)  # through the safetensors byte format
    sched_json = ck.to_json(sched.state_dict())
    assert "__counter__" in str(sched_json)

    model2, opt2, sched2 = _setup(seed=5)
    model2.load_state_dict(model.state_dict())
    ck.optimizer_from_files(opt2, load(blob), meta, source=Path("optimizer.json"))
    sched2.load_state_dict(ck.from_json(sched_json))
    assert isinstance(sched2.milestones, collections.Counter)

    _train(model, opt, sched, 3, seed=2)
    _train(model2, opt2, sched2, 3, seed=2)
    for (n, a), b in zip(model.named_parameters(), model2.parameters()):
        assert torch.equal(a, b), n
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in opt2.param_groups]


def test_optimizer_for_other_parameters_is_refused():
    model, opt, sched = _setup()
    _train(model, opt, sched, 1, seed=1)
    tensors, meta = ck.optimizer_to_files(opt)
    meta["param_groups"][0]["param_names"][0] = "renamed.weight"
    with pytest.raises(ck.CheckpointError, match="saved for other parameters"):
        ck.optimizer_from_files(opt, tensors, meta, source=Path("x/optimizer.json"))


def test_rng_round_trip():
    cpu = torch.device("cpu")
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    tensors, meta = ck.capture_rng(cpu)
    assert tensors["torch_cpu"].dtype == torch.uint8
    first = (torch.rand(4), random.random(), np.random.rand(2))
    ck.restore_rng(load(save(tensors)), json.loads(json.dumps(meta)), cpu)
    second = (torch.rand(4), random.random(), np.random.rand(2))
    assert torch.equal(first[0], second[0]) and first[1] == second[1] and np.array_equal(first[2], second[2])


def test_checkpoint_layout_and_manifest(engine_one_step_run):
    ckpt = ck.open_checkpoint(engine_one_step_run)
    files = {p.name for p in ckpt.path.iterdir()}
    assert files == {ck.MODEL_FILE, ck.MODEL_CONFIG_FILE, ck.OPTIM_TENSORS, ck.OPTIM_META, ck.RNG_TENSORS,
                     ck.RNG_META, ck.RUN_CONFIG_FILE, ck.STATE_FILE, "README.md"}  # the model card
    assert set(ckpt.meta["files"]) == files - {ck.STATE_FILE}
    assert ckpt.state.global_step == 1 and ckpt.state.batch_in_epoch == 1
    assert (engine_one_step_run / "checkpoints" / ck.LATEST).read_text().strip() == ckpt.path.name
    # nothing pickled: every tensor file is safetensors, everything else JSON / YAML text
    rng = ck._load_tensors(ckpt.file(ck.RNG_TENSORS))
    assert rng["rank0/torch_cpu"].dtype == torch.uint8
    assert ck.load_run_config(ckpt).train.max_steps == 1


def test_altered_file_same_size_is_corrupt(engine_one_step_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(engine_one_step_run, out)
    path = ck.resolve_checkpoint(out) / ck.RNG_TENSORS
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ck.CheckpointError, match=f"{path}: corrupt"):
        ck.open_checkpoint(out)


def test_incomplete_checkpoint_folder(tmp_path):
    d = tmp_path / "checkpoints" / ck.checkpoint_name(3)
    d.mkdir(parents=True)
    with pytest.raises(ck.CheckpointError, match="state.json: missing"):
        ck.open_checkpoint(d)
    (tmp_path / "checkpoints" / ck.LATEST).write_text("step-00000009\n")
    with pytest.raises(ck.CheckpointError, match="not a checkpoint folder"):
        ck.open_checkpoint(tmp_path)


def test_prune_keeps_newest_and_latest(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3, 4):
        (root / ck.checkpoint_name(step)).mkdir(parents=True)
    (root / ck.LATEST).write_text(ck.checkpoint_name(4))
    ck.prune_checkpoints(root, keep=2)
    assert [p.name for p in ck.list_checkpoints(root)] == [ck.checkpoint_name(3), ck.checkpoint_name(4)]


def test_init_weights_with_exclusion(tmp_path):
    torch.manual_seed(0)
    src, dst = Toy(), Toy()
    for p in dst.text_encoder.parameters():
        p.requires_grad_(False)  # frozen parameters are loaded too
    fresh_cls = dst.class_embed.weight.detach().clone()
    save_file({n: p.detach() for n, p in src.named_parameters()}, str(tmp_path / "model.safetensors"))
    info = ck.load_init_weights(dst, tmp_path, exclude=("class_embed.",))
    assert info == {"loaded": 4, "excluded": 2}
    assert torch.equal(dst.head.weight, src.head.weight)
    assert torch.equal(dst.text_encoder.weight, src.text_encoder.weight)
    assert torch.equal(dst.class_embed.weight, fresh_cls)


def test_init_weights_mismatch(tmp_path):
    torch.manual_seed(0)
    tensors = {n: p.detach() for n, p in Toy().named_parameters()}
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ck.CheckpointError, match="unknown to this model"):
        ck.load_init_weights(Toy(), tmp_path)
    del tensors["extra.weight"], tensors["head.bias"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ck.CheckpointError, match="lacks 1 trainable"):
        ck.load_init_weights(Toy(), tmp_path)
    with pytest.raises(ck.CheckpointError, match="no weights at"):
        ck.load_init_weights(Toy(), tmp_path / "missing")
