"""Fused Triton multi-scale deformable attention (issue 16), run in Triton's CPU interpreter.

The kernels' forward and all three gradients are compared with a reference restated here from the op's
definition (spec 3.4; Deformable DETR's bilinear sampling, ``align_corners=False``, zero padding) and with
the ``gather`` implementation. The whole file runs with ``TRITON_INTERPRET=1`` (set by a module fixture
before any kernel is built) and is skipped when triton is not installed. Shapes are tiny: the
interpreter executes every kernel op in numpy, program by program.
"""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from vdit.errors import ConfigError
from vdit.models.ops import ms_deform_attn_triton as tri
from vdit.models.ops.ms_deform_attn import (
    CUDA_DEFAULT_ENV,
    MSDeformAttn,
    apply_cuda_default,
    available_impls,
    get_default_impl,
    ms_deform_attn,
    ms_deform_attn_gather,
    register_triton_if_available,
    set_default_impl,
    unregister_impl,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None,
    reason="triton is not installed (pip install triton, or the 'test' extra): the fused kernel is tested "
    "in Triton's CPU interpreter",
)

# Non-square levels of unrelated sizes, including a 1x1 level and a one-row level.
LEVEL_SHAPES = [(3, 5), (4, 2), (1, 1), (2, 3)]
FP32_TOL = {"rtol": 1e-5, "atol": 1e-5}
FP64_TOL = {"rtol": 1e-12, "atol": 1e-12}
# bf16 inputs: the kernels compute in fp32 and each output / gradient entry is rounded once to bf16
# (8 significant bits: round-to-nearest error <= 2^-8 of the value), plus fp32 accumulation error
# (~1e-7 of the largest entry, for entries near zero).
BF16_RTOL = 2.0**-8
BF16_ATOL_OF_MAX = 1e-5


