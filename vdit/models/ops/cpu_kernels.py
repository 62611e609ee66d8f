"""Faster fp32 CPU kernels for the eval forward (issue 16): the same maths as the stock ops, other GEMMs.

At the official CPU setting (3 frames 112x176) most of the UNet's time went to layers whose output has few
rows: the s32/s64 blocks run 1280-channel convolutions and linears over 18-72 positions, where the stock
kernels spend their time repacking weights instead of multiplying (measured on one Zen 4 core: a
1280->1280 3x3 convolution over 3 frames of 2x3 positions took 40 ms in oneDNN's direct convolution and
10 ms as one GEMM over its im2col rows; a [18, 1280] x [1280, 10240] linear 12 ms in MKL, 6-10 ms in
oneDNN). Inside `cpu_inference_kernels()` three functions are routed (everything else runs as usual):

- `F.linear` -> oneDNN's inner product (`torch.ops.mkldnn._linear_pointwise`, the op inductor uses for
  CPU linears) on the unchanged weight;
- `F.conv2d` whose output has few positions (N*Ho*Wo <= `SMALL_CONV_ROWS`, or <= `POINTWISE_CONV_ROWS`
  for a 1x1 convolution) -> im2col rows (`F.unfold`) times the weight viewed as [O, C*kh*kw], the same
  oneDNN GEMM; larger convolutions stay oneDNN's;
- `F.conv2d` with a 3x3 kernel, stride 1, padding 1, at least `WINOGRAD_MIN_CHANNELS` input and output
  channels and `WINOGRAD_MIN_ROWS` output positions -> Winograd's F(2x2, 3x3) algorithm (Lavin & Gray
  2016): 16 products per 2x2 output tile instead of 36, i.e. 2.25x fewer multiply-adds; the input and
  output transforms are additions, the weight transform one [16, 9] x [9, K*C] product per call (nothing
  is kept between calls). Measured 1.3-1.8x faster than oneDNN's direct convolution on the VAE's
  256/512-channel layers and the UNet's s8 layers, with errors against a float64 convolution of the same
  order (~5e-7 of the output range; oneDNN's direct convolution 2.5e-7 to 1.5e-6). (F(4x4, 3x3) would
  save more but its transforms lose ~1e-5 per layer: not used.);
- `F.conv3d` with a (k, 1, 1) kernel (the UNet's temporal convolutions, which PyTorch runs with its slow
  reference kernel `slow_conv3d`) -> a (k, 1) 2-D convolution over [N, C, T, H*W] (or the GEMM above when
  small).

Each is exact maths (a sum over the same products in another order): results differ from the stock
kernels by float rounding only (relative ~1e-6 per layer; tests/perf/test_cpu_kernels.py compares each
with a float64 restatement). The routing applies only where that is all that changes: CPU tensors, fp32,
no autograd recording (eval under `torch.no_grad`/`inference_mode`), autocast off, and the oneDNN op
present and checked once against `F.linear`, and only for products of at least `MIN_MACS`
multiply-adds (below that the oneDNN call costs more than it saves: the tiny test models run the stock
ops). Anything else (CUDA, bf16, training, meta) runs the stock op.
`VDIT_CPU_KERNELS=0` in the environment (or `set_enabled(False)`) turns the routing off.

Not used, measured: channels-last activations in the VAE (5-7 % faster there) lose precision in
PyTorch's channels-last GroupNorm kernel (1e-4 of the range against float64 where a frame has a constant
padded border, 8e-7 in NCHW), which moved the masks by 1.4e-5 of their range at 128x192.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
import weakref
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

# Output positions (N*Ho*Wo) up to which a convolution runs as im2col x GEMM. Measured on every
# convolution of the forward at 112x176 over 3 frames, one Zen 4 core (bench/cpu_official_setting.py
# --conv-sweep): 3x3 convolutions of the UNet's s64 level (18 rows) take 0.24x oneDNN's time as a GEMM,
# at s32 (72 rows) 0.55x, at s16 (231 rows) 0.9-1.45x, beyond that oneDNN wins; 1x1 convolutions (no
# im2col, a permute) 0.7-0.9x up to 231 rows, 1.1x at 924.
SMALL_CONV_ROWS = 128
POINTWISE_CONV_ROWS = 512
# Smallest product (rows x inputs x outputs) routed to oneDNN: a oneDNN call costs ~25 us more than MKL's,
# which only pays from ~1000 x 128 x 128 on (0.92x there, 0.7-0.85x for the UNet's and CLIP's linears).
MIN_MACS = 1 << 24
# Winograd F(2x2, 3x3) pays from 256 channels in and out (measured: 128 -> 128 at full resolution is 2x
# slower than oneDNN, 128 -> 256 a tie, 256 -> 256 and up 1.2-1.8x faster) on at least 512 output
# positions. (It would also beat oneDNN / the GEMM at the UNet's s16 and s32 levels, 231 and 72 rows, but
# only with the weight transforms kept in memory, ~0.5 GB and ~1.3 GB for those 1280-channel weights;
# computed per call they cost about what they save there.)
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_ROWS = 512
# Weight transform G g G^T of F(2x2, 3x3) (Lavin & Gray 2016, eq. 8); B^T and A^T are applied below as
# the additions they are: B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]], A^T = [[1,1,1,0],[0,1,-1,-1]].
_WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
# A model whose largest linear/convolution weight is smaller than this never reaches MIN_MACS at the sizes
# it runs: `cpu_inference_kernels(..., model)` then does not enter the routing at all (its per-call
# Python cost, ~2 us per torch call, is 7 % of a tiny model's forward and nothing to win there).
MIN_WEIGHT_ELEMENTS = 1 << 20
ENV_SWITCH = "VDIT_CPU_KERNELS"

_enabled = os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")
_state = threading.local()
_worthwhile: "weakref.WeakKeyDictionary[torch.nn.Module, bool]" = weakref.WeakKeyDictionary()


def set_enabled(flag: bool) -> bool:
    """Turn the routing on or off for this process (default: on unless VDIT_CPU_KERNELS=0); returns the
    previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(flag)
    return previous


