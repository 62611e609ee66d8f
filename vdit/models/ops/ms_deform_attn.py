"""Multi-scale deformable attention (Deformable DETR), pure PyTorch, CPU and GPU.

The core op samples every query's points bilinearly from a stack of flattened feature maps and sums
them with attention weights::

    out[n, q, m*D:(m+1)*D] = sum_{l, p} A[n, q, m, l, p] * bilinear(value_l[n, :, m, :], loc[n, q, m, l, p])

Sampling follows the official CUDA kernel / ``grid_sample(2*loc - 1, padding_mode="zeros",
align_corners=False)``: ``loc`` is (x, y) normalised to [0, 1] over the level, pixel ``i`` has its centre
at ``(i + 0.5) / w``, and taps outside the map read zero.

Two implementations sit behind one dispatcher (:func:`ms_deform_attn`):

``"gather"`` (default)
    All levels at once. The four bilinear corner indices and weights of every point are computed once,
    folded with the attention weight, and the weighted sum is a single ``embedding_bag`` gather over the
    flattened value table. Per-point work runs on contiguous [N*Lq*M, L*P] tensors (per-level sizes
    expanded along the point axis) so elementwise ops vectorise. The backward is hand-written and
    recomputes the corner terms (only the inputs are saved): the value gradient is the transposed
    gather (points bucketed by their 2x2 pixel block with one stable sort, one ``embedding_bag`` per
    corner, shifted sums; no scatter-add, so it is deterministic on every device); the location and
    weight gradients come from the per-corner dot products through the separable bilinear kernel.
``"grid_sample"``
    The plain formulation (one ``F.grid_sample`` per level, autograd backward); the reference baseline.

Further implementations plug in with :func:`register_impl` and :func:`set_default_impl`, optionally
for one device type only. The fused Triton kernel (:mod:`vdit.models.ops.ms_deform_attn_triton`) is
registered as ``"triton"`` at import where it can run (triton installed, and CUDA or
``TRITON_INTERPRET=1``) and becomes the CUDA default where it runs compiled on a CUDA device
(``VDIT_MS_DEFORM_ATTN_CUDA_IMPL=gather`` keeps ``gather``; see that module's docstring).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from vdit.errors import ConfigError
from vdit.models import precision

# Deformable-DETR / VD-IT head defaults (spec 3.4).
DEFAULT_D_MODEL = 256
DEFAULT_N_LEVELS = 4
DEFAULT_N_HEADS = 8
DEFAULT_N_POINTS = 4

# Pixel centres sit at (i + 0.5) / size (align_corners=False).
_PIXEL_CENTRE = 0.5
# For 4-d (box) reference points the offsets are scaled by half the box size (spec 3.4: w,h/(2*P)).
_BOX_OFFSET_SCALE = 0.5
# Largest table row count addressable with int32 indices (halves index memory traffic on CPU).
_INT32_MAX_ROWS = 2**31 - 1

MSDeformAttnImpl = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]
"""Signature of an implementation: (value, spatial_shapes, level_start_index, locations, weights) -> out."""


# ------------------------------------------------------------------------------------------------
# Input validation
# ------------------------------------------------------------------------------------------------


def _check_inputs(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    check_values: bool = True,
) -> None:
    """Raise ValueError (TypeError for dtypes) when the op's inputs disagree in rank, size, dtype or level
    layout: a caller's bug, so a traceback, not a one-line InputError. The level layout is checked on the
    values of ``spatial_shapes`` / ``level_start_index``: reading them makes the host wait for the device,
    so callers that built them from known shapes skip it (``check_values``)."""
    if value.dim() != 4:
        raise ValueError(f"ms_deform_attn: value must be [N, S, M, D], got shape {tuple(value.shape)}")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            "ms_deform_attn: sampling_locations must be [N, Lq, M, L, P, 2], "
            f"got shape {tuple(sampling_locations.shape)}"
        )
    n, s, m, _ = value.shape
    n_l, lq, m_l, levels, points, _ = sampling_locations.shape
    if (n_l, m_l) != (n, m):
        raise ValueError(
            f"ms_deform_attn: sampling_locations batch/heads {(n_l, m_l)} do not match value {(n, m)}"
        )
    if tuple(attention_weights.shape) != (n, lq, m, levels, points):
        raise ValueError(
            f"ms_deform_attn: attention_weights must be {(n, lq, m, levels, points)}, "
            f"got {tuple(attention_weights.shape)}"
        )
    if not value.is_floating_point():
        raise TypeError(f"ms_deform_attn: value must be floating point, got {value.dtype}")
    if sampling_locations.dtype != value.dtype or attention_weights.dtype != value.dtype:
        raise TypeError(
            "ms_deform_attn: value, sampling_locations and attention_weights must share one dtype, got "
            f"{value.dtype}, {sampling_locations.dtype}, {attention_weights.dtype}"
        )
    if spatial_shapes.shape != (levels, 2) or spatial_shapes.is_floating_point():
        raise ValueError(
            f"ms_deform_attn: spatial_shapes must be an integer [L={levels}, 2] tensor of (h, w), "
            f"got {spatial_shapes.dtype} {tuple(spatial_shapes.shape)}"
        )
    if level_start_index.shape != (levels,) or level_start_index.is_floating_point():
        raise ValueError(
            f"ms_deform_attn: level_start_index must be an integer [L={levels}] tensor, "
            f"got {level_start_index.dtype} {tuple(level_start_index.shape)}"
        )
    if not check_values:
        return
    shapes = spatial_shapes.tolist()
    sizes = [h * w for h, w in shapes]
    if any(h <= 0 or w <= 0 for h, w in shapes) or sum(sizes) != s:
        raise ValueError(
            f"ms_deform_attn: spatial_shapes {shapes} cover {sum(sizes)} positions, value has S={s}"
        )
    starts = [sum(sizes[:i]) for i in range(levels)]
    if level_start_index.tolist() != starts:
        raise ValueError(
            f"ms_deform_attn: level_start_index {level_start_index.tolist()} does not match "
            f"spatial_shapes {shapes} (expected {starts})"
        )


# ------------------------------------------------------------------------------------------------
# Implementation 1: grid_sample per level (baseline)
# ------------------------------------------------------------------------------------------------


def ms_deform_attn_grid_sample(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Reference formulation: one ``F.grid_sample`` per level; ``level_start_index`` is implied."""
    n, _, m, d = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    value_levels = value.split([h * w for h, w in shapes], dim=1)
    grids = 2.0 * sampling_locations - 1.0  # grid_sample's [-1, 1] convention
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        # [N, h*w, M, D] -> [N*M, D, h, w]
        value_l = value_levels[lvl].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        grid_l = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # [N*M, D, Lq, P]
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # [N*M, D, Lq]
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


