"""Every loss term, the weighted total and the video-level matcher against references restated from
spec sections 4.1-4.4 (and the official box_ops for GIoU) in plain float64 loops over clips, frames,
queries and pixels. Nothing here calls vdit's focal / dice / box helpers.

Shapes: B = 2 clips, T = 3 frames, Q = 5 queries, masks 8 x 12 (M) and 4 x 6 (M_o, stride 2), some
invalid frames (object absent: empty mask, all-zero box).
"""
from __future__ import annotations

import math

import pytest
import torch

from vdit.data.types import ClipBatch
from vdit.losses import SetCriterion, VideoHungarianMatcher

B, T, Q, H, W = 2, 3, 5, 8, 12
ALPHA, GAMMA = 0.25, 2.0  # spec 4.1: focal_alpha 0.25, gamma 2 (hard-coded)
SPEC_LOSS_WEIGHTS = {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_mask": 2.0, "loss_dice": 5.0,
                     "loss_mask_low": 2.0, "loss_dice_low": 5.0}
SPEC_COST_WEIGHTS = {"class": 2.0, "bbox": 5.0, "giou": 2.0, "mask": 2.0, "dice": 5.0}
AUX_SUFFIXES = ("_0", "_1", "_2")  # decoder layers 0-2; the 4th layer gives the unsuffixed terms
TOL = {"rtol": 1e-5, "atol": 1e-5}
BOX_EPS = 1e-6  # official box_ops smoothing (spec 4.4: IoU +1e-6; the GIoU enclosing term likewise)
COST_EPS = 1e-8  # inside the logs of the matcher's class cost (spec 4.3)


# ------------------------------------------------------------------------------------------ scalars

def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _focal(logit: float, target: float) -> float:
    """Sigmoid focal loss of one logit: alpha_t (1 - p_t)^gamma BCE (Lin et al.; spec 4.4)."""
    p = _sig(logit)
    bce = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = ALPHA * target + (1 - ALPHA) * (1 - target)
    return alpha_t * (1 - p_t) ** GAMMA * bce


def _class_cost(logit: float) -> float:
    """Spec 4.3: alpha (1-p)^gamma (-log(p + 1e-8)) - (1-alpha) p^gamma (-log(1-p + 1e-8))."""
    p = _sig(logit)
    return ALPHA * (1 - p) ** GAMMA * -math.log(p + COST_EPS) - (1 - ALPHA) * p**GAMMA * -math.log(1 - p + COST_EPS)


