"""VD-IT training loss (spec 4.1, 4.2, 4.4): 7 terms per decoder layer, 4 layers, and their weighted total.

The training wrapper (`vdit.training`) runs the matcher and refines the matched query (the refined
masks M exist only for it), so every layer's output dict arrives with its `matched_query`. Per layer:

    loss_ce        focal over all B x T x Q logits; target 1 only at (valid frame, matched query)
    loss_bbox      L1 of the matched query's boxes over ALL T frames (zero targets on invalid frames)
    loss_giou      1 - GIoU, same frames
    loss_mask      focal on M (full resolution), mean over the clip volume
    loss_dice      1 - dice on M over the clip volume
    loss_mask_low  focal on M_o against targets[..., 1::2, 1::2]
    loss_dice_low  dice on M_o, same targets

Each is summed over the batch and divided by `num_boxes` (the number of valid frames, averaged over
DDP ranks; a 0-dim tensor on the device, so the loss never waits on the host). Auxiliary layers use the
suffixes _0, _1, _2.

As the official criterion (DETR / ReferFormer / SgMg / VD-IT lineage), `SetCriterion.forward` returns
the terms UNWEIGHTED under the official names; the weights live in `criterion.weight_dict`. It also
returns 'loss' = sum_k weight_dict[k] * term_k, the total the official engine builds in its training
loop (spec 4.1), so callers need not redo the weighting. The numbers (weights, focal parameters) come
from `LossConfig`, their one home: `build_criterion(cfg.loss, dec_layers)`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from vdit.config import LossConfig
from vdit.errors import ConfigError
from vdit.losses.dice import dice_loss
from vdit.losses.focal import check_focal_params, sigmoid_focal_loss
from vdit.losses.matcher import paired_giou
from vdit.losses.targets import ClipTargets, align_targets, low_res_targets
from vdit.models.ops.box_ops import box_cxcywh_to_xyxy

LOSS_TERMS = ("loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice", "loss_mask_low", "loss_dice_low")
"""The per-layer terms under their official names."""
NUM_AUX_LAYERS = 3
"""Decoder layers 0-2 are auxiliary; the last (4th) layer gives the main outputs."""


def layer_weights(loss: LossConfig) -> dict[str, float]:
    """The per-layer weight of each term in LOSS_TERMS from a config's loss section (spec 4.1: the
    cls/bbox/giou/mask/dice coefficients; the *_low terms reuse mask and dice)."""
    return {"loss_ce": loss.cls, "loss_bbox": loss.bbox, "loss_giou": loss.giou, "loss_mask": loss.mask,
            "loss_dice": loss.dice, "loss_mask_low": loss.mask, "loss_dice_low": loss.dice}


def num_valid_frames(valid: torch.Tensor) -> torch.Tensor:
    """The loss normaliser `num_boxes` (spec 4.2): valid frames in the batch, averaged over DDP ranks.

    Sums `valid` [B, T], all-reduces the count when torch.distributed is initialised, divides by the
    world size and clamps to >= 1. Every rank must call it (it is a collective under DDP). Returned as a
    0-dim float32 tensor on `valid`'s device: the count is never read on the host (issue 17).
    """
    count = valid.sum().to(torch.float32).reshape(1)
    world_size = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(count)
        world_size = torch.distributed.get_world_size()
    return (count[0] / world_size).clamp(min=1.0)


def weighted_total(terms: Mapping[str, torch.Tensor], weight_dict: Mapping[str, float]) -> torch.Tensor:
    """sum_k weight_dict[k] * terms[k] over the terms that have a weight (spec 4.1 "Total loss").

    The official engine computes this sum in its training loop; keys without a weight (such as a
    'loss' entry already present) are left out, as there.
    """
    weighted = [value * weight_dict[name] for name, value in terms.items() if name in weight_dict]
    if not weighted:
        raise ValueError(f"no loss term has a weight: terms {sorted(terms)}, weights {sorted(weight_dict)}")
    return torch.stack(weighted).sum()


def loss_labels(
    pred_logits: torch.Tensor,
    matched_query: torch.Tensor,
    valid: torch.Tensor,
    num_boxes: float | torch.Tensor,
    alpha: float = LossConfig.focal_alpha,
    gamma: float = LossConfig.focal_gamma,
) -> torch.Tensor:
    """Focal loss of the class logits [B,T,Q,1]; positives = matched query on valid frames.

    The official loss is mean over the T*Q logits, summed over the batch, / num_boxes, times T*Q:
    i.e. the sum over every logit / num_boxes, computed here directly. Invalid frames are negatives
    even for the matched query.
    """
    logits = pred_logits[..., 0].float()  # [B,T,Q]
    target = torch.zeros_like(logits)
    batch = torch.arange(logits.shape[0], device=logits.device)
    target[batch, :, matched_query] = valid.to(logits.dtype)
    return sigmoid_focal_loss(logits, target, alpha, gamma).sum() / num_boxes


def loss_boxes(
    pred_boxes: torch.Tensor, matched_query: torch.Tensor, target_boxes: torch.Tensor,
    num_boxes: float | torch.Tensor, check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, 1 - GIoU) of the matched query's boxes [B,T,4] against the targets over all T frames.
    `check=False` skips the xyxy-order check of the boxes (a host sync on an accelerator)."""
    src = _matched(pred_boxes, matched_query).float()  # [B,T,4]
    tgt = target_boxes.to(src)
    l1 = (src - tgt).abs().sum() / num_boxes
    giou = paired_giou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt), check)
    return l1, (1 - giou).sum() / num_boxes


