"""vdit.profiling: the meta-device accounting (values, live storages, SDPA routing, autocast emulation)
checked against real CPU runs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vdit.profiling import (build_model, make_batch, meta_accounting, meta_training_step, sdpa_cpu_flash,
                            sdpa_efficient)

_STEPS: dict[tuple[str, bool], dict] = {}


def _tracked_step(device: str, grad_ckpt: bool) -> dict:
    """One tiny training step under the accounting; on CPU with real values, on meta without."""
    if (device, grad_ckpt) not in _STEPS:
        _STEPS[device, grad_ckpt] = _run_tracked_step(device, grad_ckpt)
    return _STEPS[device, grad_ckpt]


def _run_tracked_step(device: str, grad_ckpt: bool) -> dict:
    from vdit.models.ops import ms_deform_attn as msda

    model = build_model("tiny", device, grad_ckpt=grad_ckpt).train()
    step = meta_training_step(model)
    t, h, w = 2, 64, 96
    # Both runs use the grid_sample deformable attention (meta cannot run the gather backward) and the
    # SDPA kernel CPU picks, so they must allocate the same tensors.
    old = msda.get_default_impl("cpu")
    msda.set_default_impl("grid_sample", "cpu")
    try:
        with meta_accounting(sdpa_kernel=sdpa_cpu_flash if device == "meta" else None, device_type=device,
                             deform_impl="grid_sample") as acc:
            torch.manual_seed(0)
            batch = make_batch(torch.randn(1, t, 3, h, w).to(device), "the red circle")
            acc.memory.track(list(model.parameters()) + list(model.buffers()))
            base = acc.memory.current
            loss = step(batch)["loss"]
            held = acc.memory.current - base
            loss.backward()
            del loss
    finally:
        msda.set_default_impl(old, "cpu")
    return {"held": held, "peak": acc.memory.peak - base, "flops": acc.flops.get_total_flops(),
            "unknown": acc.memory.unknown_reads}


@pytest.mark.parametrize("grad_ckpt", [False, True])
def test_meta_accounting_matches_a_real_cpu_step(grad_ckpt):
    real = _tracked_step("cpu", grad_ckpt)
    meta = _tracked_step("meta", grad_ckpt)
    assert meta["flops"] == real["flops"] > 0
    assert meta["held"] == pytest.approx(real["held"], rel=0.01)
    assert meta["peak"] == pytest.approx(real["peak"], rel=0.01)
    # the only value reads of weight-dependent tensors are the degenerate-box sanity checks
    assert {where.split(":")[0] for where in meta["unknown"]} <= {"box_ops.py"}, meta["unknown"]


def test_grad_ckpt_lowers_held_activations():
    plain = _tracked_step("meta", False)
    ckpt = _tracked_step("meta", True)
    assert ckpt["held"] < 0.7 * plain["held"]
    assert ckpt["flops"] > plain["flops"]  # the UNet blocks run again in backward


def test_meta_values_for_shapes_and_indices():
    with meta_accounting(count_flops=False) as acc:
        shapes = torch.as_tensor([[4, 6], [2, 3]], dtype=torch.long, device="meta")
        sizes = shapes.prod(1)
        starts = torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))
        assert shapes.tolist() == [[4, 6], [2, 3]]
        assert starts.tolist() == [0, 24]
        mask = torch.zeros(2, 5, dtype=torch.bool, device="meta")
        mask[1, 3:] = True
        assert mask.nonzero().tolist() == [[1, 3], [1, 4]]
        assert float(mask.sum()) == 2.0
        weights = torch.empty(3, device="meta")  # from the weights: unknown values
        assert bool((weights > 0).any()) is False  # answered with the no-problem branch, and recorded
        assert sum(acc.memory.unknown_reads.values()) == 1


def test_live_storage_tracking_counts_views_once_and_frees():
    with meta_accounting(count_flops=False) as acc:
        base = acc.memory.current
        x = torch.empty(1000, device="meta")
        view = x[10:]
        assert acc.memory.current - base == 4000
        del x
        assert acc.memory.current - base == 4000  # the view keeps the storage alive
        del view
        assert acc.memory.current == base
        assert acc.memory.peak - base == 4000


def test_autocast_emulation_follows_cuda_policy():
    lin = torch.nn.Linear(8, 8, device="meta")
    norm = torch.nn.LayerNorm(8, device="meta")
    with meta_accounting(autocast_dtype=torch.bfloat16, count_flops=False) as acc:
        x = torch.empty(4, 8, device="meta")
        y = lin(x)
        assert y.dtype == torch.bfloat16  # linear: lower precision
        assert norm(y).dtype == torch.float32  # layer_norm: fp32
        assert y.softmax(-1).dtype == torch.float32
        assert lin(x) is not y and len(acc.functions.weight_cache) == 2  # weight + bias cast once
        with torch.autocast(device_type="meta", enabled=False):  # the deformable attention's region
            assert lin(x).dtype == torch.float32
        assert lin(x).dtype == torch.bfloat16


def test_sdpa_routing_saves_no_attention_matrix():
    q = torch.empty(1, 2, 512, 64, device="meta", requires_grad=True)
    held = {}
    for name, kernel in (("math", None), ("efficient", sdpa_efficient)):
        with meta_accounting(sdpa_kernel=kernel, count_flops=False) as acc:
            base = acc.memory.current
            out = F.scaled_dot_product_attention(q, q, q)
            held[name] = acc.memory.current - base
            out.sum().backward()
        assert q.grad.shape == q.shape
        q.grad = None
    assert held["math"] >= held["efficient"] + 2 * 512 * 512 * 4  # the [2, 512, 512] attention, saved
    assert held["efficient"] < 2 * 512 * 64 * 4 * 2
