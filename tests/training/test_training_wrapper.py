"""The training step on a ClipBatch: forward -> matching per layer -> refinement -> criterion."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from _batch_helpers import box_batch
from vdit.config import apply_overrides, tiny_config
from vdit.models.vdit import INPUT_SIZE_DIVISIBILITY, VDIT
from vdit.training import TrainingWrapper, pad_targets


def _model(root, *overrides: str) -> VDIT:
    torch.manual_seed(0)
    return VDIT.from_config(apply_overrides(tiny_config(root), list(overrides))).eval()  # eval: no dropout


def test_pad_targets_pads_the_masks_to_the_models_size():
    batch = box_batch(torch.zeros(1, 2, 3, 70, 90), ["a"])
    padded = pad_targets(batch)
    d = INPUT_SIZE_DIVISIBILITY
    assert padded.masks.shape == (1, 2, 80, 96) and 80 % d == 0 == 96 % d
    assert torch.equal(padded.masks[..., :70, :90], batch.masks) and padded.masks[..., 70:, :].eq(0).all()
    assert padded.frames is batch.frames  # the model pads the frames itself
    assert pad_targets(padded) is padded  # nothing to pad: the batch itself


def test_unpadded_batch_scores_as_the_collated_padded_one(tiny_root):
    """A batch the wrapper pads and the same batch padded beforehand (as collate_clips does) are the
    same step: the targets are padded exactly like the frames."""
    model = _model(tiny_root)
    step = TrainingWrapper.from_model(model)
    batch = box_batch(torch.randn(1, 2, 3, 70, 90, generator=torch.Generator().manual_seed(1)), ["the red circle"])
    padded = dataclasses.replace(batch, frames=F.pad(batch.frames, (0, 6, 0, 10)),
                                 pad_mask=F.pad(batch.pad_mask, (0, 6, 0, 10), value=True),
                                 masks=F.pad(batch.masks, (0, 6, 0, 10)))
    with torch.no_grad():
        torch.manual_seed(5)
        a = step(batch)
        torch.manual_seed(5)
        b = step(padded)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_matched_outputs_per_layer_and_annotated_frames(tiny_root):
    model = _model(tiny_root)
    step = TrainingWrapper.from_model(model)
    b, t, h, w = 2, 3, 64, 96
    batch = dataclasses.replace(box_batch(torch.randn(b, t, 3, h, w), ["a", "b c"]), valid_indices=[[1], [2]])
    with torch.no_grad():
        out = step.matched_outputs(batch)
        head = model(batch.frames, batch.texts, valid_indices=batch.valid_indices)
    layers = out["aux_outputs"] + [out]
    assert len(layers) == model.cfg.head.dec_layers
    for layer, pred in zip(layers, head.layers):
        assert layer["pred_masks"].shape == (b, 1, h, w) and layer["pred_masks_low"].shape == (b, 1, h // 2, w // 2)
        q = layer["matched_query"]
        assert q.shape == (b,) and q.dtype == torch.long
        # the matched query's M_o and its refinement through the model's MSO
        assert torch.equal(layer["pred_masks_low"], pred.masks_low[torch.arange(b), :, q])
        torch.testing.assert_close(layer["pred_masks"],
                                   model.refine_masks(pred.dynamic[torch.arange(b), :, q], head.levels))


def test_aux_loss_off_scores_the_last_layer_only(tiny_root):
    step = TrainingWrapper.from_model(_model(tiny_root, "loss.aux_loss=false"))
    with torch.no_grad():
        losses = step(box_batch(torch.randn(1, 2, 3, 64, 64), ["a"]))
    assert set(losses) == {"loss", "loss_ce", "loss_bbox", "loss_giou", "loss_mask", "loss_dice", "loss_mask_low",
                           "loss_dice_low"}


def test_value_checks_follow_check_values(tiny_root):
    batch = box_batch(torch.randn(1, 2, 3, 64, 64), ["a"])
    batch.valid[:] = False
    with pytest.raises(ValueError, match="no valid frame"), torch.no_grad():
        TrainingWrapper.from_model(_model(tiny_root))(batch)
    step = TrainingWrapper.from_model(_model(tiny_root), check_values=False)
    assert not step.matcher.check_values and not step.criterion.check_values
