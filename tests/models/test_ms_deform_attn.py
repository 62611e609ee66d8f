"""Multi-scale deformable attention: both implementations against an independent per-point computation,
gradients (gradcheck), agreement, dispatch registry, and the MSDeformAttn module."""

from __future__ import annotations

import math

import pytest
import torch

from vdit.errors import ConfigError
from vdit.models.ops import ms_deform_attn as op
from vdit.models.ops.ms_deform_attn import (
    MSDeformAttn,
    available_impls,
    get_default_impl,
    ms_deform_attn,
    register_impl,
    set_default_impl,
    unregister_impl,
)

IMPLS = ("gather", "grid_sample")
# Non-square levels of unrelated sizes, including a 1x1 level.
LEVEL_SHAPES = [(3, 5), (4, 2), (1, 1), (2, 3)]


def _levels(shapes):
    spatial = torch.tensor(shapes, dtype=torch.long)
    sizes = spatial.prod(1)
    start = torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))
    return spatial, start, int(sizes.sum())


def _reference_loops(value, shapes, locations, weights):
    """Plain-Python bilinear sampling: pixel centre i at (i + 0.5)/size, zero outside the map."""
    n_b, _, n_m, d = value.shape
    _, n_q, _, n_l, n_p, _ = locations.shape
    starts = [sum(h * w for h, w in shapes[:i]) for i in range(len(shapes))]
    out = torch.zeros(n_b, n_q, n_m * d, dtype=value.dtype)
    for b in range(n_b):
        for q in range(n_q):
            for m in range(n_m):
                acc = torch.zeros(d, dtype=value.dtype)
                for lvl, (h, w) in enumerate(shapes):
                    for p in range(n_p):
                        x = float(locations[b, q, m, lvl, p, 0]) * w - 0.5
                        y = float(locations[b, q, m, lvl, p, 1]) * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                            if 0 <= xi < w and 0 <= yi < h:
                                bil = (1 - abs(x - xi)) * (1 - abs(y - yi))
                                row = starts[lvl] + yi * w + xi
                                acc += weights[b, q, m, lvl, p] * bil * value[b, row, m]
                out[b, q, m * d:(m + 1) * d] = acc
    return out


def _random_inputs(shapes, n=2, lq=5, m=2, d=3, p=3, dtype=torch.float64, seed=0, spread=(-0.3, 1.3)):
    g = torch.Generator().manual_seed(seed)
    spatial, start, s = _levels(shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=dtype)
    lo, hi = spread
    loc = lo + (hi - lo) * torch.rand(n, lq, m, len(shapes), p, 2, generator=g, dtype=dtype)
    weights = torch.rand(n, lq, m, len(shapes), p, generator=g, dtype=dtype)
    return value, spatial, start, loc, weights


