"""Loss weights and matching costs."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LossConfig:
    """Loss weights and matching costs of the supplementary (spec 4.1)."""

    cls: float = 2.0
    bbox: float = 5.0
    giou: float = 2.0
    mask: float = 2.0  # focal on masks
    dice: float = 5.0
    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    cost_mask: float = 2.0
    cost_dice: float = 5.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    aux_loss: bool = True
