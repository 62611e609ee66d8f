"""Video-level Hungarian matcher: which of the Q queries is the referred object in each clip (spec 4.3).

Each clip has exactly one target (the referred object over its T frames), so the cost is a [Q, 1]
matrix per clip, and its Hungarian assignment is the query of minimum cost: the official code's argmin
(spec 4.3). It runs on the device (`assign_single_target`: first minimum, non-finite costs last, i.e.
exactly what scipy's linear_sum_assignment returns for a [Q, 1] matrix; tested against it), so matching
never waits on the host (issue 17). Several objects per clip are not supported: the data contract
(ClipBatch) carries one object per clip.

Matching uses the low-resolution masks M_o (the final masks M exist only for the matched query).

Value checks: the clip's valid frames and the boxes' xyxy order are checked by reading tensor values,
a host sync on an accelerator. `check_values=False` skips them for callers that checked the targets on
the host already (the trainer) and whose predicted boxes are valid by construction (sigmoid sizes).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vdit.config import LossConfig
from vdit.errors import ConfigError
from vdit.losses.dice import dice_coefficient
from vdit.losses.focal import check_focal_params, focal_class_cost, sigmoid_focal_loss
from vdit.losses.targets import ClipTargets, align_targets, low_res_targets, require_valid_frame_per_clip
from vdit.models.ops import box_ops
from vdit.models.ops.box_ops import box_cxcywh_to_xyxy, paired_generalized_box_iou

COST_TERMS = ("class", "bbox", "giou", "mask", "dice")


class VideoHungarianMatcher(nn.Module):
    """Pick, per clip, the query whose whole-clip predictions best match the referred object.

    The cost weights and focal parameters default to LossConfig's (spec 4.1 `set_cost_*`);
    `build_matcher(cfg.loss)` builds the one a config asks for."""

    def __init__(
        self,
        cost_class: float = LossConfig.cost_class,
        cost_bbox: float = LossConfig.cost_bbox,
        cost_giou: float = LossConfig.cost_giou,
        cost_mask: float = LossConfig.cost_mask,
        cost_dice: float = LossConfig.cost_dice,
        focal_alpha: float = LossConfig.focal_alpha,
        focal_gamma: float = LossConfig.focal_gamma,
        check_values: bool = True,
    ) -> None:
        super().__init__()
        weights = {"class": cost_class, "bbox": cost_bbox, "giou": cost_giou, "mask": cost_mask, "dice": cost_dice}
        if any(float(w) < 0 for w in weights.values()) or all(float(w) == 0 for w in weights.values()):
            raise ConfigError(f"matcher cost weights must be >= 0 and not all zero, got {weights}")
        check_focal_params(focal_alpha, focal_gamma)
        self.cost_weights = {k: float(v) for k, v in weights.items()}
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.check_values = bool(check_values)

    @torch.no_grad()
    def forward(
        self,
        pred_logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        pred_masks: torch.Tensor,
        targets: Any,
    ) -> torch.Tensor:
        """Return the matched query per clip, LongTensor [B] on pred_logits' device.

        pred_logits [B,T,Q,1], pred_boxes [B,T,Q,4] cxcywh, pred_masks [B,T,Q,h,w] (M_o logits at
        stride 2 of the padded input); targets: a ClipBatch (masks, boxes, valid, valid_indices).
        """
        return assign_single_target(self.cost_matrix(pred_logits, pred_boxes, pred_masks, targets))

    @torch.no_grad()
    def cost_matrix(
        self, pred_logits: torch.Tensor, pred_boxes: torch.Tensor, pred_masks: torch.Tensor, targets: Any
    ) -> torch.Tensor:
        """Total weighted matching cost C [B, Q] (the [Q, 1] matrix of each clip, squeezed)."""
        costs = self.costs(pred_logits, pred_boxes, pred_masks, targets)
        return sum(self.cost_weights[name] * costs[name] for name in COST_TERMS)

    @torch.no_grad()
    def costs(
        self, pred_logits: torch.Tensor, pred_boxes: torch.Tensor, pred_masks: torch.Tensor, targets: Any
    ) -> dict[str, torch.Tensor]:
        """The five unweighted costs, each [B, Q]: class, bbox (L1), giou (-GIoU), mask (focal), dice (-dice)."""
        _check_predictions(pred_logits, pred_boxes, pred_masks)
        tgt = align_targets(targets, pred_logits.shape[1])
        if tgt.masks.shape[0] != pred_logits.shape[0]:
            raise ValueError(f"targets have {tgt.masks.shape[0]} clips, predictions {pred_logits.shape[0]}")
        if self.check_values:
            require_valid_frame_per_clip(tgt.valid)
        box_cost, giou_cost = self._box_costs(pred_boxes.float(), tgt)
        mask_cost, dice_cost = self._mask_costs(pred_masks.float(), tgt)
        return {
            "class": self._class_cost(pred_logits.float(), tgt.valid),
            "bbox": box_cost,
            "giou": giou_cost,
            "mask": mask_cost,
            "dice": dice_cost,
        }

    def _class_cost(self, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # binary task: the single logit is the "referred object" class; averaged over valid frames only
        per_frame = focal_class_cost(logits[..., 0], self.focal_alpha, self.focal_gamma)  # [B,T,Q]
        weights = valid.to(per_frame.dtype)[..., None]
        summed = torch.where(weights > 0, per_frame, torch.zeros_like(per_frame)).sum(dim=1)
        return summed / weights.sum(dim=1)

    def _box_costs(self, boxes: torch.Tensor, tgt: ClipTargets) -> tuple[torch.Tensor, torch.Tensor]:
        # averaged over ALL frames, invalid ones included with their all-zero target box (spec 4.3)
        b, t, q, _ = boxes.shape
        tgt_boxes = tgt.boxes.to(boxes)[:, :, None, :]  # [B,T,1,4]
        l1 = torch.cdist(boxes.reshape(b * t, q, 4), tgt_boxes.reshape(b * t, 1, 4), p=1).reshape(b, t, q)
        giou = paired_giou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes), self.check_values)  # [B,T,Q]
        return l1.mean(dim=1), -giou.mean(dim=1)

    def _mask_costs(self, masks: torch.Tensor, tgt: ClipTargets) -> tuple[torch.Tensor, torch.Tensor]:
        # one volume per clip: [Q, T*h*w] predictions against the clip's [1, T*h*w] target
        gt = low_res_targets(tgt.masks, masks.shape[-2:]).to(masks)  # [B,T,h,w]
        focal, dice = [], []
        for pred_clip, gt_clip in zip(masks, gt):
            pred_q = pred_clip.transpose(0, 1).flatten(1)  # [Q, T*h*w]
            gt_q = gt_clip.flatten()[None].expand_as(pred_q)
            focal.append(sigmoid_focal_loss(pred_q, gt_q, self.focal_alpha, self.focal_gamma).mean(dim=1))
            dice.append(-dice_coefficient(pred_q, gt_clip.flatten()[None]))
        return torch.stack(focal), torch.stack(dice)


def assign_single_target(cost: torch.Tensor) -> torch.Tensor:
    """Hungarian assignment of each clip's one target over its Q queries: cost [B, Q] -> LongTensor [B]
    (on cost's device, no host sync).

    For a [Q, 1] cost matrix the assignment is the query of minimum cost; among equal costs the first
    (as scipy's linear_sum_assignment and torch.argmin). Non-finite costs (NaN/inf predictions) rank
    after every finite one, so the assignment still succeeds; the loss of such a step is then
    non-finite and the engine's check reports it.
    """
    finite = torch.where(torch.isfinite(cost), cost, torch.full_like(cost, float("inf")))
    return finite.argmin(dim=1)


def paired_giou(boxes1: torch.Tensor, boxes2: torch.Tensor, check: bool = True) -> torch.Tensor:
    """Element-wise GIoU of xyxy boxes (`box_ops.paired_generalized_box_iou`); `check=False` skips its
    xyxy-order check, which reads tensor values (a host sync on an accelerator). The formula is the same
    function either way, so the values are bit-identical."""
    if check:
        return paired_generalized_box_iou(boxes1, boxes2)
    return box_ops._giou(boxes1, boxes2)


def _check_predictions(logits: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor) -> None:
    if logits.dim() != 4 or logits.shape[-1] != 1:
        raise ValueError(f"pred_logits must be [B, T, Q, 1] (one 'referred' class), got {tuple(logits.shape)}")
    b, t, q, _ = logits.shape
    if boxes.shape != (b, t, q, 4):
        raise ValueError(f"pred_boxes must be [B, T, Q, 4] = [{b}, {t}, {q}, 4], got {tuple(boxes.shape)}")
    if masks.dim() != 5 or masks.shape[:3] != (b, t, q):
        raise ValueError(f"pred_masks must be [B, T, Q, h, w] with B, T, Q = {b}, {t}, {q}; got {tuple(masks.shape)}")


def build_matcher(loss: LossConfig, check_values: bool = True) -> VideoHungarianMatcher:
    """The matcher of a config's loss section: its cost weights and focal parameters."""
    return VideoHungarianMatcher(cost_class=loss.cost_class, cost_bbox=loss.cost_bbox, cost_giou=loss.cost_giou,
                                 cost_mask=loss.cost_mask, cost_dice=loss.cost_dice, focal_alpha=loss.focal_alpha,
                                 focal_gamma=loss.focal_gamma, check_values=check_values)
