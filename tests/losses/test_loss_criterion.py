"""SetCriterion: hand-computed terms, perfect vs random, invalid frames, normalisation, gradients."""
import math

import pytest
import torch

from vdit.config import LossConfig
from vdit.data.types import ClipBatch
from vdit.errors import ConfigError
from vdit.losses import (LOSS_TERMS, SetCriterion, VideoHungarianMatcher, build_criterion, build_matcher,
                         layer_weights, num_valid_frames)

from _loss_helpers import CONFIDENT, logits_from_mask, make_batch, plant, random_layer

MATCHER = VideoHungarianMatcher()


def _sig(x):
    return 1 / (1 + math.exp(-x))


def _focal(x, t):
    p = _sig(x)
    return 0.25 * (1 - p) ** 2 * -math.log(p) if t == 1 else 0.75 * p**2 * -math.log(1 - p)


def _full_outputs(batch: ClipBatch, layer: dict, matched: torch.Tensor) -> dict:
    """One layer's output dict as the model builds it: M from the matched query's M_o, upsampled."""
    idx = torch.arange(matched.shape[0])
    low = layer["masks_all_low"][idx, :, matched]  # [B,T,h,w]
    full = low.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return {
        "pred_logits": layer["pred_logits"],
        "pred_boxes": layer["pred_boxes"],
        "pred_masks": full,
        "pred_masks_low": low,
        "matched_query": matched,
    }


def _model_outputs(batch, layers, matcher):
    outs = []
    for layer in layers:
        m = matcher(layer["pred_logits"], layer["pred_boxes"], layer["masks_all_low"], batch)
        outs.append(_full_outputs(batch, layer, m))
    main = dict(outs[-1])
    main["aux_outputs"] = outs[:-1]
    return main


def _tiny_case():
    """B=1, T=2, Q=2, 2x2 input (M_o 1x1); frame 1 invalid; query 1 matched."""
    masks = torch.zeros(1, 2, 2, 2)
    masks[0, 0, 1, 1] = 1  # the pixel that [1::2, 1::2] keeps
    batch = ClipBatch(
        frames=torch.zeros(1, 2, 3, 2, 2),
        pad_mask=torch.zeros(1, 2, 2, 2, dtype=torch.bool),
        masks=masks,
        boxes=torch.tensor([[[0.5, 0.5, 0.4, 0.4], [0.0, 0.0, 0.0, 0.0]]]),
        valid=torch.tensor([[True, False]]),
        sizes=torch.tensor([[2, 2]]),
        orig_sizes=torch.tensor([[2, 2]]),
        texts=["x"],
    )
    outputs = {
        "pred_logits": torch.tensor([[[[0.5], [1.0]], [[-1.0], [2.0]]]]),  # [1,2,2,1]: (frame, query)
        "pred_boxes": torch.tensor([[[[0.1, 0.1, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2]], [[0.1] * 4, [0.5, 0.5, 0.2, 0.2]]]]),
        "pred_masks": torch.zeros(1, 2, 2, 2),
        "pred_masks_low": torch.tensor([2.0, -1.0]).reshape(1, 2, 1, 1),
        "matched_query": torch.tensor([1]),
        "aux_outputs": [],
    }
    return batch, outputs


def test_tiny_case_every_term_matches_hand_computation():
    batch, outputs = _tiny_case()
    losses = SetCriterion(num_aux_layers=0)(outputs, batch)
    num_boxes = 1.0  # one valid frame
    # class: positive only at (frame 0, query 1); the matched query on the invalid frame is a negative
    ce = (_focal(0.5, 0) + _focal(1.0, 1) + _focal(-1.0, 0) + _focal(2.0, 0)) / num_boxes
    # boxes: frame 0 pred (.4,.4,.6,.6) inside target (.3,.3,.7,.7): L1 .2+.2, GIoU = .04/.16 = .25
    # frame 1 vs zero target: L1 .5+.5+.2+.2, GIoU = ~0 - (.36 - .04)/.36
    l1 = 0.4 + 1.4
    giou = (1 - 0.25) + (1 - (0.0 - 0.32 / 0.36))
    # M: logits 0 -> p = 0.5 over 8 pixels, 1 positive; dice (2*.5+1)/(4+1+1)
    mask = (_focal(0.0, 1) + 7 * _focal(0.0, 0)) / 8
    dice = 1 - 2.0 / 6.0
    # M_o: 1x1 per frame, targets [1, 0]
    mask_low = (_focal(2.0, 1) + _focal(-1.0, 0)) / 2
    dice_low = 1 - (2 * _sig(2.0) + 1) / (_sig(2.0) + _sig(-1.0) + 1 + 1)
    # the terms come back unweighted (official convention); "loss" is their weighted sum (spec 4.1)
    expected = {
        "loss_ce": ce,
        "loss_bbox": l1,
        "loss_giou": giou,
        "loss_mask": mask,
        "loss_dice": dice,
        "loss_mask_low": mask_low,
        "loss_dice_low": dice_low,
    }
    weights = {"loss_ce": 2, "loss_bbox": 5, "loss_giou": 2, "loss_mask": 2, "loss_dice": 5, "loss_mask_low": 2,
               "loss_dice_low": 5}
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value, rel=1e-4), name
    total = sum(weights[k] * v for k, v in expected.items())
    assert losses["loss"].item() == pytest.approx(total, rel=1e-4)
    assert set(losses) == set(expected) | {"loss"}