# ------------------------------------------------------------------------------------------------
# Implementation 2: corner gather with embedding_bag (all levels at once)
# ------------------------------------------------------------------------------------------------


class _AxisTaps(NamedTuple):
    """Bilinear taps along one axis for every sampling point, each [B, L*P] (B = N*Lq*M bags).

    ``lo``/``hi`` are the weights of the lower/upper neighbour, zero when that neighbour lies outside
    the map (``lo_in``/``hi_in``, as 0/1 floats, are their derivatives' magnitudes w.r.t. the
    fractional position); ``lo_idx``/``hi_idx`` are the neighbours' pixel indices, clamped into the
    map so that every gather stays in bounds (the weight of a clamped tap is zero); ``floor`` is the
    lower neighbour before clamping.
    """

    lo: Tensor
    hi: Tensor
    lo_in: Tensor
    hi_in: Tensor
    lo_idx: Tensor
    hi_idx: Tensor
    floor: Tensor  # unclamped lower neighbour, in [-2, size + 1]


def _axis_taps(coord: Tensor, size: Tensor, index_dtype: torch.dtype) -> _AxisTaps:
    """``coord`` [B, L*P] normalised coordinates, ``size`` [L*P] the level's extent along this axis."""
    size_f = size.to(coord.dtype)
    pixel = coord * size_f - _PIXEL_CENTRE
    # Points beyond one pixel outside the map read only zeros; clamping them (and NaN) changes no tap
    # and keeps the float -> int conversion well defined.
    pixel = torch.minimum(torch.nan_to_num(pixel, nan=-2.0), size_f + 1.0).clamp_min(-2.0)
    floor = pixel.floor()
    frac = pixel - floor
    lo_idx = floor.to(index_dtype)
    hi_idx = lo_idx + 1
    lo_in = ((lo_idx >= 0) & (lo_idx < size)).to(coord.dtype)
    hi_in = ((hi_idx >= 0) & (hi_idx < size)).to(coord.dtype)
    last = size - 1
    return _AxisTaps(
        lo=(1.0 - frac) * lo_in,
        hi=frac * hi_in,
        lo_in=lo_in,
        hi_in=hi_in,
        lo_idx=torch.minimum(lo_idx.clamp_min(0), last),
        hi_idx=torch.minimum(hi_idx.clamp_min(0), last),
        floor=lo_idx,
    )


