"""What the VD-IT network returns: typed outputs with one shape per field.

    head = model(frames, texts)              # HeadOutput: every decoder layer's predictions, every query
    out = model.inference_outputs(head)      # InferenceOutput: the best query's refined masks M
    masks = model.all_query_masks(head)      # M for every query [B,T,Q,H,W]

Training matches the layers' predictions to the targets outside the model (`vdit.training`) and refines
the matched query with `VDIT.refine_masks`. Shapes: B clips, T frames the head ran on (all, or the
`valid_indices` frames), Q queries; H, W the padded input size; h2, w2 = H, W / mask_out_stride (the
low-resolution masks M_o); h8, w8 = H, W / 8 (the dynamic mask features); c = dynamic_mask_channels.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LayerPredictions:
    """One decoder layer's predictions for every query.

    pred_logits: [B,T,Q,1] "referred object" class logits.
    pred_boxes:  [B,T,Q,4] boxes, (cx, cy, w, h) normalised to [0, 1].
    masks_low:   [B,T,Q,h2,w2] low-resolution mask logits M_o (pixel-shuffled dynamic features).
    dynamic:     [B,T,Q,c,h8,w8] dynamic mask features, what `VDIT.refine_masks` turns into M.
    """

    pred_logits: torch.Tensor
    pred_boxes: torch.Tensor
    masks_low: torch.Tensor
    dynamic: torch.Tensor


@dataclass
class HeadOutput:
    """The network's forward output.

    layers: one LayerPredictions per decoder layer, in order; the last is the main output, the others
        the auxiliary layers of the training loss.
    levels: the backbone feature levels 4 x [B*T, C_l, h_l, w_l] (strides 4, 8, 16, 32; the frames the
        head ran on), which `VDIT.refine_masks` reads.
    sizes:  [B,2] long, the unpadded (h, w) of each clip.
    """

    layers: list[LayerPredictions]
    levels: list[torch.Tensor]
    sizes: torch.Tensor

    @property
    def last(self) -> LayerPredictions:
        """The main (last) decoder layer."""
        return self.layers[-1]


@dataclass
class InferenceOutput:
    """Inference outputs of the last decoder layer, with M for each clip's best query.

    pred_logits: [B,T,Q,1] class logits.
    pred_boxes:  [B,T,Q,4] boxes, cxcywh normalised.
    scores:      [B,Q] query scores: sigmoid of the logit, mean over frames.
    best_query:  [B] long, the query of highest score per clip.
    pred_masks:  [B,T,H,W] mask logits M of the best query at the padded input size.
    masks_low:   [B,T,Q,h2,w2] low-resolution mask logits M_o of every query.
    sizes:       [B,2] long, the unpadded (h, w) of each clip.
    """

    pred_logits: torch.Tensor
    pred_boxes: torch.Tensor
    scores: torch.Tensor
    best_query: torch.Tensor
    pred_masks: torch.Tensor
    masks_low: torch.Tensor
    sizes: torch.Tensor