@pytest.mark.parametrize("impl", IMPLS)
def test_matches_independent_per_point_bilinear(impl):
    value, spatial, start, loc, weights = _random_inputs(LEVEL_SHAPES)
    # Hand-placed corner cases: map corners, a pixel centre, far outside, just outside each border.
    special = torch.tensor(
        [[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [-0.5, 2.0], [1.05, 0.5], [0.5, -0.05]], dtype=loc.dtype
    )
    loc[0, 0, 0, :, : special.shape[0] // 2] = special[:3]
    loc[1, 1, 1, :, : special.shape[0] // 2] = special[3:]
    assert ((loc < 0) | (loc > 1)).any(), "the case must include points outside the map"
    expected = _reference_loops(value, LEVEL_SHAPES, loc, weights)
    got = ms_deform_attn(value, spatial, start, loc, weights, impl=impl)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def _smooth_locations(shapes, n, lq, m, p, g):
    """Locations whose pixel coordinates have fractional parts in [0.2, 0.8] (bilinear kernel smooth
    there), some of them outside the map."""
    per_level = []
    for h, w in shapes:
        size = torch.tensor([w, h], dtype=torch.float64)
        cell = torch.floor(torch.rand(n, lq, m, p, 2, generator=g, dtype=torch.float64) * (size + 3) - 2)
        frac = 0.2 + 0.6 * torch.rand(n, lq, m, p, 2, generator=g, dtype=torch.float64)
        per_level.append((cell + frac + 0.5) / size)
    return torch.stack(per_level, dim=3)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_value_locations_weights(impl):
    g = torch.Generator().manual_seed(1)
    shapes = [(2, 3), (3, 2)]
    spatial, start, s = _levels(shapes)
    n, lq, m, d, p = 1, 3, 2, 2, 2
    value = torch.randn(n, s, m, d, generator=g, dtype=torch.float64, requires_grad=True)
    loc = _smooth_locations(shapes, n, lq, m, p, g).requires_grad_(True)
    weights = torch.rand(n, lq, m, len(shapes), p, generator=g, dtype=torch.float64, requires_grad=True)
    assert ((loc < 0) | (loc > 1)).any()

    def fn(v, l, a):
        return ms_deform_attn(v, spatial, start, l, a, impl=impl)

    assert torch.autograd.gradcheck(fn, (value, loc, weights), eps=1e-6, atol=1e-7)


def test_implementations_agree_in_float32_with_gradients():
    shapes = [(11, 19), (6, 10), (3, 5), (2, 3)]
    value, spatial, start, loc, weights = _random_inputs(
        shapes, n=2, lq=40, m=4, d=8, p=4, dtype=torch.float32, seed=3, spread=(-0.1, 1.1)
    )
    grad_out = torch.randn(2, 40, 32, generator=torch.Generator().manual_seed(4))
    results = {}
    for impl in IMPLS:
        inputs = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
        out = ms_deform_attn(inputs[0], spatial, start, inputs[1], inputs[2], impl=impl)
        grads = torch.autograd.grad(out, inputs, grad_out)
        results[impl] = (out, *grads)
    for a, b in zip(results["gather"], results["grid_sample"]):
        scale = b.abs().max().item()
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-6 * max(scale, 1.0))


def test_gather_int64_index_path_matches(monkeypatch):
    """Tables beyond 2^31 rows switch to int64 indices; force that path on a small case."""
    monkeypatch.setattr(op, "_INT32_MAX_ROWS", 0)
    value, spatial, start, loc, weights = _random_inputs(LEVEL_SHAPES)
    inputs = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    out = ms_deform_attn(inputs[0], spatial, start, inputs[1], inputs[2], impl="gather")
    grads = torch.autograd.grad(out.sum(), inputs)
    ref_inputs = [t.clone().requires_grad_(True) for t in (value, loc, weights)]
    ref = ms_deform_attn(ref_inputs[0], spatial, start, ref_inputs[1], ref_inputs[2], impl="grid_sample")
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads, torch.autograd.grad(ref.sum(), ref_inputs)):
        torch.testing.assert_close(a, b)


def test_gather_value_gradient_only_and_no_grad_paths():
    value, spatial, start, loc, weights = _random_inputs(LEVEL_SHAPES, dtype=torch.float32)
    v = value.clone().requires_grad_(True)
    out = ms_deform_attn(v, spatial, start, loc, weights, impl="gather")
    (gv,) = torch.autograd.grad(out.sum(), v)
    v2 = value.clone().requires_grad_(True)
    (gv2,) = torch.autograd.grad(ms_deform_attn(v2, spatial, start, loc, weights, impl="grid_sample").sum(), v2)
    torch.testing.assert_close(gv, gv2, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(ms_deform_attn(value, spatial, start, loc, weights), out.detach())


def test_input_errors_name_the_problem():
    value, spatial, start, loc, weights = _random_inputs(LEVEL_SHAPES)
    with pytest.raises(ValueError, match="cover"):
        ms_deform_attn(value[:, :-1], spatial, start, loc, weights)
    with pytest.raises(ValueError, match="level_start_index"):
        ms_deform_attn(value, spatial, start.flip(0), loc, weights)
    with pytest.raises(TypeError, match="dtype"):
        ms_deform_attn(value, spatial, start, loc.float(), weights)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn(value, spatial, start, loc, weights[..., :1])
    with pytest.raises(ValueError, match="spatial_shapes"):
        ms_deform_attn(value, spatial.float(), start, loc, weights)


def test_registry_dispatch_and_per_device_default():
    value, spatial, start, loc, weights = _random_inputs(LEVEL_SHAPES)
    calls = []

    def doubled(v, ss, ls, l, a):
        calls.append(v.device.type)
        return 2 * op.ms_deform_attn_grid_sample(v, ss, ls, l, a)

    assert set(IMPLS) <= set(available_impls())
    register_impl("test_doubled", doubled)
    try:
        with pytest.raises(ConfigError):
            register_impl("test_doubled", doubled)
        with pytest.raises(ConfigError):
            register_impl("gather", doubled, overwrite=True)
        base = ms_deform_attn(value, spatial, start, loc, weights, impl="grid_sample")
        torch.testing.assert_close(ms_deform_attn(value, spatial, start, loc, weights, impl="test_doubled"), 2 * base)
        set_default_impl("test_doubled", device_type="cpu")
        assert get_default_impl("cpu") == "test_doubled"
        assert get_default_impl("cuda") == "gather"
        torch.testing.assert_close(ms_deform_attn(value, spatial, start, loc, weights), 2 * base)
        assert calls == ["cpu", "cpu"]
    finally:
        unregister_impl("test_doubled")
    assert get_default_impl("cpu") == "gather"
    with pytest.raises(ConfigError, match="unknown"):
        ms_deform_attn(value, spatial, start, loc, weights, impl="nope")
    with pytest.raises(ConfigError):
        set_default_impl("nope")


# ------------------------------------------------------------------------------------------------
# MSDeformAttn module
# ------------------------------------------------------------------------------------------------


def _module_inputs(d_model=32, levels=3, n=2, lq=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 7), (3, 4), (2, 2)][:levels]
    spatial, start, s = _levels(shapes)
    query = torch.randn(n, lq, d_model, generator=g)
    memory = torch.randn(n, s, d_model, generator=g)
    ref = torch.rand(n, lq, levels, 2, generator=g)
    return query, ref, memory, spatial, start


def test_module_standard_initialisation():
    attn = MSDeformAttn(d_model=256, n_levels=4, n_heads=8, n_points=4)
    bias = attn.sampling_offsets.bias.view(8, 4, 4, 2)
    radius = torch.arange(1, 5, dtype=torch.float32)
    # head 0 points along +x, head 1 along the diagonal, head 2 along +y; radius = point index + 1.
    for head, direction in ((0, (1.0, 0.0)), (1, (1.0, 1.0)), (2, (0.0, 1.0)), (4, (-1.0, 0.0))):
        expected = torch.tensor(direction).view(1, 2) * radius.view(4, 1)
        for lvl in range(4):
            torch.testing.assert_close(bias[head, lvl], expected, atol=1e-6, rtol=0)
    assert attn.sampling_offsets.weight.abs().sum() == 0
    assert attn.attention_weights.weight.abs().sum() == 0 and attn.attention_weights.bias.abs().sum() == 0
    assert attn.value_proj.bias.abs().sum() == 0 and attn.output_proj.bias.abs().sum() == 0
    bound = math.sqrt(6.0 / (256 + 256))  # xavier_uniform
    assert attn.value_proj.weight.abs().max() <= bound and attn.value_proj.weight.std() > bound / 3


def _capture_locations(monkeypatch_impl_name, store):
    def capture(v, ss, ls, loc, aw):
        store.append((loc.detach().clone(), aw.detach().clone()))
        return op.ms_deform_attn_gather(v, ss, ls, loc, aw)

    register_impl(monkeypatch_impl_name, capture)


def test_module_sampling_locations_for_point_and_box_references():
    d_model, levels, heads, points = 32, 3, 4, 2
    query, ref, memory, spatial, start = _module_inputs(d_model, levels)
    store = []
    _capture_locations("test_capture", store)
    try:
        attn = MSDeformAttn(d_model, levels, heads, points, impl="test_capture")
        offsets = attn.sampling_offsets.bias.view(heads, levels, points, 2)
        attn(query, ref, memory, spatial, start)
        loc, aw = store[-1]
        size_wh = spatial.flip(-1).float()
        expected = ref[:, :, None, :, None, :] + offsets[None, None] / size_wh[None, None, None, :, None, :]
        torch.testing.assert_close(loc, expected)
        torch.testing.assert_close(aw, torch.full_like(aw, 1.0 / (levels * points)))  # zero-init logits

        box = torch.cat((ref, torch.full_like(ref, 0.3)), dim=-1)
        attn(query, box, memory, spatial, start)
        loc, _ = store[-1]
        expected = ref[:, :, None, :, None, :] + offsets[None, None] / points * 0.3 * 0.5
        torch.testing.assert_close(loc, expected)
    finally:
        unregister_impl("test_capture")


def test_module_padding_mask_zeroes_padded_values():
    query, ref, memory, spatial, start = _module_inputs()
    attn = MSDeformAttn(32, 3, 4, 2)
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    mask = torch.zeros(memory.shape[:2], dtype=torch.bool)
    mask[:, 3::4] = True
    out = attn(query, ref, memory, spatial, start, mask)
    perturbed = memory.clone()
    perturbed[mask] += 100.0
    torch.testing.assert_close(attn(query, ref, perturbed, spatial, start, mask), out)
    assert not torch.allclose(attn(query, ref, perturbed, spatial, start), out)


def test_module_runs_fp32_under_autocast_and_impls_agree():
    query, ref, memory, spatial, start = _module_inputs()
    attn = MSDeformAttn(32, 3, 4, 2)
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    torch.nn.init.normal_(attn.attention_weights.weight, std=0.5)
    plain = attn(query, ref, memory, spatial, start)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = attn(query.bfloat16(), ref, memory.bfloat16(), spatial, start)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, attn(query.bfloat16().float(), ref, memory.bfloat16().float(), spatial, start))
    attn.impl = "grid_sample"
    torch.testing.assert_close(attn(query, ref, memory, spatial, start), plain, rtol=1e-5, atol=1e-6)


def test_module_gradients_reach_every_parameter_and_input():
    query, ref, memory, spatial, start = _module_inputs()
    attn = MSDeformAttn(32, 3, 4, 2)
    query.requires_grad_(True)
    memory.requires_grad_(True)
    attn(query, ref, memory, spatial, start).pow(2).sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert memory.grad.abs().sum() > 0
    # At initialisation the query reaches the output only through zero weights; after a step it does.
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.1)
    query.grad = None
    attn(query, ref, memory, spatial, start).pow(2).sum().backward()
    assert query.grad.abs().sum() > 0


def test_module_config_and_input_errors():
    with pytest.raises(ConfigError):
        MSDeformAttn(30, 4, 8, 4)
    with pytest.raises(ConfigError):
        MSDeformAttn(32, 4, 8, 4, impl="nope")
    query, ref, memory, spatial, start = _module_inputs()
    attn = MSDeformAttn(32, 3, 4, 2)
    with pytest.raises(ValueError, match="reference_points"):
        attn(query, ref[:, :, :2], memory, spatial, start)
    with pytest.raises(ValueError, match="input_padding_mask"):
        attn(query, ref, memory, spatial, start, torch.zeros(2, 3))