def test_perfect_prediction_has_much_lower_loss_than_random():
    batch = make_batch(b=2, t=3, seed=0)
    crit = SetCriterion()
    g = torch.Generator().manual_seed(1)
    random_layers = [random_layer(batch, 5, g) for _ in range(4)]
    perfect_layers = [plant(random_layer(batch, 5, g), batch, [2, 4]) for _ in range(4)]
    for layer in perfect_layers:  # non-matched queries confidently negative
        for i, q in enumerate([2, 4]):
            others = [k for k in range(5) if k != q]
            layer["pred_logits"][i, :, others] = -CONFIDENT
    rand = crit(_model_outputs(batch, random_layers, MATCHER), batch)
    perf_out = _model_outputs(batch, perfect_layers, MATCHER)
    assert perf_out["matched_query"].tolist() == [2, 4]
    # M at full resolution must be perfect too, not only the 2x-upsampled M_o
    perf_out["pred_masks"] = logits_from_mask(batch.masks)
    for aux in perf_out["aux_outputs"]:
        aux["pred_masks"] = logits_from_mask(batch.masks)
    perf = crit(perf_out, batch)
    assert len(perf) == 4 * 7 + 1
    assert perf["loss"].item() < 0.05 * rand["loss"].item()
    for name in LOSS_TERMS:
        assert perf[name].item() < rand[name].item(), name
    # official quirk kept (spec 11.11): a zero box on the invalid frame still scores GIoU 0 against the
    # zero target, i.e. 1 - GIoU = 1 for that frame: 1 frame / 5 valid frames per layer (unweighted)
    giou_terms = [k for k in perf if k.startswith("loss_giou")]
    assert all(perf[k].item() == pytest.approx(0.2, rel=1e-4) for k in giou_terms)
    rest = perf["loss"].item() - sum(crit.weight_dict[k] * perf[k].item() for k in giou_terms)
    assert rest < 0.002 * rand["loss"].item()


def test_invalid_frame_of_matched_query_is_a_negative():
    batch, outputs = _tiny_case()
    crit = SetCriterion(weight_dict={"loss_ce": 1.0}, num_aux_layers=0)
    base = crit(outputs, batch)["loss_ce"].item()
    confident_on_invalid = {**outputs, "pred_logits": outputs["pred_logits"].clone()}
    confident_on_invalid["pred_logits"][0, 1, 1, 0] = 10.0  # matched query, invalid frame
    assert crit(confident_on_invalid, batch)["loss_ce"].item() > base + 1.0


def test_zero_target_boxes_enter_l1():
    batch, outputs = _tiny_case()
    crit = SetCriterion(weight_dict={"loss_bbox": 1.0}, num_aux_layers=0)
    moved = {**outputs, "pred_boxes": outputs["pred_boxes"].clone()}
    moved["pred_boxes"][0, 1, 1] = 0.0  # invalid frame's prediction now equals its zero target
    assert crit(moved, batch)["loss_bbox"].item() == pytest.approx(0.4, rel=1e-5)


def test_duplicating_the_batch_keeps_the_loss():
    batch = make_batch(b=1, t=3, seed=2)
    crit = SetCriterion()
    g = torch.Generator().manual_seed(3)
    layers = [random_layer(batch, 5, g) for _ in range(4)]
    single = crit(_model_outputs(batch, layers, MATCHER), batch)
    doubled_batch = make_batch(b=1, t=3, seed=2)
    for name in ("masks", "boxes", "valid", "frames", "pad_mask", "sizes", "orig_sizes"):
        value = getattr(doubled_batch, name)
        setattr(doubled_batch, name, torch.cat([value, value]))
    doubled_layers = [{k: torch.cat([v, v]) for k, v in layer.items()} for layer in layers]
    doubled = crit(_model_outputs(doubled_batch, doubled_layers, MATCHER), doubled_batch)
    for name, value in single.items():
        assert doubled[name].item() == pytest.approx(value.item(), rel=1e-5), name