def is_enabled() -> bool:
    return _enabled and _onednn_linear_works()


def _pointwise_op():
    mkldnn = getattr(torch.ops, "mkldnn", None)
    return getattr(mkldnn, "_linear_pointwise", None) if mkldnn is not None else None


@functools.lru_cache(maxsize=1)
def _onednn_linear_works() -> bool:
    """The private oneDNN op exists in this PyTorch build and computes x W^T + b (checked once)."""
    if not torch.backends.mkldnn.is_available():
        return False
    op = _pointwise_op()
    if op is None:
        return False
    try:
        with torch.inference_mode():
            g = torch.Generator().manual_seed(0)
            x, w, b = (torch.randn(s, generator=g) for s in ((5, 7), (3, 7), (3,)))
            ok = torch.allclose(op(x, w, b, "none", [], ""), x @ w.T + b, rtol=1e-5, atol=1e-5)
            ok = ok and torch.allclose(op(x, w, None, "none", [], ""), x @ w.T, rtol=1e-5, atol=1e-5)
        return bool(ok)
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def _gemm(rows: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """rows [M, K] @ weight [O, K]^T + bias, oneDNN."""
    return _pointwise_op()(rows, weight, bias, "none", [], "")


def _plain_fp32(*tensors: Tensor | None) -> bool:
    for t in tensors:
        if t is None:
            continue
        if type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter):
            return False  # tensor subclasses keep their own semantics
        if t.device.type != "cpu" or t.dtype != torch.float32 or t.layout != torch.strided:
            return False
        if t.requires_grad and torch.is_grad_enabled():
            return False
    return True


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor | None:
    """F.linear via oneDNN; None where the stock op must run."""
    if weight.dim() != 2 or x.dim() < 1 or x.numel() == 0 or x.shape[-1] != weight.shape[1]:
        return None
    if x.numel() * weight.shape[0] < MIN_MACS:
        return None
    rows = x.reshape(-1, x.shape[-1])
    out = _gemm(rows if rows.is_contiguous() else rows.contiguous(), weight.contiguous(), bias)
    return out.view(*x.shape[:-1], weight.shape[0])