class _Layout(NamedTuple):
    """Per-entry constants along the flattened (level, point) axis, so every elementwise op runs over a
    contiguous inner dimension instead of broadcasting tiny per-level shapes."""

    width: Tensor  # [L*P]
    height: Tensor  # [L*P]
    start: Tensor  # [L*P] level offset in S
    base: Tensor  # [B, 1] table row offset of bag (n, q, m): n*S*M + m
    index_dtype: torch.dtype


def _layout(value_shape: torch.Size, lq: int, spatial_shapes: Tensor, level_start_index: Tensor,
            points: int) -> _Layout:
    n, s, m, _ = value_shape
    index_dtype = torch.int32 if n * s * m <= _INT32_MAX_ROWS else torch.int64
    device = spatial_shapes.device
    per_point = spatial_shapes.to(index_dtype).repeat_interleave(points, dim=0)  # [L*P, 2] (h, w)
    base = (
        torch.arange(n, dtype=index_dtype, device=device).view(n, 1, 1) * (s * m)
        + torch.arange(m, dtype=index_dtype, device=device).view(1, 1, m)
    ).expand(n, lq, m).reshape(-1, 1)
    return _Layout(
        width=per_point[:, 1].contiguous(),
        height=per_point[:, 0].contiguous(),
        start=level_start_index.to(index_dtype).repeat_interleave(points),
        base=base,
        index_dtype=index_dtype,
    )


def _taps(locations: Tensor, layout: _Layout) -> tuple[_AxisTaps, _AxisTaps]:
    """x and y taps of [N, Lq, M, L, P, 2] locations."""
    flat = locations.reshape(-1, layout.width.numel(), 2)
    x, y = flat[..., 0].contiguous(), flat[..., 1].contiguous()
    return _axis_taps(x, layout.width, layout.index_dtype), _axis_taps(y, layout.height, layout.index_dtype)


# Corner order inside a bag: (y, x) in (lo, lo), (lo, hi), (hi, lo), (hi, hi).
_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _corner_weights(tx: _AxisTaps, ty: _AxisTaps, weights: Tensor) -> Tensor:
    """Attention weight times bilinear weight of the four corners of every point: [B, L*P, 4]."""
    out = weights.new_empty(*weights.shape, 4)
    row_weights = [weights * wy for wy in (ty.lo, ty.hi)]
    for c, (i, j) in enumerate(_CORNERS):
        torch.mul(row_weights[i], (tx.lo, tx.hi)[j], out=out[:, :, c])
    return out


