"""Sigmoid focal loss (Lin et al., ICCV 2017) and the focal-style matching cost of the class logit.

Both follow the official VD-IT / ReferFormer formulas (spec 4.3, 4.4); alpha and gamma default to
`LossConfig.focal_alpha` / `LossConfig.focal_gamma` (the one home of the loss numbers).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vdit.config import LossConfig
from vdit.errors import ConfigError

FOCAL_COST_EPS = 1e-8
"""Added inside the logs of the matching class cost (official matcher)."""


def check_focal_params(alpha: float, gamma: float) -> None:
    """Raise ConfigError unless 0 <= alpha <= 1 and gamma >= 0."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"focal_alpha must be in [0, 1], got {alpha}")
    if float(gamma) < 0.0:
        raise ConfigError(f"focal_gamma must be >= 0, got {gamma}")


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = LossConfig.focal_alpha,
    gamma: float = LossConfig.focal_gamma,
) -> torch.Tensor:
    """Element-wise focal loss of logits against {0,1} (or soft) targets of the same shape.

    loss = alpha_t * (1 - p_t)^gamma * BCE(logit, target), with p = sigmoid(logit),
    p_t = p*t + (1-p)*(1-t) and alpha_t = alpha*t + (1-alpha)*(1-t). No reduction: the callers
    reduce exactly as the official criterion/matcher do.
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"sigmoid_focal_loss: logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape"
        )
    targets = targets.to(logits.dtype)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * ce


def focal_class_cost(logits: torch.Tensor, alpha: float = LossConfig.focal_alpha,
                     gamma: float = LossConfig.focal_gamma) -> torch.Tensor:
    """Element-wise matching cost of calling each logit the positive class (lower = better match).

    cost = alpha (1-p)^gamma (-log(p + eps)) - (1-alpha) p^gamma (-log(1 - p + eps)), eps = 1e-8:
    the focal loss of "positive" minus the focal loss of "negative" (spec 4.3).
    """
    prob = logits.sigmoid()
    pos = alpha * (1 - prob) ** gamma * -(prob + FOCAL_COST_EPS).log()
    neg = (1 - alpha) * prob**gamma * -(1 - prob + FOCAL_COST_EPS).log()
    return pos - neg
