"""CondInst-style dynamic mask head with relative coordinates (spec 3.6).

Every (frame, query) instance gets its own two 1x1 conv layers, whose weights a controller MLP emits
from the query's decoder feature. The conv input is cat([mask features (C), relative coords (2)]) on
the s8 grid, the official order (features first, the two coordinate channels appended last); the output has `c = mask_out_stride**2` channels that pixel-shuffle into one channel at s2 (M_o)
and, after MSO, at s1 (M).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from vdit.models.head.mlp import MLP
from vdit.models.ops.device_values import uploaded_once

COORD_CHANNELS = 2
CONTROLLER_MLP_LAYERS = 3  # 256 -> 256 -> 256 -> P


def dynamic_param_sizes(in_channels: int, mask_channels: int, rel_coord: bool) -> tuple[list[int], list[int]]:
    """Weight and bias sizes of the two dynamic layers: [(C+2)*c, c*c], [c, c]."""
    cin = in_channels + (COORD_CHANNELS if rel_coord else 0)
    return [cin * mask_channels, mask_channels * mask_channels], [mask_channels, mask_channels]


BICUBIC_A = -0.75  # PyTorch's bicubic convolution constant (F.interpolate(mode="bicubic"))


@functools.lru_cache(maxsize=64)
def bicubic_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in] float64: 1-D bicubic resizing as `F.interpolate(mode="bicubic",
    align_corners=False)` computes it (source x = (i + 0.5) * n_in / n_out - 0.5, the 4 taps around it
    clamped to the edge, cubic convolution with a = -0.75), as a matrix. Cached; do not modify."""
    a = BICUBIC_A
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    scale = n_in / n_out
    for i in range(n_out):
        src = (i + 0.5) * scale - 0.5
        left = math.floor(src)
        t = src - left
        taps = (((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                ((a + 2) * t - (a + 3)) * t * t + 1,
                ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
                ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a)
        for k, w in enumerate(taps):
            m[i, min(max(left - 1 + k, 0), n_in - 1)] += w
    return m


def bicubic_resize_matmul(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """x [..., h, w] -> [..., H, W]: `F.interpolate(x, size, mode="bicubic", align_corners=False)` as
    two products with the 1-D resize matrices, in float32 (autocast off) and cast back to x's dtype. The
    same sums in another order (float32 rounding apart); on a GPU ~45x faster than the interpolation
    kernel at the mask features' size (H200: 0.2 vs 9.5 ms for [60,256,23,40] -> 46x80)."""
    (h, w), (hh, ww) = x.shape[-2:], size
    rows = uploaded_once(("bicubic", h, hh), x.device, lambda: bicubic_matrix(h, hh).float())
    cols = uploaded_once(("bicubic", w, ww), x.device, lambda: bicubic_matrix(w, ww).float())
    with torch.autocast(x.device.type, enabled=False):
        return torch.matmul(torch.matmul(rows, x.float()), cols.t()).to(x.dtype)


def mask_features(memory_levels: list[torch.Tensor], resize: str = "auto") -> torch.Tensor:
    """Sum of the encoder memory levels (s8, s16, s32), bicubically resized to the s8 size.
    `resize`: "interpolate" (F.interpolate), "matmul" (`bicubic_resize_matmul`), "auto" = matmul on an
    accelerator, where the interpolation kernel is slow, interpolate on the CPU (its recorded numbers)."""
    size = tuple(memory_levels[0].shape[-2:])
    out = memory_levels[0]
    if resize == "auto":
        resize = "interpolate" if out.device.type in ("cpu", "meta") else "matmul"
    if resize not in ("interpolate", "matmul"):
        raise ValueError(f"resize must be 'auto', 'interpolate' or 'matmul', got {resize!r}")
    for level in memory_levels[1:]:
        if resize == "matmul":
            out = out + bicubic_resize_matmul(level, size)
        else:
            out = out + F.interpolate(level, size=size, mode="bicubic", align_corners=False)
    return out


def relative_coords(centers: torch.Tensor, sizes_hw: torch.Tensor, grid_hw: tuple[int, int], stride: int) -> torch.Tensor:
    """centers [N,Q,2] (cx, cy normalised to the unpadded image), sizes_hw [N,2] -> [N,Q,2,h,w] offsets
    center - location in raw pixels (unnormalised, as the official head), locations = s*i + s/2."""
    h, w = grid_hw
    device, dtype = centers.device, centers.dtype
    ys = torch.arange(h, device=device, dtype=dtype) * stride + stride // 2
    xs = torch.arange(w, device=device, dtype=dtype) * stride + stride // 2
    scale = sizes_hw.flip(-1).to(dtype)[:, None, :]  # (w, h) per sample
    c = centers * scale  # [N,Q,2] pixels (x, y)
    dx = c[..., 0, None, None] - xs.view(1, 1, 1, w)
    dy = c[..., 1, None, None] - ys.view(1, 1, h, 1)
    return torch.stack([dx.expand(-1, -1, h, w), dy.expand(-1, -1, h, w)], dim=2)


class DynamicMaskHead(nn.Module):
    def __init__(self, hidden_dim: int, mask_channels: int, rel_coord: bool, feat_stride: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.mask_channels = mask_channels
        self.rel_coord = rel_coord
        self.feat_stride = feat_stride
        self.weight_nums, self.bias_nums = dynamic_param_sizes(hidden_dim, mask_channels, rel_coord)
        num_params = sum(self.weight_nums) + sum(self.bias_nums)
        self.controller = MLP(hidden_dim, hidden_dim, num_params, CONTROLLER_MLP_LAYERS)
        for layer in self.controller.layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, queries: torch.Tensor, feats: torch.Tensor, centers: torch.Tensor,
                sizes_hw: torch.Tensor) -> torch.Tensor:
        """queries [N,Q,C] (decoder output), feats [N,C,h,w] (mask features), centers [N,Q,2] (detached
        box centres), sizes_hw [N,2] unpadded input sizes -> mask logits [N,Q,c,h,w]."""
        n, q, _ = queries.shape
        h, w = feats.shape[-2:]
        c = self.mask_channels
        params = self.controller(queries)  # [N,Q,P]
        w0, w1, b0, b1 = torch.split(params, self.weight_nums + self.bias_nums, dim=-1)
        cin = self.weight_nums[0] // c
        w0 = w0.reshape(n, q, c, cin)
        w1 = w1.reshape(n, q, c, c)
        flat = feats.flatten(2)  # [N,C,HW]
        # Layer 0 split by input group so the C-channel features are not copied once per query:
        # [feats ; coords] . w0 = feats . w0[:, :C] + coords . w0[:, C:]  (the official cat order)
        if self.rel_coord:
            coords = relative_coords(centers, sizes_hw, (h, w), self.feat_stride).flatten(3)  # [N,Q,2,HW]
            x = torch.einsum("nqoc,ncp->nqop", w0[..., :-COORD_CHANNELS], flat)
            x = x + torch.einsum("nqok,nqkp->nqop", w0[..., -COORD_CHANNELS:], coords)
        else:
            x = torch.einsum("nqoc,ncp->nqop", w0, flat)
        x = F.relu(x + b0[..., None])
        x = torch.einsum("nqoc,nqcp->nqop", w1, x) + b1[..., None]
        return x.reshape(n, q, c, h, w)


def coords_first_to_official(rows: torch.Tensor, in_channels: int, mask_channels: int) -> torch.Tensor:
    """Controller output rows emitted for the pre-fix layer-0 input [coords (2) ; feats (C)] -> the same
    rows for the official input [feats (C) ; coords (2)] (weights layout 1 -> 2, see `VDIT.load_trainable`).

    `rows` is the controller's last layer weight [P, hidden] or bias [P] (or an optimiser moment of either):
    dim 0 runs over the P = (C+2)*c + c*c + c + c dynamic parameters, layer-0 weights first as [c, C+2].
    Only the layer-0 block is permuted, so the migrated head computes exactly the same masks.
    """
    cin = in_channels + COORD_CHANNELS
    n0 = cin * mask_channels
    if rows.shape[0] != n0 + mask_channels * mask_channels + 2 * mask_channels:
        raise ValueError(f"controller rows {tuple(rows.shape)} do not fit C={in_channels}, c={mask_channels}")
    w0 = rows[:n0].reshape(mask_channels, cin, *rows.shape[1:])
    w0 = torch.cat([w0[:, COORD_CHANNELS:], w0[:, :COORD_CHANNELS]], dim=1)
    return torch.cat([w0.reshape(n0, *rows.shape[1:]), rows[n0:]], dim=0)
