"""Training VD-IT on a ClipBatch (SAM 2's way: the model predicts, training matches and scores).

    wrapper = TrainingWrapper.from_model(model)    # matcher and criterion from model.cfg.loss
    losses = wrapper(batch)                        # SetCriterion's unweighted terms + "loss" (their total)

A step: the model's forward (every decoder layer, every query: `HeadOutput`) -> per layer, the
Hungarian matcher picks each clip's query (on M_o, no gradient) -> `VDIT.refine_masks` refines that
query's mask -> `SetCriterion`. The batch goes to the matcher and the criterion only, never through the
model. The wrapper is one module so that DDP wraps the whole step (the refinement runs inside its
forward).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from vdit.data.types import ClipBatch
from vdit.losses import SetCriterion, VideoHungarianMatcher, build_criterion, build_matcher
from vdit.models.outputs import LayerPredictions
from vdit.models.padding import INPUT_SIZE_DIVISIBILITY, pad_to_divisible, padded_size
from vdit.models.vdit import VDIT


def pad_targets(batch: ClipBatch, divisibility: int = INPUT_SIZE_DIVISIBILITY) -> ClipBatch:
    """The batch with its target masks zero-padded (bottom/right) to the padded size the model's
    outputs have: H, W rounded up to multiples of `divisibility`, as `VDIT.forward` pads the frames.
    The batch itself when nothing is to pad (training batches come padded to 32)."""
    h, w = batch.masks.shape[-2:]
    if padded_size(h, w, divisibility) == (h, w):
        return batch
    # the one padding function (vdit.models.padding), on the masks as one-channel frames [B,T,1,H,W]
    masks, _ = pad_to_divisible(batch.masks.float()[:, :, None], divisibility)
    return dataclasses.replace(batch, masks=masks[:, :, 0])


class TrainingWrapper(nn.Module):
    """model -> matching per layer -> refinement of the matched query -> criterion (module docstring)."""

    def __init__(self, model: VDIT, matcher: VideoHungarianMatcher, criterion: SetCriterion) -> None:
        super().__init__()
        self.model = model
        self.matcher = matcher
        self.criterion = criterion

    @classmethod
    def from_model(cls, model: VDIT, check_values: bool = True) -> "TrainingWrapper":
        """The matcher and the criterion of `model.cfg.loss` (`build_matcher`, `build_criterion`).
        `check_values=False` skips their value checks (host syncs) for callers that checked the
        targets on the host (the trainer: `vdit.engine.trainer.check_targets_on_host`)."""
        loss = model.cfg.loss
        return cls(model, build_matcher(loss, check_values),
                   build_criterion(loss, model.cfg.head.dec_layers, check_values))

    def forward(self, batch: ClipBatch) -> dict[str, torch.Tensor]:
        """The criterion's terms (unweighted, official names) and 'loss', their weighted total."""
        batch = pad_targets(batch)
        return self.criterion(self.matched_outputs(batch), batch)

    def matched_outputs(self, batch: ClipBatch) -> dict[str, Any]:
        """The criterion's input: the last layer's matched outputs (`matched_layer`) with the auxiliary
        layers' under 'aux_outputs' (empty unless `loss.aux_loss`)."""
        batch = pad_targets(batch)
        head = self.model(batch.frames, batch.texts, pad_mask=batch.pad_mask, sizes=batch.sizes,
                          valid_indices=batch.valid_indices)
        layers = head.layers if self.model.cfg.loss.aux_loss else head.layers[-1:]
        outs = [self.matched_layer(layer, head.levels, batch) for layer in layers]
        out = dict(outs[-1])
        out["aux_outputs"] = outs[:-1]
        return out

    def matched_layer(self, layer: LayerPredictions, levels: list[torch.Tensor], batch: ClipBatch
                      ) -> dict[str, torch.Tensor]:
        """One decoder layer matched to the targets of `batch` (masks at the model's padded size):
        pred_logits [B,T,Q,1], pred_boxes [B,T,Q,4], pred_masks [B,T,H,W] (M of the matched query),
        pred_masks_low [B,T,h2,w2] (its M_o), matched_query [B] long."""
        with torch.no_grad():
            matched = self.matcher(layer.pred_logits, layer.pred_boxes, layer.masks_low, batch)
        ar = torch.arange(matched.shape[0], device=matched.device)
        return {
            "pred_logits": layer.pred_logits,
            "pred_boxes": layer.pred_boxes,
            "pred_masks": self.model.refine_masks(layer.dynamic[ar, :, matched], levels),
            "pred_masks_low": layer.masks_low[ar, :, matched],
            "matched_query": matched,
        }