@pytest.fixture(scope="module", autouse=True)
def interpreter():
    """TRITON_INTERPRET=1 for this module only, and "triton" registered while it runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tri.INTERPRET_ENV, "1")
        was_registered = tri.IMPL_NAME in available_impls()
        assert register_triton_if_available(), tri.unavailable_reason()
        try:
            yield
        finally:
            if not was_registered:
                unregister_impl(tri.IMPL_NAME)


def _levels(shapes):
    spatial = torch.tensor(shapes, dtype=torch.long)
    sizes = spatial.prod(1)
    start = torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))
    return spatial, start, int(sizes.sum())


def _reference(value, shapes, loc, weights):
    """The op restated per corner, differentiable by autograd.

    out[n, q, m] = sum_{l, p} A[n, q, m, l, p] * sum over the 4 neighbours (xi, yi) of the pixel position
    (x, y) = (loc_x * w_l - 0.5, loc_y * h_l - 0.5) of bil * value_l[n, yi * w_l + xi, m], where
    bil = (1 - fx or fx) * (1 - fy or fy) for the lower / upper neighbour, f = position - floor(position),
    and neighbours outside the map contribute nothing. floor() has no gradient, so d bil / d position is
    the right derivative at integer positions.
    """
    n, _, m, d = value.shape
    lq = loc.shape[1]
    n_idx = torch.arange(n).view(n, 1, 1, 1)
    m_idx = torch.arange(m).view(1, 1, m, 1)
    out = value.new_zeros(n, lq, m, d)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        level_value = value[:, start:start + h * w]  # [N, h*w, M, D]
        x = loc[:, :, :, lvl, :, 0] * w - 0.5  # [N, Lq, M, P]
        y = loc[:, :, :, lvl, :, 1] * h - 0.5
        x0, y0 = torch.floor(x).detach(), torch.floor(y).detach()
        fx, fy = x - x0, y - y0
        for yi, wy in ((y0, 1 - fy), (y0 + 1, fy)):
            for xi, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                row = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long()
                tap = level_value[n_idx, row, m_idx]  # [N, Lq, M, P, D]
                out = out + ((weights[:, :, :, lvl] * wy * wx * inside)[..., None] * tap).sum(3)
        start += h * w
    return out.reshape(n, lq, m * d)


def _inputs(shapes, n, lq, m, d, p, dtype, seed):
    """Random inputs whose locations include every border case: map corners 0 and 1, the first and the
    last pixel centre (integer pixel positions: kinks of the bilinear kernel), exactly one pixel outside
    on each side (pixel -1 and w), far outside, and random points in [-0.3, 1.3]."""
    g = torch.Generator().manual_seed(seed)
    spatial, start, s = _levels(shapes)
    value = torch.randn(n, s, m, d, generator=g, dtype=torch.float64)
    loc = -0.3 + 1.6 * torch.rand(n, lq, m, len(shapes), p, 2, generator=g, dtype=torch.float64)
    weights = torch.rand(n, lq, m, len(shapes), p, generator=g, dtype=torch.float64)
    size = spatial.flip(-1).to(torch.float64)  # (w, h) per level, [L, 2]
    special = [
        torch.zeros(len(shapes), 2, dtype=torch.float64),  # top-left corner of the map
        torch.ones(len(shapes), 2, dtype=torch.float64),  # bottom-right corner
        0.5 / size,  # centre of the first pixel
        (size - 0.5) / size,  # centre of the last pixel
        -0.5 / size,  # pixel position -1: only the upper neighbour is in the map
        (size + 0.5) / size,  # pixel position w: only the lower neighbour is in the map
        torch.tensor([-0.5, 2.0], dtype=torch.float64).expand(len(shapes), 2),  # far outside
        torch.stack((torch.full((len(shapes),), 0.5, dtype=torch.float64), 1.0 + 0.25 / size[:, 1]), -1),
    ]
    flat = loc.view(-1, len(shapes), p, 2)
    for i, case in enumerate(special):
        flat[i % flat.shape[0], :, i % p] = case
    cast = [t.to(dtype) for t in (value, loc, weights)]
    return cast[0], spatial, start, cast[1], cast[2]


def _run(fn, value, spatial, start, loc, weights, grad_out, needs=(True, True, True)):
    leaves = [t.detach().clone().requires_grad_(need) for t, need in zip((value, loc, weights), needs)]
    out = fn(leaves[0], spatial, start, leaves[1], leaves[2])
    grads = torch.autograd.grad(out, [t for t in leaves if t.requires_grad], grad_out)
    return [out.detach(), *grads]


def _triton(value, spatial, start, loc, weights):
    return ms_deform_attn(value, spatial, start, loc, weights, impl=tri.IMPL_NAME)


def _shapes_reference(value, spatial, start, loc, weights):
    return _reference(value, [tuple(s) for s in spatial.tolist()], loc, weights)


# ------------------------------------------------------------------------------------------------
# Forward and gradients
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "d", "p", "tol"),
    [(torch.float32, 4, 2, FP32_TOL), (torch.float32, 8, 4, FP32_TOL), (torch.float64, 4, 3, FP64_TOL)],
    ids=["fp32-D4-P2", "fp32-D8-P4", "fp64-D4-P3"],
)
def test_forward_and_gradients_match_reference_and_gather(dtype, d, p, tol):
    value, spatial, start, loc, weights = _inputs(LEVEL_SHAPES, n=2, lq=5, m=2, d=d, p=p, dtype=dtype, seed=d + p)
    assert ((loc < 0) | (loc > 1)).any() and (loc == 0).any() and (loc == 1).any()
    grad_out = torch.randn(2, 5, 2 * d, generator=torch.Generator().manual_seed(7), dtype=dtype)
    got = _run(_triton, value, spatial, start, loc, weights, grad_out)
    expected = _run(_shapes_reference, value, spatial, start, loc, weights, grad_out)
    gathered = _run(ms_deform_attn_gather, value, spatial, start, loc, weights, grad_out)
    names = ("output", "d value", "d locations", "d weights")
    for name, a, b, c in zip(names, got, expected, gathered):
        assert a.shape == b.shape and a.dtype == dtype, name
        assert b.abs().max() > 0, name  # the case exercises every term
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"{name} vs reference: {m}")
        torch.testing.assert_close(a, c, **tol, msg=lambda m, name=name: f"{name} vs gather: {m}")


def test_several_query_blocks_and_heads():
    """70 queries span two 64-query programs (the second partly masked); 3 heads, D = 3 (padded to 4)."""
    shapes = [(2, 3), (3, 1)]
    value, spatial, start, loc, weights = _inputs(shapes, n=1, lq=70, m=3, d=3, p=2, dtype=torch.float32, seed=5)
    grad_out = torch.randn(1, 70, 9, generator=torch.Generator().manual_seed(8))
    got = _run(_triton, value, spatial, start, loc, weights, grad_out)
    expected = _run(_shapes_reference, value, spatial, start, loc, weights, grad_out)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **FP32_TOL)


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True)],
                         ids=["value-only", "locations-only", "weights-only"])
def test_partial_gradients(needs):
    """Each gradient alone (the kernel skips the other ones) equals the reference's."""
    value, spatial, start, loc, weights = _inputs([(3, 2), (1, 4)], n=1, lq=4, m=2, d=4, p=2,
                                                  dtype=torch.float32, seed=11)
    grad_out = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(9))
    got = _run(_triton, value, spatial, start, loc, weights, grad_out, needs)
    expected = _run(_shapes_reference, value, spatial, start, loc, weights, grad_out, needs)
    assert len(got) == 2
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **FP32_TOL)


