"""VD-IT matching and training losses (spec section 4)."""
from vdit.losses.criterion import (
    DEFAULT_LAYER_WEIGHTS,
    LOSS_TERMS,
    SetCriterion,
    loss_boxes,
    loss_labels,
    loss_masks,
    num_valid_frames,
    weighted_total,
)
from vdit.losses.dice import DICE_SMOOTH, dice_coefficient, dice_loss
from vdit.losses.focal import FOCAL_ALPHA, FOCAL_GAMMA, focal_class_cost, sigmoid_focal_loss
from vdit.losses.matcher import VideoHungarianMatcher
from vdit.losses.targets import ClipTargets, align_targets, low_res_targets

__all__ = [
    "DEFAULT_LAYER_WEIGHTS",
    "DICE_SMOOTH",
    "FOCAL_ALPHA",
    "FOCAL_GAMMA",
    "LOSS_TERMS",
    "ClipTargets",
    "SetCriterion",
    "VideoHungarianMatcher",
    "align_targets",
    "dice_coefficient",
    "dice_loss",
    "focal_class_cost",
    "loss_boxes",
    "loss_labels",
    "loss_masks",
    "low_res_targets",
    "num_valid_frames",
    "sigmoid_focal_loss",
    "weighted_total",
]
