"""Multi-scale deformable attention on the meta device: the memory of the gather implementation, no values."""
from __future__ import annotations

import torch

class ShapeOnlyDeformAttn(torch.autograd.Function):
    """Multi-scale deformable attention on meta: the gather implementation's memory, no values.

    Forward saves only the inputs (as the gather kernel) and holds its working set (int32 corner index
    and corner weights, [N*Lq*M, L*P*4]) while it runs; backward allocates the gradients and the gather
    backward's four value-sized per-corner buffers. (The gather backward sorts by value-dependent keys,
    which meta cannot do.)"""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, locations, weights):  # type: ignore[override]
        n, s, m, d = value.shape
        lq, lp = locations.shape[1], locations.shape[3] * locations.shape[4]
        work = (value.new_empty((n * lq * m, lp * 4), dtype=torch.int32), value.new_empty((n * lq * m, lp * 4)))
        ctx.save_for_backward(value, locations, weights)
        del work
        return value.new_empty((n, lq, m * d))

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        value, locations, weights = ctx.saved_tensors
        per_corner = [value.new_empty(value.shape) for _ in range(4)]
        grads = (value.new_empty(value.shape), None, None, locations.new_empty(locations.shape),
                 weights.new_empty(weights.shape))
        del per_corner
        return grads


def shape_only_deform_attn(value, spatial_shapes, level_start_index, locations, weights):
    return ShapeOnlyDeformAttn.apply(value, spatial_shapes, level_start_index, locations, weights)