def test_bfloat16_inputs_within_one_rounding_of_the_exact_result():
    """bf16 in, bf16 out: every output / gradient entry is the float64 reference, evaluated on the same
    bf16 values, rounded once to bf16 (relative error <= 2^-8), up to fp32 accumulation error."""
    value, spatial, start, loc, weights = _inputs(LEVEL_SHAPES, n=1, lq=6, m=2, d=8, p=2,
                                                  dtype=torch.bfloat16, seed=13)
    grad_out = torch.randn(1, 6, 16, generator=torch.Generator().manual_seed(10)).to(torch.bfloat16)
    got = _run(_triton, value, spatial, start, loc, weights, grad_out)
    exact = _run(_shapes_reference, *(t.double() if t.is_floating_point() else t
                                      for t in (value, spatial, start, loc, weights)), grad_out.double())
    for name, a, b in zip(("output", "d value", "d locations", "d weights"), got, exact):
        assert a.dtype == torch.bfloat16, name
        torch.testing.assert_close(a.double(), b, rtol=BF16_RTOL, atol=BF16_ATOL_OF_MAX * b.abs().max().item(),
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_module_with_triton_impl_matches_gather():
    """MSDeformAttn(impl="triton") end to end (projections, softmax, box references) against impl="gather"."""
    torch.manual_seed(0)
    shapes = [(4, 5), (2, 3)]
    spatial, start, s = _levels(shapes)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2, impl=tri.IMPL_NAME)
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)
    torch.nn.init.normal_(attn.attention_weights.weight, std=0.5)
    g = torch.Generator().manual_seed(1)
    query = torch.randn(1, 3, 16, generator=g)
    memory = torch.randn(1, s, 16, generator=g, requires_grad=True)
    ref = torch.cat((torch.rand(1, 3, 2, 2, generator=g), torch.full((1, 3, 2, 2), 0.4)), -1)
    out = attn(query, ref, memory, spatial, start)
    grads = torch.autograd.grad(out.pow(2).sum(), [memory, *attn.parameters()])
    attn.impl = "gather"
    out_g = attn(query, ref, memory, spatial, start)
    grads_g = torch.autograd.grad(out_g.pow(2).sum(), [memory, *attn.parameters()])
    torch.testing.assert_close(out, out_g, **FP32_TOL)
    for a, b in zip(grads, grads_g):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, b.abs().max().item()))