def loss_masks(
    pred_masks: torch.Tensor,
    target_masks: torch.Tensor,
    num_boxes: float | torch.Tensor,
    alpha: float = LossConfig.focal_alpha,
    gamma: float = LossConfig.focal_gamma,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(focal, dice) of mask logits [B,T,H,W] vs targets of the same shape, one volume per clip.

    Focal: mean over the T*H*W pixels of each clip, summed over clips / num_boxes.
    Dice: 1 - (2 sum(pg) + 1) / (sum p + sum g + 1) per clip, summed / num_boxes.
    """
    src = pred_masks.float().flatten(1)
    tgt = target_masks.to(src).flatten(1)
    focal = sigmoid_focal_loss(src, tgt, alpha, gamma).mean(dim=1).sum() / num_boxes
    dice = dice_loss(src, tgt).sum() / num_boxes
    return focal, dice


class SetCriterion(nn.Module):
    """VD-IT loss over the main and auxiliary decoder layers (spec 4.1, 4.4).

    weight_dict: per-layer weights keyed by the names in LOSS_TERMS (default `layer_weights(LossConfig())`);
    a term left out is not computed. The expanded dict (with _0.._{n-1} suffixes for the auxiliary
    layers) is `self.weight_dict`, keyed like the terms `forward` returns. The outputs arrive matched
    (the matcher runs before, in `vdit.training`).

    `check_values=False` skips the checks that read tensor values (the batch has a valid frame, the
    matched queries are in range, boxes are xyxy-ordered), each a host sync on an accelerator: for
    callers that checked the targets on the host and feed the model's own outputs (the trainer).
    """

    def __init__(
        self,
        weight_dict: Mapping[str, float] | None = None,
        focal_alpha: float = LossConfig.focal_alpha,
        focal_gamma: float = LossConfig.focal_gamma,
        num_aux_layers: int = NUM_AUX_LAYERS,
        check_values: bool = True,
    ) -> None:
        super().__init__()
        weights = dict(layer_weights(LossConfig()) if weight_dict is None else weight_dict)
        unknown = sorted(set(weights) - set(LOSS_TERMS))
        if unknown:
            raise ConfigError(f"unknown loss term(s) {unknown} in weight_dict; known: {list(LOSS_TERMS)}")
        if not weights:
            raise ConfigError("weight_dict is empty: at least one loss term is needed")
        check_focal_params(focal_alpha, focal_gamma)
        if int(num_aux_layers) < 0:
            raise ConfigError(f"num_aux_layers must be >= 0, got {num_aux_layers}")
        self.layer_weights = {k: float(v) for k, v in weights.items()}
        self.num_aux_layers = int(num_aux_layers)
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.check_values = bool(check_values)
        self.weight_dict = dict(self.layer_weights)
        for i in range(self.num_aux_layers):
            self.weight_dict.update({f"{k}_{i}": v for k, v in self.layer_weights.items()})

    def forward(self, outputs: Mapping[str, Any], batch: Any) -> dict[str, torch.Tensor]:
        """Every UNWEIGHTED term (loss_ce, ..., loss_dice_low_2, the official names and values) plus
        'loss' = sum_k self.weight_dict[k] * term_k, the weighted total to back-propagate."""
        layers = [("", outputs)] + [(f"_{i}", aux) for i, aux in enumerate(self._aux_outputs(outputs))]
        targets = align_targets(batch, int(_require(outputs, "pred_logits").shape[1]))
        if self.check_values and not bool(targets.valid.any()):
            raise ValueError("the batch has no valid frame: nothing to supervise (datasets resample such clips)")
        num_boxes = num_valid_frames(targets.valid)
        losses: dict[str, torch.Tensor] = {}
        for suffix, layer in layers:
            for name, value in self.layer_losses(layer, targets, num_boxes, f"outputs{suffix}").items():
                losses[name + suffix] = value
        losses["loss"] = weighted_total(losses, self.weight_dict)
        return losses

    def layer_losses(
        self, layer: Mapping[str, Any], targets: ClipTargets, num_boxes: float | torch.Tensor,
        name: str = "outputs",
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms of one decoder layer (only those in self.layer_weights)."""
        wanted = self.layer_weights
        num_frames = _check_layer(layer, name, self.check_values)
        if num_frames != targets.valid.shape[1]:
            raise ValueError(f"{name} has {num_frames} frame(s), the targets {targets.valid.shape[1]}")
        matched = layer["matched_query"]
        out: dict[str, torch.Tensor] = {}
        if "loss_ce" in wanted:
            out["loss_ce"] = loss_labels(
                layer["pred_logits"], matched, targets.valid, num_boxes, self.focal_alpha, self.focal_gamma
            )
        if "loss_bbox" in wanted or "loss_giou" in wanted:
            l1, giou = loss_boxes(_require(layer, "pred_boxes", name), matched, targets.boxes, num_boxes,
                                  self.check_values)
            out.update({k: v for k, v in (("loss_bbox", l1), ("loss_giou", giou)) if k in wanted})
        if "loss_mask" in wanted or "loss_dice" in wanted:
            pred = _require(layer, "pred_masks", name)
            _check_mask_shape(pred, targets.masks.shape, f"{name}['pred_masks']")
            focal, dice = loss_masks(pred, targets.masks, num_boxes, self.focal_alpha, self.focal_gamma)
            out.update({k: v for k, v in (("loss_mask", focal), ("loss_dice", dice)) if k in wanted})
        if "loss_mask_low" in wanted or "loss_dice_low" in wanted:
            pred = _require(layer, "pred_masks_low", name)
            if pred.dim() != 4:
                raise ValueError(f"{name}['pred_masks_low'] must be [B, T, h, w], got {tuple(pred.shape)}")
            gt = low_res_targets(targets.masks, pred.shape[-2:])
            _check_mask_shape(pred, gt.shape, f"{name}['pred_masks_low']")
            focal, dice = loss_masks(pred, gt, num_boxes, self.focal_alpha, self.focal_gamma)
            out.update({k: v for k, v in (("loss_mask_low", focal), ("loss_dice_low", dice)) if k in wanted})
        return out

    def _aux_outputs(self, outputs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        aux = list(outputs.get("aux_outputs") or [])
        if len(aux) != self.num_aux_layers:
            raise ValueError(
                f"outputs carry {len(aux)} auxiliary layer(s) but the criterion expects {self.num_aux_layers} "
                "(num_aux_layers)"
            )
        return aux


def build_criterion(loss: LossConfig, num_decoder_layers: int, check_values: bool = True) -> SetCriterion:
    """The criterion of a config's loss section for a head of `num_decoder_layers` decoder layers: its
    weights and focal parameters, one auxiliary term set per decoder layer but the last when
    `loss.aux_loss` is on."""
    return SetCriterion(weight_dict=layer_weights(loss), focal_alpha=loss.focal_alpha, focal_gamma=loss.focal_gamma,
                        num_aux_layers=num_decoder_layers - 1 if loss.aux_loss else 0, check_values=check_values)


def _matched(pred: torch.Tensor, matched_query: torch.Tensor) -> torch.Tensor:
    """[B,T,Q,...] -> [B,T,...] at each clip's matched query."""
    batch = torch.arange(pred.shape[0], device=pred.device)
    return pred[batch, :, matched_query]


def _require(layer: Mapping[str, Any], key: str, name: str = "outputs") -> torch.Tensor:
    if key not in layer or layer[key] is None:
        raise ValueError(f"{name} lacks '{key}', needed by the loss terms in weight_dict")
    return layer[key]


def _check_layer(layer: Mapping[str, Any], name: str, check_values: bool = True) -> int:
    """Validate pred_logits / matched_query of one layer's outputs; return its number of frames.
    `check_values=False`: shapes and dtypes only (no value read)."""
    logits = _require(layer, "pred_logits", name)
    if logits.dim() != 4 or logits.shape[-1] != 1:
        raise ValueError(f"{name}['pred_logits'] must be [B, T, Q, 1], got {tuple(logits.shape)}")
    boxes = layer.get("pred_boxes")
    if boxes is not None and boxes.shape != (*logits.shape[:3], 4):
        raise ValueError(
            f"{name}['pred_boxes'] must be [B, T, Q, 4] = {(*logits.shape[:3], 4)}, got {tuple(boxes.shape)}"
        )
    _matched_query(layer, name, check_values)
    return int(logits.shape[1])


def _matched_query(layer: Mapping[str, Any], name: str = "outputs", check_values: bool = True) -> torch.Tensor:
    matched = _require(layer, "matched_query", name)
    b, _, q, _ = layer["pred_logits"].shape
    if matched.shape != (b,) or matched.dtype != torch.long:
        raise ValueError(
            f"{name}['matched_query'] must be a LongTensor [B] = [{b}], got {matched.dtype} {tuple(matched.shape)}"
        )
    if check_values and bool(((matched < 0) | (matched >= q)).any()):
        raise ValueError(f"{name}['matched_query'] = {matched.tolist()} is out of range for {q} queries")
    return matched


def _check_mask_shape(pred: torch.Tensor, target_shape: torch.Size, name: str) -> None:
    if tuple(pred.shape) != tuple(target_shape):
        raise ValueError(
            f"{name} has shape {tuple(pred.shape)} but its targets have {tuple(target_shape)} "
            "([B, T, H, W] at the padded input size for pred_masks, stride 2 for pred_masks_low)"
        )