def _corner_index(tx: _AxisTaps, ty: _AxisTaps, layout: _Layout, m: int) -> Tensor:
    """Value-table rows of the four corners of every point: [B, L*P, 4]."""
    out = torch.empty(*tx.lo_idx.shape, 4, dtype=layout.index_dtype, device=tx.lo_idx.device)
    # Table row of (n, s, m) in value.reshape(N*S*M, D) is (n*S + s)*M + m.
    rows = [(layout.start + iy * layout.width) * m + layout.base for iy in (ty.lo_idx, ty.hi_idx)]
    cols = [ix * m for ix in (tx.lo_idx, tx.hi_idx)]
    for c, (i, j) in enumerate(_CORNERS):
        torch.add(rows[i], cols[j], out=out[:, :, c])
    return out


def _table_gradient(
    grad_rows: Tensor,
    tx: _AxisTaps,
    ty: _AxisTaps,
    weight: Tensor,
    value_shape: torch.Size,
    shapes: list[tuple[int, int]],
    points: int,
) -> Tensor:
    """d value = A^T grad_out without scatter-add: sort + gather, one bag per table row.

    Every point touches a 2x2 block of pixels, so the points are bucketed once by the block's
    top-left pixel, in a per-level grid padded by one row/column in front (top-left corners may sit at
    -1). One ``embedding_bag`` per corner sums the points' weighted output gradients per block; each
    pixel's gradient is then the sum of the four blocks that contain it (shifted slices). Sorting
    B*L*P keys instead of 4x as many corner entries, and gathering the four corner weights of a point
    as one row, is what makes this cheaper than sorting corner entries. Deterministic on every device.
    """
    n, s, m, d = value_shape
    padded_sizes = [(h + 1) * (w + 1) for h, w in shapes]
    s_pad = sum(padded_sizes)
    index_dtype = tx.floor.dtype if n * s_pad * m <= _INT32_MAX_ROWS else torch.int64
    device = grad_rows.device
    per_point = torch.tensor(shapes, dtype=index_dtype, device=device).repeat_interleave(points, dim=0)
    height, width = per_point[:, 0], per_point[:, 1]
    pad_start = torch.tensor([sum(padded_sizes[:i]) for i in range(len(shapes))], dtype=index_dtype, device=device)
    pad_start = pad_start.repeat_interleave(points)
    bags, lp = tx.floor.shape
    base = (
        torch.arange(n, dtype=index_dtype, device=device).view(n, 1) * (s_pad * m)
        + torch.arange(m, dtype=index_dtype, device=device).view(1, m)
    ).view(n, 1, m).expand(n, bags // (n * m), m).reshape(-1, 1)
    top = torch.minimum(ty.floor.to(index_dtype).clamp_min(-1), height - 1) + 1
    left = torch.minimum(tx.floor.to(index_dtype).clamp_min(-1), width - 1) + 1
    block = ((pad_start + top * (width + 1) + left) * m + base).reshape(-1)

    # A stable sort fixes the summation order inside each bucket: bit-reproducible gradients.
    _, order = torch.sort(block, stable=True)
    counts = torch.bincount(block, minlength=n * s_pad * m)
    offsets = counts.cumsum(0) - counts
    source_bag = torch.div(order, lp, rounding_mode="floor")
    corner_weights = weight.reshape(-1, 4).index_select(0, order)
    per_corner = [
        F.embedding_bag(
            source_bag, grad_rows, offsets, mode="sum", per_sample_weights=corner_weights[:, c].contiguous()
        ).view(n, s_pad, m, d)
        for c in range(4)
    ]
    grad = grad_rows.new_empty(value_shape)
    start = pad = 0
    for (h, w), size in zip(shapes, padded_sizes):
        blocks = [part[:, pad:pad + size].view(n, h + 1, w + 1, m, d) for part in per_corner]
        # Pixel (y, x) is corner (i, j) of the block whose padded top-left is (y - i + 1, x - j + 1).
        level = blocks[0][:, 1:, 1:] + blocks[1][:, 1:, :-1] + blocks[2][:, :-1, 1:] + blocks[3][:, :-1, :-1]
        grad[:, start:start + h * w] = level.reshape(n, h * w, m, d)
        start, pad = start + h * w, pad + size
    return grad


def _weight_gradient(grad_out: Tensor, table: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """d out / d per-entry weight = <grad_out[b], table[index[b, k]]>, via embedding_bag's own backward."""
    with torch.enable_grad():
        weight = weight.detach().requires_grad_(True)
        out = F.embedding_bag(index, table.detach(), per_sample_weights=weight, mode="sum")
        (grad,) = torch.autograd.grad(out, weight, grad_out)
    return grad


class _GatherBilinear(torch.autograd.Function):
    """Differentiable w.r.t. value, sampling_locations and attention_weights (first order).

    Only the inputs are saved; the corner terms are recomputed in backward (a few cheap elementwise
    ops) so training memory matches the grid_sample formulation.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        value: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        sampling_locations: Tensor,
        attention_weights: Tensor,
    ) -> Tensor:
        n, _, m, d = value.shape
        lq, points = sampling_locations.shape[1], sampling_locations.shape[4]
        layout = _layout(value.shape, lq, spatial_shapes, level_start_index, points)
        tx, ty = _taps(sampling_locations, layout)
        weights = attention_weights.reshape(-1, layout.width.numel())
        bags = weights.shape[0]
        index = _corner_index(tx, ty, layout, m).view(bags, -1)
        weight = _corner_weights(tx, ty, weights).view(bags, -1)
        out = F.embedding_bag(index, value.reshape(-1, d), per_sample_weights=weight, mode="sum")
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return out.view(n, lq, m * d)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        value, spatial_shapes, level_start_index, locations, attention_weights = ctx.saved_tensors
        _, lq, m, _, points, _ = locations.shape
        d = value.shape[-1]
        layout = _layout(value.shape, lq, spatial_shapes, level_start_index, points)
        tx, ty = _taps(locations, layout)
        weights = attention_weights.reshape(-1, layout.width.numel())
        weight = _corner_weights(tx, ty, weights)
        grad_rows = grad_out.reshape(-1, d).contiguous()

        grad_value = grad_loc = grad_attn = None
        if ctx.needs_input_grad[0]:
            shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
            grad_value = _table_gradient(grad_rows, tx, ty, weight, value.shape, shapes, points)
        if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            # weight[c=(i, j)] = A * wy_i * wx_j: chain rule through the separable bilinear kernel.
            bags = weight.shape[0]
            index = _corner_index(tx, ty, layout, m).view(bags, -1)
            g = _weight_gradient(grad_rows, value.reshape(-1, d), index, weight.view(bags, -1)).view(weight.shape)
            g00, g01, g10, g11 = g.unbind(-1)
            along_x_lo = g00 * ty.lo + g10 * ty.hi  # d/d wx_lo, without the factor A
            along_x_hi = g01 * ty.lo + g11 * ty.hi
            if ctx.needs_input_grad[4]:
                grad_attn = (along_x_lo * tx.lo + along_x_hi * tx.hi).view(attention_weights.shape)
            if ctx.needs_input_grad[3]:
                along_y_lo = g00 * tx.lo + g01 * tx.hi
                along_y_hi = g10 * tx.lo + g11 * tx.hi
                # d wx_lo / d frac = -lo_in, d wx_hi / d frac = +hi_in; d frac / d loc = size.
                grad_x = (along_x_hi * tx.hi_in - along_x_lo * tx.lo_in) * layout.width.to(g.dtype)
                grad_y = (along_y_hi * ty.hi_in - along_y_lo * ty.lo_in) * layout.height.to(g.dtype)
                grad_loc = (torch.stack((grad_x, grad_y), dim=-1) * weights.unsqueeze(-1)).view(locations.shape)
        return grad_value, None, None, grad_loc, grad_attn


def ms_deform_attn_gather(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Corner-gather formulation (see module docstring); same contract as :func:`ms_deform_attn`."""
    n, _, m, d = value.shape
    lq = sampling_locations.shape[1]
    if value.numel() == 0 or sampling_locations.numel() == 0:
        # embedding_bag rejects empty tables; keep the graph connected for autograd anyway.
        return value.new_zeros(n, lq, m * d) + 0.0 * (sampling_locations.sum() + attention_weights.sum())
    return _GatherBilinear.apply(
        value.contiguous(),
        spatial_shapes.to(value.device),
        level_start_index.to(value.device),
        sampling_locations.contiguous(),
        attention_weights.contiguous(),
    )


# ------------------------------------------------------------------------------------------------
# Registry and dispatch
# ------------------------------------------------------------------------------------------------

_IMPLS: dict[str, MSDeformAttnImpl] = {
    "gather": ms_deform_attn_gather,
    "grid_sample": ms_deform_attn_grid_sample,
}
_BUILTIN_IMPLS = frozenset(_IMPLS)
# "*" is the fallback for every device type; per-device entries (e.g. "cuda") take precedence.
_ANY_DEVICE = "*"
_DEFAULTS: dict[str, str] = {_ANY_DEVICE: "gather"}


def register_impl(name: str, fn: MSDeformAttnImpl, *, overwrite: bool = False) -> None:
    """Make ``fn`` selectable as ``impl=name`` (e.g. a fused Triton kernel on CUDA)."""
    if not name or not isinstance(name, str):
        raise ConfigError(f"ms_deform_attn: implementation name must be a non-empty string, got {name!r}")
    if name in _IMPLS and not overwrite:
        raise ConfigError(f"ms_deform_attn: implementation {name!r} is already registered")
    if name in _BUILTIN_IMPLS:
        raise ConfigError(f"ms_deform_attn: built-in implementation {name!r} cannot be replaced")
    _IMPLS[name] = fn


def unregister_impl(name: str) -> None:
    """Remove a registered (non built-in) implementation; defaults that named it fall back."""
    if name in _BUILTIN_IMPLS:
        raise ConfigError(f"ms_deform_attn: built-in implementation {name!r} cannot be removed")
    if name not in _IMPLS:
        raise ConfigError(f"ms_deform_attn: unknown implementation {name!r}; have {available_impls()}")
    del _IMPLS[name]
    for device_type in [k for k, v in _DEFAULTS.items() if v == name]:
        if device_type == _ANY_DEVICE:
            _DEFAULTS[_ANY_DEVICE] = "gather"
        else:
            del _DEFAULTS[device_type]


def set_default_impl(name: str, device_type: str | None = None) -> None:
    """Use ``name`` when no ``impl`` is given; for one device type ("cpu", "cuda") or for all (None)."""
    if name not in _IMPLS:
        raise ConfigError(f"ms_deform_attn: unknown implementation {name!r}; have {available_impls()}")
    _DEFAULTS[_ANY_DEVICE if device_type is None else device_type] = name


def get_default_impl(device_type: str = "cpu") -> str:
    """Name of the implementation used for tensors on ``device_type`` when ``impl`` is not given."""
    return _DEFAULTS.get(device_type, _DEFAULTS[_ANY_DEVICE])


def available_impls() -> tuple[str, ...]:
    """Names accepted by ``impl=``."""
    return tuple(sorted(_IMPLS))


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    impl: str | None = None,
    check_values: bool = True,
) -> Tensor:
    """Multi-scale deformable attention core.

    Args:
        value: [N, S, M, D], the M heads' values of all levels, flattened level after level.
        spatial_shapes: [L, 2] integer (h, w) per level; sum(h*w) == S.
        level_start_index: [L] integer offset of each level in S.
        sampling_locations: [N, Lq, M, L, P, 2] (x, y) normalised to the level, pixel centres at
            (i + 0.5) / size; points outside [0, 1] read zeros.
        attention_weights: [N, Lq, M, L, P].
        impl: implementation name (see :func:`available_impls`); None uses the device's default.
        check_values: check that ``spatial_shapes`` and ``level_start_index`` describe ``value``'s S
            positions (reads them on the host); False where the caller built them from known shapes.

    Returns:
        [N, Lq, M*D]. Differentiable w.r.t. value, sampling_locations and attention_weights.
    """
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, check_values)
    name = impl if impl is not None else get_default_impl(value.device.type)
    fn = _IMPLS.get(name)
    if fn is None:
        raise ConfigError(f"ms_deform_attn: unknown implementation {name!r}; have {available_impls()}")
    return fn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)


