"""VideoHungarianMatcher: planted queries are found; costs equal a loop-by-loop brute force."""
import math

import numpy as np
import pytest
import torch

from vdit.errors import ConfigError
from vdit.losses.matcher import VideoHungarianMatcher
from vdit.losses.targets import low_res_targets

from _loss_helpers import make_batch, plant, random_layer


def _sig(x):
    return 1 / (1 + math.exp(-x))


def _brute_force_costs(layer, batch):
    """Each cost of spec 4.3 written as explicit loops over clips, queries, frames and pixels."""
    logits = layer["pred_logits"].double().numpy()
    boxes = layer["pred_boxes"].double().numpy()
    masks = layer["masks_all_low"].double().numpy()
    gt_masks = batch.masks.double().numpy()[:, :, 1::2, 1::2]
    gt_boxes = batch.boxes.double().numpy()
    valid = batch.valid.numpy()
    b, t, q = logits.shape[:3]
    total = np.zeros((b, q))
    for i in range(b):
        for k in range(q):
            cls = []
            for f in range(t):
                if valid[i, f]:
                    p = _sig(logits[i, f, k, 0])
                    pos = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8)
                    neg = 0.75 * p**2 * -math.log(1 - p + 1e-8)
                    cls.append(pos - neg)
            l1, giou = [], []
            for f in range(t):
                pb, tb = boxes[i, f, k], gt_boxes[i, f]
                l1.append(sum(abs(pb[c] - tb[c]) for c in range(4)))
                px = (pb[0] - pb[2] / 2, pb[1] - pb[3] / 2, pb[0] + pb[2] / 2, pb[1] + pb[3] / 2)
                tx = (tb[0] - tb[2] / 2, tb[1] - tb[3] / 2, tb[0] + tb[2] / 2, tb[1] + tb[3] / 2)
                iw = max(0.0, min(px[2], tx[2]) - max(px[0], tx[0]))
                ih = max(0.0, min(px[3], tx[3]) - max(px[1], tx[1]))
                inter = iw * ih
                union = pb[2] * pb[3] + tb[2] * tb[3] - inter
                encl = (max(px[2], tx[2]) - min(px[0], tx[0])) * (max(px[3], tx[3]) - min(px[1], tx[1]))
                giou.append((inter + 1e-6) / (union + 1e-6) - (encl - union + 1e-6) / (encl + 1e-6))
            focal, spg, sp, sg = [], 0.0, 0.0, 0.0
            for f in range(t):
                for y in range(masks.shape[3]):
                    for x in range(masks.shape[4]):
                        p, g = _sig(masks[i, f, k, y, x]), gt_masks[i, f, y, x]
                        focal.append(
                            0.25 * (1 - p) ** 2 * -math.log(p) if g == 1 else 0.75 * p**2 * -math.log(1 - p)
                        )
                        spg, sp, sg = spg + p * g, sp + p, sg + g
            dice = (2 * spg + 1) / (sp + sg + 1)
            total[i, k] = (
                2 * np.mean(cls) + 5 * np.mean(l1) - 2 * np.mean(giou) + 2 * np.mean(focal) - 5 * dice
            )
    return total


def _match(matcher, layer, batch):
    return matcher(layer["pred_logits"], layer["pred_boxes"], layer["masks_all_low"], batch)


def test_planted_query_is_found():
    batch = make_batch(b=2, t=3, seed=1)
    g = torch.Generator().manual_seed(2)
    layer = plant(random_layer(batch, 5, g), batch, [3, 1])
    matched = _match(VideoHungarianMatcher(), layer, batch)
    assert matched.dtype == torch.long and matched.tolist() == [3, 1]


def test_costs_equal_brute_force_and_match_is_argmin():
    batch = make_batch(b=2, t=2, h=8, w=8, seed=3)
    g = torch.Generator().manual_seed(4)
    layer = random_layer(batch, 5, g)
    matcher = VideoHungarianMatcher()
    expected = _brute_force_costs(layer, batch)
    got = matcher.cost_matrix(layer["pred_logits"], layer["pred_boxes"], layer["masks_all_low"], batch)
    assert got.shape == (2, 5)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-4, atol=1e-5)
    assert _match(matcher, layer, batch).tolist() == expected.argmin(axis=1).tolist()


