"""The fused SDPA kernels a device would pick, callable on meta (where SDPA falls back to the math
kernel, which saves the [L, S] attention matrix for backward)."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

aten = torch.ops.aten


def sdpa_efficient(query: Tensor, key: Tensor, value: Tensor, dropout_p: float = 0.0, is_causal: bool = False,
                   scale: float | None = None, **_: Any) -> Tensor:
    """CUDA's memory-efficient attention (saves q, k, v, out, log-sum-exp)."""
    out = aten._scaled_dot_product_efficient_attention(query, key, value, None, query.requires_grad
                                                       or key.requires_grad or value.requires_grad,
                                                       dropout_p, is_causal, scale=scale)
    return out[0]


def sdpa_cpu_flash(query: Tensor, key: Tensor, value: Tensor, dropout_p: float = 0.0, is_causal: bool = False,
                   scale: float | None = None, **_: Any) -> Tensor:
    """What CPU SDPA runs (the fused flash kernel for CPU): to compare a meta run with a CPU run."""
    return aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, dropout_p, is_causal, scale=scale)[0]