def _xyxy(box) -> tuple[float, float, float, float]:
    cx, cy, w, h = (float(v) for v in box)
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _giou(box_a, box_b) -> float:
    """GIoU of two cxcywh boxes from their corners, with the official +1e-6 smoothing."""
    ax0, ay0, ax1, ay1 = _xyxy(box_a)
    bx0, by0, bx1, by1 = _xyxy(box_b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    enclosing = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    return (inter + BOX_EPS) / (union + BOX_EPS) - (enclosing - union + BOX_EPS) / (enclosing + BOX_EPS)


def _subsample(mask, offset: int = 1):
    """GT mask at M_o's resolution: rows and columns offset, offset + 2, ... (spec 4.3: [1::2, 1::2])."""
    rows, cols = len(mask), len(mask[0])
    return [[mask[offset + 2 * y][offset + 2 * x] for x in range((cols - offset + 1) // 2)]
            for y in range((rows - offset + 1) // 2)]


# ------------------------------------------------------------------------------------------- data

def _batch(invalid: tuple[tuple[int, int], ...], seed: int = 0) -> ClipBatch:
    """Random binary masks and random cxcywh boxes; invalid (clip, frame) pairs are empty / all-zero."""
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand(B, T, H, W, generator=g) < 0.4).float()
    boxes = torch.cat([torch.rand(B, T, 2, generator=g) * 0.4 + 0.3, torch.rand(B, T, 2, generator=g) * 0.4 + 0.1],
                      dim=-1)
    valid = torch.ones(B, T, dtype=torch.bool)
    for b, t in invalid:
        valid[b, t] = False
        masks[b, t] = 0
        boxes[b, t] = 0
    return ClipBatch(frames=torch.zeros(B, T, 3, H, W), pad_mask=torch.zeros(B, T, H, W, dtype=torch.bool),
                     masks=masks, boxes=boxes, valid=valid, sizes=torch.tensor([[H, W]] * B),
                     orig_sizes=torch.tensor([[H, W]] * B), texts=["x"] * B)


def _random_boxes(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.cat([torch.rand(*shape, 2, generator=g) * 0.5 + 0.25, torch.rand(*shape, 2, generator=g) * 0.4 + 0.05],
                     dim=-1)


def _layer(g: torch.Generator, matched: list[int]) -> dict:
    """One decoder layer's outputs as the model hands them to the criterion: all queries' logits and
    boxes, M [B,T,H,W] and M_o [B,T,H/2,W/2] of the layer's own matched query."""
    return {
        "pred_logits": torch.randn(B, T, Q, 1, generator=g) * 1.5,
        "pred_boxes": _random_boxes(g, B, T, Q),
        "pred_masks": torch.randn(B, T, H, W, generator=g) * 2,
        "pred_masks_low": torch.randn(B, T, H // 2, W // 2, generator=g) * 2,
        "matched_query": torch.tensor(matched),
    }


# ------------------------------------------------------------------------ reference loss (spec 4.4)

def _ref_mask_terms(pred, gt, num_boxes: float) -> tuple[float, float]:
    """(focal, dice) losses: per clip over the T x h x w volume, summed over clips, / num_boxes."""
    focal_sum, dice_sum = 0.0, 0.0
    for b in range(len(pred)):
        values, spg, sp, sg = [], 0.0, 0.0, 0.0
        for t in range(len(pred[b])):
            for y in range(len(pred[b][t])):
                for x in range(len(pred[b][t][y])):
                    logit, g = pred[b][t][y][x], gt[b][t][y][x]
                    values.append(_focal(logit, g))
                    p = _sig(logit)
                    spg, sp, sg = spg + p * g, sp + p, sg + g
        focal_sum += sum(values) / len(values)
        dice_sum += 1 - (2 * spg + 1) / (sp + sg + 1)
    return focal_sum / num_boxes, dice_sum / num_boxes


def _ref_layer_terms(layer: dict, batch: ClipBatch, offset: int = 1, box_frames: str = "all",
                     ce_positive_on_invalid: bool = False) -> dict[str, float]:
    """The seven unweighted terms of one layer. The keyword arguments switch to WRONG conventions, used
    only to show that the test data tells them apart from the spec's."""
    logits = layer["pred_logits"].double().tolist()
    boxes = layer["pred_boxes"].double().tolist()
    matched = layer["matched_query"].tolist()
    valid = batch.valid.tolist()
    gt_boxes = batch.boxes.double().tolist()
    gt_masks = batch.masks.double().tolist()
    num_boxes = float(sum(sum(1 for v in clip if v) for clip in valid))  # spec 4.2: valid frames

    # loss_ce: logits flattened to [B, T*Q]; focal mean over T*Q per clip, summed over clips,
    # / num_boxes, * T*Q. Target 1 only at (valid frame, matched query).
    ce = 0.0
    for b in range(B):
        per_clip = []
        for t in range(T):
            for q in range(Q):
                positive = q == matched[b] and (valid[b][t] or ce_positive_on_invalid)
                per_clip.append(_focal(logits[b][t][q][0], 1.0 if positive else 0.0))
        ce += sum(per_clip) / len(per_clip)
    ce = ce / num_boxes * (T * Q)

    # loss_bbox / loss_giou: the matched query over ALL T frames (zero target boxes on invalid ones)
    l1, giou = 0.0, 0.0
    for b in range(B):
        for t in range(T):
            if box_frames == "valid" and not valid[b][t]:
                continue
            pred, tgt = boxes[b][t][matched[b]], gt_boxes[b][t]
            l1 += sum(abs(pred[c] - tgt[c]) for c in range(4))
            giou += 1 - _giou(pred, tgt)

    mask, dice = _ref_mask_terms(layer["pred_masks"].double().tolist(), gt_masks, num_boxes)
    gt_low = [[_subsample(gt_masks[b][t], offset) for t in range(T)] for b in range(B)]
    mask_low, dice_low = _ref_mask_terms(layer["pred_masks_low"].double().tolist(), gt_low, num_boxes)
    return {"loss_ce": ce, "loss_bbox": l1 / num_boxes, "loss_giou": giou / num_boxes, "loss_mask": mask,
            "loss_dice": dice, "loss_mask_low": mask_low, "loss_dice_low": dice_low}


def _outputs(seed: int) -> tuple[dict, list[dict]]:
    """Main-layer outputs with 3 auxiliary layers, each with its own matched query."""
    g = torch.Generator().manual_seed(seed)
    layers = [_layer(g, m) for m in ([1, 3], [4, 0], [2, 2], [0, 4])]  # decoder layers 0, 1, 2, 3
    for layer in layers:  # the matched query leans positive on every frame, invalid ones included
        for b, q in enumerate(layer["matched_query"].tolist()):
            layer["pred_logits"][b, :, q, 0] += 2.0
    main = dict(layers[3])
    main["aux_outputs"] = layers[:3]
    return main, layers


@pytest.mark.parametrize("invalid", [((0, 1), (1, 0), (1, 2)), ((1, 1),), ()])
def test_every_term_and_the_weighted_total_match_the_spec(invalid):
    batch = _batch(invalid, seed=1)
    outputs, layers = _outputs(seed=2)
    criterion = SetCriterion()  # the spec's defaults: weights 2/5/2/2/5/2/5, 3 auxiliary layers
    losses = criterion(outputs, batch)

    expected, total = {}, 0.0
    for suffix, layer in zip(AUX_SUFFIXES + ("",), layers):
        for name, value in _ref_layer_terms(layer, batch).items():
            expected[name + suffix] = value
            total += SPEC_LOSS_WEIGHTS[name] * value  # spec 4.1: sum over 4 layers x 7 terms x weight
    assert set(losses) == set(expected) | {"loss"}
    for name, value in expected.items():
        torch.testing.assert_close(losses[name].double(), torch.tensor(value, dtype=torch.float64), **TOL,
                                   msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(losses["loss"].double(), torch.tensor(total, dtype=torch.float64), **TOL)
    assert criterion.weight_dict == {name + s: w for s in ("",) + AUX_SUFFIXES for name, w in SPEC_LOSS_WEIGHTS.items()}


def test_the_data_tells_the_conventions_apart():
    """Guard on the test data: the wrong conventions give values far from the spec's, so the comparison
    above would catch them (GT subsampled at offset 0, boxes over valid frames only, the matched query
    positive on invalid frames)."""
    batch = _batch(((0, 1), (1, 0), (1, 2)), seed=1)
    _, layers = _outputs(seed=2)
    spec = _ref_layer_terms(layers[3], batch)
    offset0 = _ref_layer_terms(layers[3], batch, offset=0)
    valid_boxes = _ref_layer_terms(layers[3], batch, box_frames="valid")
    ce_invalid = _ref_layer_terms(layers[3], batch, ce_positive_on_invalid=True)
    assert abs(spec["loss_mask_low"] - offset0["loss_mask_low"]) > 1e-2
    assert abs(spec["loss_dice_low"] - offset0["loss_dice_low"]) > 1e-2
    assert abs(spec["loss_bbox"] - valid_boxes["loss_bbox"]) > 1e-2
    assert abs(spec["loss_giou"] - valid_boxes["loss_giou"]) > 1e-2
    assert abs(spec["loss_ce"] - ce_invalid["loss_ce"]) > 1e-2


# ------------------------------------------------------------------------ reference matcher (spec 4.3)

def _ref_costs(logits: torch.Tensor, boxes: torch.Tensor, masks_low: torch.Tensor, batch: ClipBatch,
               offset: int = 1, class_frames: str = "valid", box_frames: str = "all") -> list[list[dict]]:
    """Per clip and query: the five unweighted costs and C (spec 4.3). The keyword arguments switch to
    WRONG conventions, used only to show that a case is decided by the convention under test."""
    logits_l, boxes_l, masks_l = logits.double().tolist(), boxes.double().tolist(), masks_low.double().tolist()
    valid, gt_boxes, gt_masks = batch.valid.tolist(), batch.boxes.double().tolist(), batch.masks.double().tolist()
    n_clips, n_frames, n_queries = len(logits_l), len(logits_l[0]), len(logits_l[0][0])
    out = []
    for b in range(n_clips):
        gt_low = [_subsample(gt_masks[b][t], offset) for t in range(n_frames)]
        clip = []
        for q in range(n_queries):
            class_frames_b = [t for t in range(n_frames) if valid[b][t] or class_frames == "all"]
            box_frames_b = [t for t in range(n_frames) if valid[b][t] or box_frames == "all"]
            cls = sum(_class_cost(logits_l[b][t][q][0]) for t in class_frames_b) / len(class_frames_b)
            l1 = sum(sum(abs(boxes_l[b][t][q][c] - gt_boxes[b][t][c]) for c in range(4))
                     for t in box_frames_b) / len(box_frames_b)
            giou = -sum(_giou(boxes_l[b][t][q], gt_boxes[b][t]) for t in box_frames_b) / len(box_frames_b)
            focal, spg, sp, sg = [], 0.0, 0.0, 0.0
            for t in range(n_frames):
                for y in range(len(gt_low[t])):
                    for x in range(len(gt_low[t][0])):
                        logit, g = masks_l[b][t][q][y][x], gt_low[t][y][x]
                        focal.append(_focal(logit, g))
                        p = _sig(logit)
                        spg, sp, sg = spg + p * g, sp + p, sg + g
            costs = {"class": cls, "bbox": l1, "giou": giou, "mask": sum(focal) / len(focal),
                     "dice": -(2 * spg + 1) / (sp + sg + 1)}
            costs["C"] = sum(SPEC_COST_WEIGHTS[k] * v for k, v in costs.items())
            clip.append(costs)
        out.append(clip)
    return out


def _argmin(clip_costs: list[dict], key: str = "C") -> int:
    values = [c[key] for c in clip_costs]
    return values.index(min(values))


def _assert_costs_match(matcher: VideoHungarianMatcher, logits, boxes, masks, batch, ref) -> None:
    costs = matcher.costs(logits, boxes, masks, batch)
    for key in SPEC_COST_WEIGHTS:
        expected = torch.tensor([[c[key] for c in clip] for clip in ref], dtype=torch.float64)
        torch.testing.assert_close(costs[key].double(), expected, **TOL, msg=lambda m, key=key: f"{key}: {m}")
    expected_c = torch.tensor([[c["C"] for c in clip] for clip in ref], dtype=torch.float64)
    torch.testing.assert_close(matcher.cost_matrix(logits, boxes, masks, batch).double(), expected_c, **TOL)


def _random_predictions(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, Q, 1, generator=g) * 1.5, _random_boxes(g, B, T, Q),
            torch.randn(B, T, Q, H // 2, W // 2, generator=g) * 2)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_matcher_costs_and_argmin_on_random_queries(seed):
    batch = _batch(((0, 1), (1, 0)), seed=seed)
    logits, boxes, masks = _random_predictions(seed + 10)
    matcher = VideoHungarianMatcher()
    ref = _ref_costs(logits, boxes, masks, batch)
    _assert_costs_match(matcher, logits, boxes, masks, batch, ref)
    for clip in ref:  # no near-tie, so the argmin is well defined at float32 precision
        c = sorted(q["C"] for q in clip)
        assert c[1] - c[0] > 1e-3
    assert matcher(logits, boxes, masks, batch).tolist() == [_argmin(clip) for clip in ref]


def test_class_decides_on_valid_frames_and_mask_decides_at_offset_1():
    """Clip 0: every query has the same boxes and masks, so the class cost alone decides; query 2 is the
    most confident on the valid frames, query 4 only when the invalid frame 1 is counted too.
    Clip 1: same logits and boxes for every query, so the mask costs decide; query 1 predicts the GT
    subsampled at [1::2, 1::2] (the spec), query 3 the GT at [0::2, 0::2]."""
    batch = _batch(((0, 1),), seed=6)
    logits, boxes, masks = _random_predictions(7)
    boxes[0] = boxes[0, :, :1].clone()
    masks[0] = masks[0, :, :1].clone()
    logits[0] = 0.0
    logits[0, [0, 2], 2, 0] = 3.0
    logits[0, 1, 2, 0] = -6.0
    logits[0, [0, 2], 4, 0] = 2.5
    logits[0, 1, 4, 0] = 6.0
    logits[1] = logits[1, :, :1].clone()
    boxes[1] = boxes[1, :, :1].clone()
    gt = batch.masks[1]
    masks[1, :, 1] = (gt[:, 1::2, 1::2] * 2 - 1) * 3
    masks[1, :, 3] = (gt[:, 0::2, 0::2] * 2 - 1) * 3

    ref = _ref_costs(logits, boxes, masks, batch)
    assert [_argmin(clip) for clip in ref] == [2, 1]
    assert _argmin(_ref_costs(logits, boxes, masks, batch, class_frames="all")[0]) == 4
    assert _argmin(_ref_costs(logits, boxes, masks, batch, offset=0)[1]) == 3
    matcher = VideoHungarianMatcher()
    _assert_costs_match(matcher, logits, boxes, masks, batch, ref)
    assert matcher(logits, boxes, masks, batch).tolist() == [2, 1]
    # clips are matched independently: each clip alone gets the same query
    for b in range(B):
        single = ClipBatch(**{k: v[b : b + 1] for k, v in batch.__dict__.items() if k not in ("valid_indices", "meta")})
        assert matcher(logits[b : b + 1], boxes[b : b + 1], masks[b : b + 1], single).tolist() == [[2, 1][b]]


def test_class_against_mask_weighted_as_the_spec_says():
    """Query 0 is confidently the referred class with a poor mask; query 3 has a near-perfect mask with
    an undecided class logit; the others are poor on both. With C = 2 class + ... + 2 focal + 5 (-dice)
    the mask wins; with the class weight raised to 20 the class wins."""
    batch = _batch(((1, 2),), seed=8)
    logits, boxes, masks = _random_predictions(9)
    boxes[:] = boxes[:, :, :1].clone()  # equal boxes: class vs mask only
    logits[:] = -2.0
    logits[:, :, 0] = 2.0
    logits[:, :, 3] = 0.0
    gt_low = batch.masks[:, :, 1::2, 1::2]
    masks[:, :, 3] = (gt_low * 2 - 1) * 4
    masks[:, :, 0] = -(gt_low * 2 - 1) * 0.5 + masks[:, :, 0] * 0.1  # leaning the wrong way

    ref = _ref_costs(logits, boxes, masks, batch)
    for clip in ref:
        assert _argmin(clip, "class") == 0 and _argmin(clip, "dice") == 3 and _argmin(clip, "mask") == 3
    assert [_argmin(clip) for clip in ref] == [3, 3]
    matcher = VideoHungarianMatcher()
    _assert_costs_match(matcher, logits, boxes, masks, batch, ref)
    assert matcher(logits, boxes, masks, batch).tolist() == [3, 3]

    heavy = VideoHungarianMatcher(cost_class=20.0)
    weighted = [[20.0 * q["class"] + q["C"] - SPEC_COST_WEIGHTS["class"] * q["class"] for q in clip] for clip in ref]
    assert [w.index(min(w)) for w in weighted] == [0, 0]
    assert heavy(logits, boxes, masks, batch).tolist() == [0, 0]


def test_boxes_decide_with_the_invalid_frame_counted():
    """Same logits and masks for every query. On the valid frames query 0 predicts the GT boxes exactly
    and query 3 is slightly off; on the invalid frame (all-zero target) query 0 predicts a large box and
    query 3 a tiny one at the origin. Averaged over all T frames (spec 4.3) query 3 wins; over the valid
    frames only query 0 would."""
    batch = _batch(((0, 1), (1, 1)), seed=10)
    logits, boxes, masks = _random_predictions(11)
    logits[:] = logits[:, :, :1].clone()
    masks[:] = masks[:, :, :1].clone()
    boxes[:, :, 0] = batch.boxes
    boxes[:, :, 3] = batch.boxes + torch.tensor([0.02, -0.02, 0.01, 0.01])
    boxes[:, 1, 0] = torch.tensor([0.5, 0.5, 0.6, 0.6])
    boxes[:, 1, 3] = torch.tensor([0.01, 0.01, 0.02, 0.02])

    ref = _ref_costs(logits, boxes, masks, batch)
    assert [_argmin(clip) for clip in ref] == [3, 3]
    assert [_argmin(clip) for clip in _ref_costs(logits, boxes, masks, batch, box_frames="valid")] == [0, 0]
    matcher = VideoHungarianMatcher()
    _assert_costs_match(matcher, logits, boxes, masks, batch, ref)
    assert matcher(logits, boxes, masks, batch).tolist() == [3, 3]


def test_matcher_gt_subsampling_is_offset_1_stride_2():
    """Spec 4.3: GT masks go to M_o's resolution as [:, :, 1::2, 1::2]. A GT whose only foreground
    pixels are at odd rows and columns is fully seen; one at even rows and columns is invisible."""
    batch = _batch((), seed=12)
    batch.masks.zero_()
    batch.masks[:, :, 1::2, 1::2] = 1.0  # visible at offset 1
    logits, boxes, masks = _random_predictions(13)
    matcher = VideoHungarianMatcher()
    ref = _ref_costs(logits, boxes, masks, batch)
    _assert_costs_match(matcher, logits, boxes, masks, batch, ref)
    # an all-foreground low-res target: dice = (2 sum p + 1) / (sum p + h*w*T + 1) per query
    for b in range(B):
        for q in range(Q):
            sp = sum(_sig(v) for v in masks[b, :, q].double().flatten().tolist())
            n = T * (H // 2) * (W // 2)
            assert ref[b][q]["dice"] == pytest.approx(-(2 * sp + 1) / (sp + n + 1), rel=1e-12)
    batch.masks.zero_()
    batch.masks[:, :, 0::2, 0::2] = 1.0  # invisible at offset 1: the target is empty
    costs = matcher.costs(logits, boxes, masks, batch)
    n = T * (H // 2) * (W // 2)
    focal = [[sum(_focal(v, 0.0) for v in masks[b, :, q].double().flatten().tolist()) / n for q in range(Q)]
             for b in range(B)]
    dice = [[-1.0 / (sum(_sig(v) for v in masks[b, :, q].double().flatten().tolist()) + 1) for q in range(Q)]
            for b in range(B)]
    torch.testing.assert_close(costs["mask"].double(), torch.tensor(focal, dtype=torch.float64), **TOL)
    torch.testing.assert_close(costs["dice"].double(), torch.tensor(dice, dtype=torch.float64), **TOL)