def test_empty_query_set():
    value, spatial, start, loc, weights = _inputs([(2, 2)], n=1, lq=1, m=2, d=4, p=2, dtype=torch.float32, seed=0)
    out = _triton(value, spatial, start, loc[:, :0], weights[:, :0])
    assert out.shape == (1, 0, 8)


# ------------------------------------------------------------------------------------------------
# Availability and registry policy
# ------------------------------------------------------------------------------------------------


def test_cuda_default_policy(monkeypatch):
    """triton is the CUDA default only where it runs compiled on a CUDA device; the variable overrides
    the choice; the CPU default is never touched."""
    assert tri.IMPL_NAME in available_impls()
    try:
        set_default_impl("gather", device_type="cuda")
        monkeypatch.delenv(CUDA_DEFAULT_ENV, raising=False)
        assert tri.interpret_mode()  # this module runs the kernels in the interpreter
        assert apply_cuda_default() is None  # interpreter: no compiled kernels, nothing changes
        assert get_default_impl("cuda") == "gather"
        monkeypatch.setenv(tri.INTERPRET_ENV, "0")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert apply_cuda_default() == tri.IMPL_NAME  # a CUDA machine with triton
        assert get_default_impl("cuda") == tri.IMPL_NAME and get_default_impl("cpu") == "gather"
        monkeypatch.setenv(CUDA_DEFAULT_ENV, "gather")  # the opt-out (bit-reproducible d value)
        assert apply_cuda_default() == "gather" and get_default_impl("cuda") == "gather"
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.delenv(CUDA_DEFAULT_ENV)
        assert apply_cuda_default() is None  # no CUDA device: nothing changes
        monkeypatch.setenv(tri.INTERPRET_ENV, "1")
        monkeypatch.setenv(CUDA_DEFAULT_ENV, tri.IMPL_NAME)  # explicit opt-in works in the interpreter
        assert apply_cuda_default() == tri.IMPL_NAME
        assert get_default_impl("cpu") == "gather"
    finally:
        set_default_impl("gather", device_type="cuda")
    monkeypatch.setenv(CUDA_DEFAULT_ENV, "no_such_impl")
    with pytest.raises(ConfigError, match=CUDA_DEFAULT_ENV):
        apply_cuda_default()


def test_unavailable_without_cuda_or_interpreter(monkeypatch):
    monkeypatch.delenv(tri.INTERPRET_ENV)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not tri.is_available()
    assert "TRITON_INTERPRET" in tri.unavailable_reason()
    value, spatial, start, loc, weights = _inputs([(2, 2)], n=1, lq=2, m=1, d=4, p=1, dtype=torch.float32, seed=0)
    with pytest.raises(ConfigError, match="TRITON_INTERPRET"):
        _triton(value, spatial, start, loc, weights)
    monkeypatch.setattr(tri, "triton_installed", lambda: False)
    assert "not installed" in tri.unavailable_reason()


def test_reference_restates_the_definition():
    """Guard on the in-file reference itself: one point, hand-computed bilinear weights."""
    value = torch.arange(6, dtype=torch.float64).view(1, 6, 1, 1)  # one 2x3 level, value = flat index
    # Pixel position (x, y) = (0.75 * 3 - 0.5, 0.25 * 2 - 0.5) = (1.75, 0): between columns 1 and 2, row 0.
    loc = torch.tensor([0.75, 0.25], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
    weights = torch.full((1, 1, 1, 1, 1), 2.0, dtype=torch.float64)
    out = _reference(value, [(2, 3)], loc, weights)
    assert math.isclose(out.item(), 2.0 * (0.25 * 1 + 0.75 * 2), rel_tol=1e-12)