def _pair(v: Any) -> tuple[int, int] | None:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return (int(v[0]), int(v[1]))
    return None


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Tensor | None:
    """F.conv2d by Winograd F(2x2, 3x3) (3x3, stride 1, padding 1, >= WINOGRAD_MIN_CHANNELS channels in and
    out, >= WINOGRAD_MIN_ROWS output positions) or, with few output positions, as im2col x GEMM; None where
    the stock op must run."""
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    if s is None or p is None or d != (1, 1) or groups != 1 or x.dim() != 4 or weight.dim() != 4:
        return None
    n, c, h, w = x.shape
    o, ci, kh, kw = weight.shape
    if ci != c or n == 0:
        return None
    ho, wo = (h + 2 * p[0] - kh) // s[0] + 1, (w + 2 * p[1] - kw) // s[1] + 1
    m = n * ho * wo
    if (kh, kw) == (3, 3) and s == (1, 1) and p == (1, 1) and min(c, o) >= WINOGRAD_MIN_CHANNELS \
            and m >= WINOGRAD_MIN_ROWS:
        return winograd_conv3x3(x, weight, bias)
    pointwise = (kh, kw) == (1, 1) and s == (1, 1) and p == (0, 0)
    if m > (POINTWISE_CONV_ROWS if pointwise else SMALL_CONV_ROWS) or ho < 1 or wo < 1:
        return None
    if m * weight.numel() < MIN_MACS:
        return None
    if pointwise:
        rows = x.permute(0, 2, 3, 1).reshape(m, c)
    else:
        # unfold orders a column's entries (c, i, j), as the weight's [O, C, kh, kw] flattens
        rows = F.unfold(x, (kh, kw), padding=p, stride=s).transpose(1, 2).reshape(m, c * kh * kw)
    out = _gemm(rows.contiguous(), weight.reshape(o, c * kh * kw).contiguous(), bias)
    return out.view(n, ho, wo, o).permute(0, 3, 1, 2).contiguous()


@functools.lru_cache(maxsize=8)
def _winograd_g2(dtype: torch.dtype, device: torch.device) -> Tensor:
    g = torch.tensor(_WINOGRAD_G, dtype=torch.float64)
    return torch.kron(g, g).to(dtype=dtype, device=device)  # [16, 9]: (G (x) G) vec(g) = vec(G g G^T)


def winograd_weight(weight: Tensor) -> Tensor:
    """[K, C, 3, 3] -> U = G g G^T as [16, K, C] (entry 4i + j: tile position (i, j)), as one product
    [16, 9] x [9, K*C] (entries of G are 0, +-1/2, 1: the sums of 9 terms are the only rounding)."""
    k, c = weight.shape[:2]
    g2 = _winograd_g2(weight.dtype, weight.device)
    return (g2 @ weight.reshape(k * c, 9).T).view(16, k, c)


def winograd_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """3x3 convolution, stride 1, zero padding 1, by Winograd's F(2x2, 3x3): x [N, C, H, W] (any memory
    layout) -> [N, K, H, W], channels-last if x is, else contiguous.

    Tiles of 4x4 inputs at stride 2 give 2x2 outputs: V = B^T d B per tile and channel, then for each of
    the 16 tile positions one GEMM [tiles, C] x [C, K] with U = G g G^T, then Y = A^T M A."""
    n, c, h, w = x.shape
    k = weight.shape[0]
    th, tw = (h + 1) // 2, (w + 1) // 2
    # Zero-padded NHWC input covering 2*th+2 rows and 2*tw+2 columns (one pad row/column in front).
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 2 * tw + 1 - w, 1, 2 * th + 1 - h))
    # B^T along rows: tile row r uses padded rows 2r..2r+3 = even[r], odd[r], even[r+1], odd[r+1].
    ev, od = xp[:, 0::2], xp[:, 1::2]
    rows = x.new_empty(4, n, th, xp.shape[2], c)
    torch.sub(ev[:, :-1], ev[:, 1:], out=rows[0])
    torch.add(od[:, :-1], ev[:, 1:], out=rows[1])
    torch.sub(ev[:, 1:], od[:, :-1], out=rows[2])
    torch.sub(od[:, :-1], od[:, 1:], out=rows[3])
    # B^T along columns, written straight into the GEMM layout [4 (i), 4 (j), tiles, C].
    ev, od = rows[:, :, :, 0::2], rows[:, :, :, 1::2]
    v = x.new_empty(4, 4, n, th, tw, c)
    torch.sub(ev[..., :-1, :], ev[..., 1:, :], out=v[:, 0])
    torch.add(od[..., :-1, :], ev[..., 1:, :], out=v[:, 1])
    torch.sub(ev[..., 1:, :], od[..., :-1, :], out=v[:, 2])
    torch.sub(od[..., :-1, :], od[..., 1:, :], out=v[:, 3])
    v = v.view(16, n * th * tw, c)
    u = winograd_weight(weight)
    m = [_gemm(v[i], u[i], None).view(n, th, tw, k) for i in range(16)]  # m[4i + j]
    # A^T along i (s[a][j]), then along j into the interleaved output tile positions.
    s = [[m[j] + m[4 + j] + m[8 + j] for j in range(4)], [m[4 + j] - m[8 + j] - m[12 + j] for j in range(4)]]
    out = x.new_empty(n, th, 2, tw, 2, k)
    for a in range(2):
        torch.add(s[a][0] + s[a][1], s[a][2], out=out[:, :, a, :, 0])
        torch.sub(s[a][1] - s[a][2], s[a][3], out=out[:, :, a, :, 1])
    y = out.view(n, 2 * th, 2 * tw, k)[:, :h, :w]
    if bias is not None:
        y = y + bias
    y = y.permute(0, 3, 1, 2)
    if x.is_contiguous(memory_format=torch.channels_last):
        return y.contiguous(memory_format=torch.channels_last)
    return y.contiguous()


