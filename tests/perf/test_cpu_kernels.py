"""The fp32 CPU kernels of the eval forward (issue 16, `vdit.models.ops.cpu_kernels`).

Each routed op is compared with the operation written out in float64 here (x W^T + b; a convolution as
a sum over kernel taps of shifted windows; the temporal convolution as a sum over time taps), at the
shapes where the routing applies; then the routing itself (what is routed, what never is), and a tiny
model's eval outputs with every route forced on against the stock kernels.
"""
from __future__ import annotations

import weakref

import pytest
import torch
import torch.nn.functional as F

from vdit.models.ops import cpu_kernels as ck

pytestmark = pytest.mark.skipif(not ck.is_enabled(), reason="oneDNN's linear op is not available in this build")

RTOL = ATOL = 1e-5


def _rand(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _linear_ref(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    out = x.double() @ w.double().T
    return out if b is None else out + b.double()


def _conv2d_ref(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: int, pad: int) -> torch.Tensor:
    """out[n, o, y, x] = b[o] + sum_{c, i, j} w[o, c, i, j] * xpad[n, c, s*y + i, s*x + j], in float64."""
    x, w = x.double(), w.double()
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = torch.zeros(n, c, h + 2 * pad, wd + 2 * pad, dtype=torch.float64)
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = torch.zeros(n, o, ho, wo, dtype=torch.float64)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += torch.einsum("oc,ncyx->noyx", w[:, :, i, j], window)
    return out if b is None else out + b.double().view(1, o, 1, 1)


def _temporal_ref(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, pad: int) -> torch.Tensor:
    """Conv3d with a (k, 1, 1) kernel: out[:, :, t] = b + sum_k W[:, :, k] x[:, :, t + k - pad] (zero outside)."""
    x, w = x.double(), w.double()
    n, c, t, h, wd = x.shape
    k = w.shape[2]
    out = torch.zeros(n, w.shape[0], t + 2 * pad - k + 1, h, wd, dtype=torch.float64)
    for to in range(out.shape[2]):
        for tap in range(k):
            ti = to + tap - pad
            if 0 <= ti < t:
                out[:, :, to] += torch.einsum("oc,nchw->nohw", w[:, :, tap, 0, 0], x[:, :, ti])
    return out + b.double().view(1, -1, 1, 1, 1)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.double(), expected, rtol=RTOL, atol=ATOL * expected.abs().max().item())


@pytest.mark.parametrize("shape", [(70, 512), (3, 24, 512)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_the_product(shape, bias):
    x = _rand(*shape, seed=0)
    w, b = _rand(600, 512, seed=1, scale=0.05), (_rand(600, seed=2) if bias else None)
    with torch.inference_mode():
        out = ck.linear(x, w, b)
    assert out is not None and out.shape == (*shape[:-1], 600)
    _close(out, _linear_ref(x, w, b))


def test_linear_of_a_non_contiguous_input():
    x = _rand(512, 70, seed=0).T  # [70, 512] transposed view
    w, b = _rand(600, 512, seed=1, scale=0.05), _rand(600, seed=2)
    with torch.inference_mode():
        _close(ck.linear(x, w, b), _linear_ref(x, w, b))


@pytest.mark.parametrize("case", [
    # (x shape, weight shape, stride, padding): the UNet's s64 3x3 convolution, a strided one (the head's
    # extra s64 level), a 1x1 convolution over up to POINTWISE_CONV_ROWS positions
    ((3, 320, 2, 3), (640, 320, 3, 3), 1, 1),
    ((2, 384, 5, 7), (256, 384, 3, 3), 2, 1),
    ((3, 256, 8, 12), (320, 256, 1, 1), 1, 0),
])
def test_small_convolution_as_gemm_matches_the_sum_over_taps(case):
    xs, ws, stride, pad = case
    x, w, b = _rand(*xs, seed=3), _rand(*ws, seed=4, scale=0.02), _rand(ws[0], seed=5)
    with torch.inference_mode():
        out = ck.conv2d(x, w, b, stride, pad)
    assert out is not None and out.is_contiguous()
    _close(out, _conv2d_ref(x, w, b, stride, pad))


@pytest.mark.parametrize("hw", [(20, 26), (21, 27)])  # even and odd sizes (the last tile row/column cropped)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_winograd_convolution_matches_the_sum_over_taps(hw, channels_last, bias):
    x = _rand(1, 256, *hw, seed=11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = _rand(320, 256, 3, 3, seed=12, scale=0.02), (_rand(320, seed=13) if bias else None)
    assert hw[0] * hw[1] >= ck.WINOGRAD_MIN_ROWS
    with torch.inference_mode():
        out = ck.conv2d(x, w, b, 1, 1)
        direct = ck.winograd_conv3x3(x, w, b)
    assert torch.equal(out, direct)  # conv2d chose Winograd for this shape
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    _close(out, _conv2d_ref(x, w, b, 1, 1))


def test_winograd_weight_transform_is_g_g_gt():
    """U[4i + j] = sum_{a, b} G[i, a] g[:, :, a, b] G[j, b] with Lavin & Gray's G for F(2, 3)."""
    g_matrix = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]
    w = _rand(6, 5, 3, 3, seed=14)
    with torch.inference_mode():
        u = ck.winograd_weight(w)
    assert u.shape == (16, 6, 5)
    for i in range(4):
        for j in range(4):
            expected = sum(g_matrix[i][a] * g_matrix[j][b] * w[:, :, a, b].double()
                           for a in range(3) for b in range(3))
            torch.testing.assert_close(u[4 * i + j].double(), expected, rtol=1e-6, atol=1e-6)


def test_large_or_tiny_convolutions_are_left_to_the_stock_kernel():
    w = _rand(64, 64, 3, 3, seed=4)
    many_rows = _rand(1, 64, 16, 16, seed=3)  # 256 output positions > SMALL_CONV_ROWS
    tiny = _rand(1, 8, 2, 2, seed=3)  # below MIN_MACS
    with torch.inference_mode():
        assert ck.conv2d(many_rows, w, None, 1, 1) is None
        assert ck.conv2d(tiny, _rand(8, 8, 3, 3, seed=4), None, 1, 1) is None
        assert ck.conv2d(many_rows, w, None, 1, 1, dilation=2) is None
        assert ck.conv2d(many_rows, w[:, :32], None, 1, 1, groups=2) is None
        assert ck.linear(_rand(4, 16, seed=0), _rand(8, 16, seed=1)) is None


# (channels, h, w): the GEMM path (few rows, as at the UNet's s64 level) and oneDNN's 2-D convolution (s8)
@pytest.mark.parametrize("chw", [(640, 2, 3), (320, 14, 22)])
def test_temporal_convolution_matches_the_sum_over_time(chw):
    c, h, w_ = chw
    x = _rand(1, c, 3, h, w_, seed=6)
    w, b = _rand(c, c, 3, 1, 1, seed=7, scale=0.03), _rand(c, seed=8)
    with torch.inference_mode():
        out = ck.temporal_conv3d(x, w, b, 1, (1, 0, 0))
    assert out is not None and out.shape == (1, c, 3, h, w_)
    _close(out, _temporal_ref(x, w, b, 1))
    with torch.inference_mode():  # a kernel that is not (k, 1, 1) is not this op
        assert ck.temporal_conv3d(x, _rand(c, c, 3, 3, 1, seed=7), b, 1, (1, 1, 0)) is None


def _count_gemms(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    original = ck._gemm

    def counting(rows, weight, bias):
        calls.append((tuple(rows.shape), tuple(weight.shape)))
        return original(rows, weight, bias)

    monkeypatch.setattr(ck, "_gemm", counting)
    return calls


def test_routing_applies_inside_eval_only(monkeypatch):
    calls = _count_gemms(monkeypatch)
    x, w, b = _rand(70, 512, seed=0), _rand(600, 512, seed=1, scale=0.05), _rand(600, seed=2)
    conv_x, conv_w = _rand(3, 320, 2, 3, seed=3), _rand(640, 320, 3, 3, seed=4, scale=0.02)
    with torch.inference_mode(), ck.cpu_inference_kernels("cpu"):
        assert ck.active()
        out = F.linear(x, w, b)
        conv = F.conv2d(conv_x, conv_w, None, 1, 1)
        mod = torch.nn.Conv3d(640, 640, (3, 1, 1), padding=(1, 0, 0))
        temporal = mod(_rand(1, 640, 3, 2, 3, seed=6))
    assert len(calls) == 3  # linear, conv2d, the temporal conv3d's small 2-D convolution
    _close(out, _linear_ref(x, w, b))
    _close(conv, _conv2d_ref(conv_x, conv_w, None, 1, 1))
    _close(temporal, _temporal_ref(_rand(1, 640, 3, 2, 3, seed=6), mod.weight.detach(), mod.bias.detach(), 1))
    assert not ck.active()

    calls.clear()
    with ck.cpu_inference_kernels("cpu"):  # autograd records: stock ops, nothing entered
        assert not ck.active()
        F.linear(x, w, b)
    with torch.inference_mode(), ck.cpu_inference_kernels("cuda"):  # another device: nothing entered
        assert not ck.active()
    with torch.inference_mode(), ck.cpu_inference_kernels("cpu"), torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.linear(x, w, b).dtype == torch.bfloat16  # autocast keeps its own kernels and dtype
    with torch.inference_mode(), ck.cpu_inference_kernels("cpu"):
        F.linear(x.double(), w.double(), b.double())  # not fp32
    assert calls == []


def test_switch_and_nesting(monkeypatch):
    calls = _count_gemms(monkeypatch)
    x, w = _rand(70, 512, seed=0), _rand(600, 512, seed=1)
    previous = ck.set_enabled(False)
    try:
        with torch.inference_mode(), ck.cpu_inference_kernels():
            assert not ck.active()
            F.linear(x, w)
    finally:
        ck.set_enabled(previous)
    assert calls == []
    with torch.inference_mode(), ck.cpu_inference_kernels():
        with ck.cpu_inference_kernels():  # nested: still one routing mode, still active after the inner exit
            F.linear(x, w)
        assert ck.active()
        F.linear(x, w)
    assert len(calls) == 2


def test_small_models_do_not_enter_the_routing(tiny_root):
    """A model whose weights are all below MIN_WEIGHT_ELEMENTS gains nothing: no routing mode at all (its
    per-call cost would be pure overhead); a model with one large weight enters it."""
    from vdit.config import tiny_config
    from vdit.models.vdit import VDIT

    tiny = VDIT.from_config(tiny_config(tiny_root)).eval()
    big = torch.nn.Linear(1024, 1024)
    assert not ck.worthwhile(tiny) and ck.worthwhile(big)
    with torch.inference_mode():
        with ck.cpu_inference_kernels("cpu", tiny):
            assert not ck.active()
        with ck.cpu_inference_kernels("cpu", big):
            assert ck.active()


def _force_every_route(monkeypatch) -> list[int]:
    """Thresholds lowered so that every linear and convolution of a tiny model is routed: 3x3 stride-1
    convolutions by Winograd, the others as GEMMs. Returns a list that counts the Winograd calls."""
    winograd_calls: list[int] = []
    original = ck.winograd_conv3x3

    def counting(x, weight, bias):
        winograd_calls.append(1)
        return original(x, weight, bias)

    monkeypatch.setattr(ck, "winograd_conv3x3", counting)
    for name, value in (("MIN_MACS", 0), ("WINOGRAD_MIN_CHANNELS", 0), ("WINOGRAD_MIN_ROWS", 0),
                        ("SMALL_CONV_ROWS", 1 << 30), ("POINTWISE_CONV_ROWS", 1 << 30), ("MIN_WEIGHT_ELEMENTS", 0)):
        monkeypatch.setattr(ck, name, value)
    monkeypatch.setattr(ck, "_worthwhile", weakref.WeakKeyDictionary())
    return winograd_calls


def test_tiny_model_eval_with_every_route_forced(tiny_root, monkeypatch):
    """A tiny VD-IT's eval outputs with all linears/convolutions routed (thresholds lowered to 0) equal the
    stock kernels' within float rounding."""
    from vdit.config import tiny_config
    from vdit.models.vdit import VDIT

    torch.manual_seed(0)
    model = VDIT.from_config(tiny_config(tiny_root)).eval()
    frames = _rand(1, 2, 3, 64, 96, seed=9)
    with torch.inference_mode():
        previous = ck.set_enabled(False)
        try:
            stock = model.predict(frames, ["the red circle moving left"])
        finally:
            ck.set_enabled(previous)
        calls = _count_gemms(monkeypatch)
        winograd = _force_every_route(monkeypatch)
        routed = model.predict(frames, ["the red circle moving left"])
    assert len(calls) > 50 and len(winograd) > 10  # every linear and convolution of the UNet, VAE, CLIP, head
    for key in ("pred_masks", "pred_logits", "pred_boxes"):
        scale = getattr(stock, key).abs().max().item()
        torch.testing.assert_close(getattr(routed, key), getattr(stock, key), rtol=RTOL, atol=RTOL * scale)
    assert torch.equal(routed.best_query, stock.best_query)


def test_tiny_model_routed_is_as_accurate_as_stock_against_float64(tiny_root, monkeypatch):
    """The same tiny model in float64 is the truth: with every route forced, the fp32 eval masks are no
    further from it than the stock fp32 kernels' (measured 9.4e-6 and 9.2e-6 of the range: random tiny
    weights make this model ill-conditioned)."""
    import copy

    from vdit.config import tiny_config
    from vdit.models.vdit import VDIT

    torch.manual_seed(0)
    model = VDIT.from_config(tiny_config(tiny_root)).eval()
    exact = copy.deepcopy(model).double()
    frames = _rand(1, 2, 3, 64, 96, seed=10)
    with torch.inference_mode():
        truth = exact.predict(frames.double(), [TEXT_FOR_TRUTH]).pred_masks
        previous = ck.set_enabled(False)
        try:
            stock = model.predict(frames, [TEXT_FOR_TRUTH]).pred_masks
        finally:
            ck.set_enabled(previous)
        _force_every_route(monkeypatch)
        routed = model.predict(frames, [TEXT_FOR_TRUTH]).pred_masks
    scale = truth.abs().max().item()
    err_stock = (stock.double() - truth).abs().max().item() / scale
    err_routed = (routed.double() - truth).abs().max().item() / scale
    assert err_routed <= 2 * err_stock + 1e-6, (err_routed, err_stock)


TEXT_FOR_TRUTH = "the small blue square"