# ------------------------------------------------------------------------------------------------
# Module
# ------------------------------------------------------------------------------------------------


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention layer (Deformable DETR) with the standard initialisation.

    Every query predicts ``n_heads * n_levels * n_points`` sampling offsets around its reference point
    and softmax-normalised weights over the ``n_levels * n_points`` samples of each head.
    """

    def __init__(
        self,
        d_model: int = DEFAULT_D_MODEL,
        n_levels: int = DEFAULT_N_LEVELS,
        n_heads: int = DEFAULT_N_HEADS,
        n_points: int = DEFAULT_N_POINTS,
        impl: str | None = None,
    ) -> None:
        super().__init__()
        if min(d_model, n_levels, n_heads, n_points) <= 0 or d_model % n_heads != 0:
            raise ConfigError(
                f"MSDeformAttn: need positive sizes and d_model divisible by n_heads, got d_model={d_model}, "
                f"n_levels={n_levels}, n_heads={n_heads}, n_points={n_points}"
            )
        if impl is not None and impl not in _IMPLS:
            raise ConfigError(f"MSDeformAttn: unknown implementation {impl!r}; have {available_impls()}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.impl = impl
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets start on a ring of head directions (radius = point index), uniform attention."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        ring = torch.stack((angles.cos(), angles.sin()), dim=-1)
        ring = ring / ring.abs().max(dim=-1, keepdim=True).values  # onto the unit square's border
        radius = torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        grid = ring.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1) * radius
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def sampling_locations(self, query: Tensor, reference_points: Tensor, spatial_shapes: Tensor) -> Tensor:
        """[N, Lq, M, L, P, 2] locations: reference + offsets (in level pixels, or box-scaled for 4-d refs)."""
        n, lq, _ = query.shape
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points, 2)
        if reference_points.shape[-1] == 2:
            size_wh = spatial_shapes.flip(-1).to(offsets)  # offsets are in pixels of each level
            return reference_points[:, :, None, :, None, :] + offsets / size_wh[None, None, None, :, None, :]
        box_wh = reference_points[:, :, None, :, None, 2:]
        return reference_points[:, :, None, :, None, :2] + offsets / self.n_points * box_wh * _BOX_OFFSET_SCALE

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        input_padding_mask: Tensor | None = None,
        check_values: bool = True,
    ) -> Tensor:
        """Attend from ``query`` [N, Lq, C] to ``input_flatten`` [N, S, C]; returns [N, Lq, C].

        ``reference_points`` is [N, Lq, L, 2] (x, y) or [N, Lq, L, 4] (cx, cy, w, h), normalised;
        ``input_padding_mask`` [N, S] is True at padded positions (their values are zeroed). Runs with
        autocast disabled, in the parameters' dtype (fp32 normally), as the spec requires.
        ``check_values`` goes to :func:`ms_deform_attn` (False: the level layout is known to be right).
        """
        self._check_forward_inputs(query, reference_points, input_flatten, input_padding_mask)
        n, lq, _ = query.shape
        s = input_flatten.shape[1]
        dtype = self.value_proj.weight.dtype
        with precision.autocast_off(query.device.type):
            query, input_flatten = query.to(dtype), input_flatten.to(dtype)
            value = self.value_proj(input_flatten)
            if input_padding_mask is not None:
                value = value.masked_fill(input_padding_mask[..., None], 0.0)
            value = value.view(n, s, self.n_heads, self.d_model // self.n_heads)
            logits = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
            weights = logits.softmax(-1).view(n, lq, self.n_heads, self.n_levels, self.n_points)
            locations = self.sampling_locations(query, reference_points.to(dtype), spatial_shapes)
            out = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights, impl=self.impl,
                                 check_values=check_values)
            return self.output_proj(out)

    def _check_forward_inputs(
        self, query: Tensor, reference_points: Tensor, input_flatten: Tensor, padding_mask: Tensor | None
    ) -> None:
        if query.dim() != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"MSDeformAttn: query must be [N, Lq, {self.d_model}], got {tuple(query.shape)}")
        n, lq, _ = query.shape
        if input_flatten.dim() != 3 or input_flatten.shape[0] != n or input_flatten.shape[-1] != self.d_model:
            raise ValueError(
                f"MSDeformAttn: input_flatten must be [{n}, S, {self.d_model}], got {tuple(input_flatten.shape)}"
            )
        if reference_points.dim() != 4 or tuple(reference_points.shape[:3]) != (n, lq, self.n_levels) or (
            reference_points.shape[-1] not in (2, 4)
        ):
            raise ValueError(
                f"MSDeformAttn: reference_points must be [{n}, {lq}, {self.n_levels}, 2 or 4], "
                f"got {tuple(reference_points.shape)}"
            )
        if padding_mask is not None and (
            padding_mask.dtype != torch.bool or tuple(padding_mask.shape) != tuple(input_flatten.shape[:2])
        ):
            raise ValueError(
                f"MSDeformAttn: input_padding_mask must be bool {tuple(input_flatten.shape[:2])}, "
                f"got {padding_mask.dtype} {tuple(padding_mask.shape)}"
            )


# ------------------------------------------------------------------------------------------------
# Optional implementations (registry hook)
# ------------------------------------------------------------------------------------------------


# Overrides the CUDA default implementation, read at import (never the CPU default): e.g. "gather".
CUDA_DEFAULT_ENV = "VDIT_MS_DEFORM_ATTN_CUDA_IMPL"


def register_triton_if_available() -> bool:
    """Register the fused Triton kernel (`vdit.models.ops.ms_deform_attn_triton`) as ``"triton"`` when
    it can run; returns whether it is registered now. Idempotent; imports no triton (the kernels load on
    first use) and changes no default (see `apply_cuda_default`)."""
    from vdit.models.ops import ms_deform_attn_triton as tri

    if not tri.is_available():
        return tri.IMPL_NAME in available_impls()
    register_impl(tri.IMPL_NAME, tri.ms_deform_attn_triton, overwrite=True)
    return True


def apply_cuda_default() -> str | None:
    """Choose the CUDA default implementation: ``VDIT_MS_DEFORM_ATTN_CUDA_IMPL`` if it is set, else
    ``triton`` where it runs compiled on a CUDA device (not in Triton's interpreter).

    Returns the name applied, or None (nothing changed). An unknown name in the variable raises
    ConfigError; ``triton`` there where it is not available is skipped (the same environment can then
    serve GPU and CPU-only machines). The CPU default is never touched.
    """
    import os

    from vdit.models.ops import ms_deform_attn_triton as tri

    name = os.environ.get(CUDA_DEFAULT_ENV, "").strip()
    if not name:
        if tri.IMPL_NAME not in available_impls() or tri.interpret_mode() or not torch.cuda.is_available():
            return None
        name = tri.IMPL_NAME
    if name == tri.IMPL_NAME and name not in available_impls():
        return None
    if name not in available_impls():
        raise ConfigError(f"{CUDA_DEFAULT_ENV}={name!r} is not an implementation; have {available_impls()}")
    set_default_impl(name, device_type="cuda")
    return name


register_triton_if_available()
apply_cuda_default()