def temporal_conv3d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
                    dilation: Any = 1, groups: int = 1) -> Tensor | None:
    """A (k, 1, 1) Conv3d over [N, C, T, H, W] as a (k, 1) Conv2d over [N, C, T, H*W]; None otherwise."""
    if x.dim() != 5 or weight.dim() != 5 or tuple(weight.shape[3:]) != (1, 1) or groups != 1:
        return None
    p = (padding,) * 3 if isinstance(padding, int) else tuple(padding) if isinstance(padding, (tuple, list)) else None
    ones = ((1, 1, 1), [1, 1, 1], 1)
    if p is None or len(p) != 3 or p[1:] != (0, 0) or stride not in ones or dilation not in ones:
        return None
    n, c, t, h, w = x.shape
    if x.numel() * weight.shape[0] * weight.shape[2] < MIN_MACS:
        return None
    flat, w2 = x.reshape(n, c, t, h * w), weight[..., 0]
    out = conv2d(flat, w2, bias, 1, (p[0], 0))
    if out is None:
        out = F.conv2d(flat, w2, bias, 1, (p[0], 0))
    return out.view(n, out.shape[1], out.shape[2], h, w)


_ROUTES = {
    F.linear: linear,
    torch._C._nn.linear: linear,
    torch.conv2d: conv2d,
    F.conv2d: conv2d,
    torch.conv3d: temporal_conv3d,
    F.conv3d: temporal_conv3d,
}


class _Routing(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        route = _ROUTES.get(func)
        if route is not None and not torch.is_autocast_enabled("cpu"):
            tensors = [a for a in (*args[:3], kwargs.get("bias"), kwargs.get("weight")) if isinstance(a, Tensor)]
            if _plain_fp32(*tensors):
                out = route(*args, **kwargs)
                if out is not None:
                    return out
        return func(*args, **kwargs)


def active() -> bool:
    """Whether the routing is on in this thread right now."""
    return getattr(_state, "active", False)


def worthwhile(model: torch.nn.Module) -> bool:
    """Whether `model` has a linear or convolution weight of at least MIN_WEIGHT_ELEMENTS (kept per model;
    a model's architecture does not change)."""
    known = _worthwhile.get(model)
    if known is None:
        known = any(isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d))
                    and m.weight.numel() >= MIN_WEIGHT_ELEMENTS for m in model.modules())
        _worthwhile[model] = known
    return known


@contextlib.contextmanager
def cpu_inference_kernels(device: torch.device | str | None = None,
                          model: torch.nn.Module | None = None) -> Iterator[None]:
    """Route linear/convolution calls to the kernels above while inside (see the module docstring).
    A no-op off the CPU (`device` given and not "cpu"), while autograd records, when switched off, for a
    `model` too small to gain anything (`worthwhile`), or when already inside (so nesting costs nothing)."""
    on_cpu = device is None or torch.device(device).type == "cpu"
    if active() or not on_cpu or torch.is_grad_enabled() or not is_enabled() or \
            (model is not None and not worthwhile(model)):
        yield
        return
    _state.active = True
    try:
        with _Routing():
            yield
    finally:
        _state.active = False


__all__ = ["ENV_SWITCH", "MIN_MACS", "MIN_WEIGHT_ELEMENTS", "POINTWISE_CONV_ROWS", "SMALL_CONV_ROWS",
           "WINOGRAD_MIN_CHANNELS", "WINOGRAD_MIN_ROWS", "active", "conv2d", "cpu_inference_kernels", "is_enabled",
           "linear", "set_enabled", "temporal_conv3d", "winograd_conv3x3", "winograd_weight", "worthwhile"]