def test_gradients_reach_every_prediction():
    batch = make_batch(b=2, t=2, seed=4)
    crit = SetCriterion()
    g = torch.Generator().manual_seed(5)
    outputs = _model_outputs(batch, [random_layer(batch, 3, g) for _ in range(4)], MATCHER)
    leaves = []
    for layer in [outputs] + outputs["aux_outputs"]:
        for key in ("pred_logits", "pred_boxes", "pred_masks", "pred_masks_low"):
            layer[key] = layer[key].detach().clone().requires_grad_(True)
            leaves.append(layer[key])
    crit(outputs, batch)["loss"].backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0


def test_single_annotated_frame_batches():
    """A2D/JHMDB: predictions for T=1, the batch keeps the window and names the frame."""
    batch = make_batch(b=2, t=5, seed=6, invalid=())
    batch.valid_indices = [[2], [4]]
    crit = SetCriterion()
    g = torch.Generator().manual_seed(7)
    layers = [random_layer(batch, 5, g) for _ in range(4)]
    one_frame = [{k: torch.stack([v[0, 2:3], v[1, 4:5]]) for k, v in layer.items()} for layer in layers]
    losses = crit(_model_outputs(batch, one_frame, MATCHER), batch)
    sliced = make_batch(b=2, t=5, seed=6, invalid=())
    for name in ("masks", "boxes", "valid"):
        value = getattr(sliced, name)
        setattr(sliced, name, torch.stack([value[0, 2:3], value[1, 4:5]]))
    reference = crit(_model_outputs(sliced, one_frame, MATCHER), sliced)
    assert losses["loss"].item() == pytest.approx(reference["loss"].item(), rel=1e-6)
    assert torch.isfinite(losses["loss"])


def test_num_valid_frames():
    assert num_valid_frames(torch.tensor([[True, False, True], [True, False, False]])) == 3.0
    assert num_valid_frames(torch.zeros(2, 3, dtype=torch.bool)) == 1.0


def test_num_valid_frames_averages_over_ranks(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t.add_(5.0))  # other rank: 5 frames
    assert num_valid_frames(torch.ones(1, 3, dtype=torch.bool)) == 4.0


def test_errors():
    batch, outputs = _tiny_case()
    with pytest.raises(ValueError, match="auxiliary"):
        SetCriterion()(outputs, batch)
    no_valid = ClipBatch(**{**batch.__dict__, "valid": torch.zeros(1, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="no valid frame"):
        SetCriterion(num_aux_layers=0)(outputs, no_valid)
    with pytest.raises(ValueError, match="out of range"):
        SetCriterion(num_aux_layers=0)({**outputs, "matched_query": torch.tensor([2])}, batch)
    with pytest.raises(ValueError, match="pred_masks"):
        SetCriterion(num_aux_layers=0)({**outputs, "pred_masks": torch.zeros(1, 2, 4, 4)}, batch)
    with pytest.raises(ConfigError, match="loss_foo"):
        SetCriterion(weight_dict={"loss_foo": 1.0})


def test_weight_dict_expansion():
    crit = SetCriterion(weight_dict={"loss_ce": 1.0, "loss_dice": 3.0}, num_aux_layers=2)
    assert crit.weight_dict == {"loss_ce": 1.0, "loss_dice": 3.0, "loss_ce_0": 1.0, "loss_dice_0": 3.0,
                                "loss_ce_1": 1.0, "loss_dice_1": 3.0}
    batch, outputs = _tiny_case()
    losses = SetCriterion(weight_dict={"loss_dice_low": 1.0}, num_aux_layers=0)({**outputs, "pred_masks": None}, batch)
    assert set(losses) == {"loss_dice_low", "loss"}


def test_criterion_and_matcher_numbers_come_from_the_loss_config():
    lo = LossConfig(cls=1.0, dice=3.0, focal_alpha=0.5, cost_giou=7.0)
    crit = build_criterion(lo, num_decoder_layers=3)
    assert crit.layer_weights == layer_weights(lo)
    assert (crit.layer_weights["loss_ce"], crit.layer_weights["loss_dice_low"]) == (1.0, 3.0)
    assert crit.num_aux_layers == 2 and crit.focal_alpha == 0.5
    assert build_criterion(LossConfig(aux_loss=False), num_decoder_layers=4).num_aux_layers == 0
    matcher = build_matcher(lo)
    assert matcher.cost_weights["giou"] == 7.0 and matcher.focal_alpha == 0.5
    # the classes' defaults are LossConfig's defaults, the spec's numbers (4.1)
    assert SetCriterion().layer_weights == layer_weights(LossConfig()) == {
        "loss_ce": 2, "loss_bbox": 5, "loss_giou": 2, "loss_mask": 2, "loss_dice": 5, "loss_mask_low": 2,
        "loss_dice_low": 5}
    assert VideoHungarianMatcher().cost_weights == build_matcher(LossConfig()).cost_weights == {
        "class": 2, "bbox": 5, "giou": 2, "mask": 2, "dice": 5}