def test_each_cost_weight_changes_the_choice():
    batch = make_batch(b=1, t=2, seed=5, invalid=())
    g = torch.Generator().manual_seed(6)
    layer = random_layer(batch, 2, g)
    # query 0: perfect boxes, terrible masks; query 1: the reverse
    layer["pred_boxes"][0, :, 0] = batch.boxes[0]
    layer["masks_all_low"][0, :, 1] = (batch.masks[0, :, 1::2, 1::2] * 2 - 1) * 8
    layer["masks_all_low"][0, :, 0] = -(batch.masks[0, :, 1::2, 1::2] * 2 - 1) * 8
    layer["pred_logits"].zero_()
    boxes_only = VideoHungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0)
    masks_only = VideoHungarianMatcher(cost_class=0, cost_bbox=0, cost_giou=0)
    assert _match(boxes_only, layer, batch).item() == 0
    assert _match(masks_only, layer, batch).item() == 1


def test_class_cost_ignores_invalid_frames():
    batch = make_batch(b=1, t=3, seed=7, invalid=((0, 1),))
    g = torch.Generator().manual_seed(8)
    layer = random_layer(batch, 4, g)
    matcher = VideoHungarianMatcher()
    args = (layer["pred_boxes"], layer["masks_all_low"], batch)
    before = matcher.costs(layer["pred_logits"], *args)["class"]
    changed = layer["pred_logits"].clone()
    changed[0, 1] = 50.0  # only the invalid frame
    assert torch.allclose(matcher.costs(changed, *args)["class"], before)
    changed[0, 0] = 50.0
    assert not torch.allclose(matcher.costs(changed, *args)["class"], before)


def test_clip_without_valid_frame_raises():
    batch = make_batch(b=2, t=2, seed=9, invalid=((1, 0), (1, 1)))
    layer = random_layer(batch, 3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"clip\(s\) \[1\]"):
        _match(VideoHungarianMatcher(), layer, batch)


def test_single_annotated_frame_with_valid_indices():
    batch = make_batch(b=1, t=5, seed=10, invalid=())
    batch.valid_indices = [[2]]
    g = torch.Generator().manual_seed(11)
    full = random_layer(batch, 5, g)
    one = {k: v[:, 2:3].clone() for k, v in full.items()}
    low = batch.masks[0, 2, 1::2, 1::2]
    one["pred_boxes"][0, 0, 4] = batch.boxes[0, 2]
    one["masks_all_low"][0, 0, 4] = (low * 2 - 1) * 8
    one["pred_logits"][0, 0, 4] = 8.0
    assert _match(VideoHungarianMatcher(), one, batch).tolist() == [4]
    batch.valid_indices = None
    with pytest.raises(ValueError, match="valid_indices"):
        _match(VideoHungarianMatcher(), one, batch)


def test_nan_predictions_still_return_an_index():
    batch = make_batch(b=1, t=2, seed=12)
    layer = random_layer(batch, 3, torch.Generator().manual_seed(0))
    layer["masks_all_low"][0, :, 1] = float("nan")
    assert _match(VideoHungarianMatcher(), layer, batch).tolist()[0] in (0, 2)


def test_low_res_targets_crop_pad_and_mismatch():
    masks = torch.arange(2 * 7 * 7, dtype=torch.float32).reshape(1, 2, 7, 7)
    sub = masks[..., 1::2, 1::2]  # 3 x 3
    assert torch.equal(low_res_targets(masks, (3, 3)), sub)
    padded = low_res_targets(masks, (4, 4))
    assert padded.shape == (1, 2, 4, 4) and torch.equal(padded[..., :3, :3], sub) and padded[..., 3, :].abs().sum() == 0
    assert torch.equal(low_res_targets(masks, (2, 3)), sub[..., :2, :])
    with pytest.raises(ValueError, match="stride 2"):
        low_res_targets(masks, (6, 6))


def test_bad_shapes_and_config():
    batch = make_batch(b=1, t=2, seed=0)
    layer = random_layer(batch, 3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="pred_boxes"):
        VideoHungarianMatcher()(layer["pred_logits"], layer["pred_boxes"][..., :3], layer["masks_all_low"], batch)
    with pytest.raises(ValueError, match="pred_logits"):
        VideoHungarianMatcher()(layer["pred_logits"][..., 0], layer["pred_boxes"], layer["masks_all_low"], batch)
    with pytest.raises(ConfigError):
        VideoHungarianMatcher(0, 0, 0, 0, 0)
