"""Smoothed dice coefficient / loss over whole clip volumes (spec 4.3, 4.4)."""
from __future__ import annotations

import torch


DICE_SMOOTH = 1.0
"""Added to numerator and denominator: (2 sum(p g) + 1) / (sum p + sum g + 1)."""


def dice_coefficient(logits: torch.Tensor, targets: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Per-sample soft dice of sigmoid(logits) against targets -> [N].

    Both inputs are [N, ...] (targets may have N = 1 to score one target against N predictions);
    everything after the first dimension (e.g. T x H x W of a clip) is one volume.
    """
    if logits.dim() < 2 or targets.dim() < 2:
        raise ValueError(
            f"dice_coefficient: expected [N, ...] inputs, got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    prob = logits.sigmoid().flatten(1)
    tgt = targets.to(prob.dtype).flatten(1)
    if prob.shape[1] != tgt.shape[1] or tgt.shape[0] not in (1, prob.shape[0]):
        raise ValueError(
            f"dice_coefficient: predictions {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match"
        )
    numerator = 2 * (prob * tgt).sum(dim=1)
    denominator = prob.sum(dim=1) + tgt.sum(dim=1)
    return (numerator + smooth) / (denominator + smooth)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Per-sample dice loss 1 - dice_coefficient -> [N] (no reduction over samples)."""
    return 1 - dice_coefficient(logits, targets, smooth)
