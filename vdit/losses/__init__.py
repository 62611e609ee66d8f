"""VD-IT matching and training losses (spec section 4). Their numbers come from `LossConfig` only:
`build_criterion(cfg.loss, dec_layers)`, `build_matcher(cfg.loss)`."""
from vdit.losses.criterion import (
    LOSS_TERMS,
    SetCriterion,
    build_criterion,
    layer_weights,
    loss_boxes,
    loss_labels,
    loss_masks,
    num_valid_frames,
    weighted_total,
)
from vdit.losses.dice import DICE_SMOOTH, dice_coefficient, dice_loss
from vdit.losses.focal import focal_class_cost, sigmoid_focal_loss
from vdit.losses.matcher import VideoHungarianMatcher, build_matcher
from vdit.losses.targets import ClipTargets, align_targets, low_res_targets

__all__ = [
    "DICE_SMOOTH",
    "LOSS_TERMS",
    "ClipTargets",
    "SetCriterion",
    "VideoHungarianMatcher",
    "align_targets",
    "build_criterion",
    "build_matcher",
    "dice_coefficient",
    "dice_loss",
    "focal_class_cost",
    "layer_weights",
    "loss_boxes",
    "loss_labels",
    "loss_masks",
    "low_res_targets",
    "num_valid_frames",
    "sigmoid_focal_loss",
    "weighted_total",
]
