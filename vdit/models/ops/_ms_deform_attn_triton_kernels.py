"""Triton kernels of the fused multi-scale deformable attention (spec 3.4); see
:mod:`vdit.models.ops.ms_deform_attn_triton`, which imports this module on first use (it needs triton).

``triton.jit`` decides at decoration time whether a kernel is compiled or interpreted
(``TRITON_INTERPRET=1``, CPU tensors); :data:`INTERPRETED` records which, so that the caller can
re-import this module when the mode changed.

Layouts (all contiguous): value [N, S, M, D]; sampling locations [N, Lq, M, L, P, 2] (x, y);
attention weights [N, Lq, M, L, P]; output / grad_out [N, Lq, M, D]; spatial shapes [L, 2] (h, w) and
level start index [L], int64. Grid: (query blocks, N * M).
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

INTERPRETED = os.environ.get("TRITON_INTERPRET", "").strip().lower() in {"1", "true", "on", "yes"}


@triton.jit
def _axis(coord, size, COMPUTE: tl.constexpr):
    """Lower neighbour (int) and fractional offset of a normalised coordinate along one axis."""
    pixel = coord * size.to(COMPUTE) - 0.5
    # Points beyond one pixel outside the map read only zeros; clamping them (and NaN) changes no
    # tap and keeps the float -> int conversion defined.
    pixel = tl.where(pixel != pixel, -2.0, pixel)
    pixel = tl.minimum(tl.maximum(pixel, -2.0), size.to(COMPUTE) + 1.0)
    lower = tl.floor(pixel)
    return lower.to(tl.int32), pixel - lower


@triton.jit
def _corner_rows(y0, x0, h, w, start, q_mask):
    """Level-relative flat rows (clamped into the map) and in-map masks of the four corners, in
    the order (y, x) = (lo, lo), (lo, hi), (hi, lo), (hi, hi)."""
    y1 = y0 + 1
    x1 = x0 + 1
    y0_in = (y0 >= 0) & (y0 < h)
    y1_in = (y1 >= 0) & (y1 < h)
    x0_in = (x0 >= 0) & (x0 < w)
    x1_in = (x1 >= 0) & (x1 < w)
    # Clamped so that even masked-off addresses stay inside the value tensor.
    y0c = tl.minimum(tl.maximum(y0, 0), h - 1).to(tl.int64)
    y1c = tl.minimum(tl.maximum(y1, 0), h - 1).to(tl.int64)
    x0c = tl.minimum(tl.maximum(x0, 0), w - 1).to(tl.int64)
    x1c = tl.minimum(tl.maximum(x1, 0), w - 1).to(tl.int64)
    r00 = start + y0c * w + x0c
    r01 = start + y0c * w + x1c
    r10 = start + y1c * w + x0c
    r11 = start + y1c * w + x1c
    return (
        r00, r01, r10, r11,
        y0_in & x0_in & q_mask, y0_in & x1_in & q_mask, y1_in & x0_in & q_mask, y1_in & x1_in & q_mask,
    )


@triton.jit
def _program(M, Lq, D, BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's batch n, head m, query block q (with masks) and bag rows (n, q, m)."""
    pid_q = tl.program_id(0)
    pid_nm = tl.program_id(1)
    n = (pid_nm // M).to(tl.int64)
    m = (pid_nm % M).to(tl.int64)
    q = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    d = tl.arange(0, BLOCK_D)
    # Bag (n, q, m): row of the [N*Lq*M, L*P] weights / [N*Lq*M, D] output.
    return n, m, d, q < Lq, d[None, :] < D, (n * Lq + q) * M + m


@triton.jit
def _point(attn_ptr, loc_ptr, bag, lvl, p, L, P, h, w, start, q_mask, COMPUTE: tl.constexpr):
    """Sampling point p of level lvl for every query of the block: its flat index k, attention weight,
    fractional offsets and the four corners' value rows and in-map masks."""
    k = bag * (L * P) + lvl * P + p
    a = tl.load(attn_ptr + k, mask=q_mask, other=0.0).to(COMPUTE)
    x0, fx = _axis(tl.load(loc_ptr + 2 * k, mask=q_mask, other=0.0).to(COMPUTE), w, COMPUTE)
    y0, fy = _axis(tl.load(loc_ptr + 2 * k + 1, mask=q_mask, other=0.0).to(COMPUTE), h, COMPUTE)
    r00, r01, r10, r11, i00, i01, i10, i11 = _corner_rows(y0, x0, h, w, start, q_mask)
    return k, a, fx, fy, r00, r01, r10, r11, i00, i01, i10, i11


@triton.jit
def forward_kernel(
    value_ptr, shapes_ptr, starts_ptr, loc_ptr, attn_ptr, out_ptr,
    S, M, Lq, L, P, D,
    BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr, COMPUTE: tl.constexpr,
):
    n, m, d, q_mask, d_mask, bag = _program(M, Lq, D, BLOCK_Q, BLOCK_D)
    row_stride = M * D  # consecutive positions s of one head are M*D elements apart
    head_base = value_ptr + (n * S * M + m) * D
    acc = tl.zeros([BLOCK_Q, BLOCK_D], dtype=COMPUTE)
    for lvl in range(L):
        h = tl.load(shapes_ptr + 2 * lvl)
        w = tl.load(shapes_ptr + 2 * lvl + 1)
        start = tl.load(starts_ptr + lvl)
        for p in range(P):
            k, a, fx, fy, r00, r01, r10, r11, i00, i01, i10, i11 = _point(
                attn_ptr, loc_ptr, bag, lvl, p, L, P, h, w, start, q_mask, COMPUTE)
            ay0 = a * (1.0 - fy)
            ay1 = a * fy
            v00 = tl.load(head_base + r00[:, None] * row_stride + d[None, :], mask=i00[:, None] & d_mask,
                          other=0.0).to(COMPUTE)
            v01 = tl.load(head_base + r01[:, None] * row_stride + d[None, :], mask=i01[:, None] & d_mask,
                          other=0.0).to(COMPUTE)
            v10 = tl.load(head_base + r10[:, None] * row_stride + d[None, :], mask=i10[:, None] & d_mask,
                          other=0.0).to(COMPUTE)
            v11 = tl.load(head_base + r11[:, None] * row_stride + d[None, :], mask=i11[:, None] & d_mask,
                          other=0.0).to(COMPUTE)
            acc += (ay0 * (1.0 - fx))[:, None] * v00 + (ay0 * fx)[:, None] * v01
            acc += (ay1 * (1.0 - fx))[:, None] * v10 + (ay1 * fx)[:, None] * v11
    out_ptrs = out_ptr + bag[:, None] * D + d[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=q_mask[:, None] & d_mask)


@triton.jit
def backward_kernel(
    value_ptr, shapes_ptr, starts_ptr, loc_ptr, attn_ptr, grad_out_ptr,
    grad_value_ptr, grad_loc_ptr, grad_attn_ptr,
    S, M, Lq, L, P, D,
    BLOCK_Q: tl.constexpr, BLOCK_D: tl.constexpr, COMPUTE: tl.constexpr,
    NEED_VALUE: tl.constexpr, NEED_LOC: tl.constexpr, NEED_ATTN: tl.constexpr,
):
    n, m, d, q_mask, d_mask, bag = _program(M, Lq, D, BLOCK_Q, BLOCK_D)
    row_stride = M * D
    head_offset = (n * S * M + m) * D
    g = tl.load(grad_out_ptr + bag[:, None] * D + d[None, :], mask=q_mask[:, None] & d_mask,
                other=0.0).to(COMPUTE)
    for lvl in range(L):
        h = tl.load(shapes_ptr + 2 * lvl)
        w = tl.load(shapes_ptr + 2 * lvl + 1)
        start = tl.load(starts_ptr + lvl)
        for p in range(P):
            k, a, fx, fy, r00, r01, r10, r11, i00, i01, i10, i11 = _point(
                attn_ptr, loc_ptr, bag, lvl, p, L, P, h, w, start, q_mask, COMPUTE)
            wx0 = 1.0 - fx
            wy0 = 1.0 - fy
            o00 = head_offset + r00[:, None] * row_stride + d[None, :]
            o01 = head_offset + r01[:, None] * row_stride + d[None, :]
            o10 = head_offset + r10[:, None] * row_stride + d[None, :]
            o11 = head_offset + r11[:, None] * row_stride + d[None, :]
            if NEED_VALUE:
                # d value[corner] += A * w_corner * grad_out; several points may hit one pixel.
                ag = a[:, None] * g
                tl.atomic_add(grad_value_ptr + o00, (wy0 * wx0)[:, None] * ag, mask=i00[:, None] & d_mask)
                tl.atomic_add(grad_value_ptr + o01, (wy0 * fx)[:, None] * ag, mask=i01[:, None] & d_mask)
                tl.atomic_add(grad_value_ptr + o10, (fy * wx0)[:, None] * ag, mask=i10[:, None] & d_mask)
                tl.atomic_add(grad_value_ptr + o11, (fy * fx)[:, None] * ag, mask=i11[:, None] & d_mask)
            if NEED_LOC or NEED_ATTN:
                # <v_corner, grad_out>; off-map corners load zero, so they drop out of every term.
                g00 = tl.sum(tl.load(value_ptr + o00, mask=i00[:, None] & d_mask, other=0.0).to(COMPUTE) * g, 1)
                g01 = tl.sum(tl.load(value_ptr + o01, mask=i01[:, None] & d_mask, other=0.0).to(COMPUTE) * g, 1)
                g10 = tl.sum(tl.load(value_ptr + o10, mask=i10[:, None] & d_mask, other=0.0).to(COMPUTE) * g, 1)
                g11 = tl.sum(tl.load(value_ptr + o11, mask=i11[:, None] & d_mask, other=0.0).to(COMPUTE) * g, 1)
                x_lo = g00 * wy0 + g10 * fy  # d out / d wx_lo, without A
                x_hi = g01 * wy0 + g11 * fy
                if NEED_ATTN:
                    grad_a = x_lo * wx0 + x_hi * fx
                    tl.store(grad_attn_ptr + k, grad_a.to(grad_attn_ptr.dtype.element_ty), mask=q_mask)
                if NEED_LOC:
                    y_lo = g00 * wx0 + g01 * fx
                    y_hi = g10 * wx0 + g11 * fx
                    # d wx_hi / d x = size = -d wx_lo / d x (pixel = x * size - 0.5).
                    grad_x = a * (x_hi - x_lo) * w.to(COMPUTE)
                    grad_y = a * (y_hi - y_lo) * h.to(COMPUTE)
                    tl.store(grad_loc_ptr + 2 * k, grad_x.to(grad_loc_ptr.dtype.element_ty), mask=q_mask)
                    tl.store(grad_loc_ptr + 2 * k + 1, grad_y.to(grad_loc_ptr.dtype.element_ty), mask=q_mask)
