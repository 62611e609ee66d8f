"""Matching and loss without host syncs (issue 17) give what the host-side versions gave.

- The matcher's assignment now runs on the device (`assign_single_target`). Reference: scipy's
  linear_sum_assignment on each clip's [Q, 1] cost matrix, non-finite costs replaced by the largest
  float64 (what the matcher did before, restated here), on random costs, ties, NaN and +-inf.
- The loss normaliser is a 0-dim device tensor now. Reference: the same terms divided by the
  normaliser as a Python float (valid frames counted in Python, spec 4.2): bit-identical on CPU.
- `check_values=False` (the trainer's setting) skips value checks only: same choice, same losses.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from vdit.data.types import ClipSample, collate_clips
from vdit.losses import SetCriterion, VideoHungarianMatcher, loss_boxes, loss_labels, loss_masks, num_valid_frames
from vdit.losses.matcher import assign_single_target
from vdit.losses.targets import low_res_targets


def _scipy_choice(cost_row: np.ndarray) -> int:
    """The matcher's former host path: float64, non-finite -> float64 max, Hungarian on [Q, 1]."""
    cost = np.where(np.isfinite(cost_row), cost_row, np.finfo(np.float64).max).astype(np.float64)
    rows, _ = linear_sum_assignment(cost.reshape(-1, 1))
    return int(rows[0])


def _hard_costs() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    cost = torch.randn(40, 5, generator=g)
    cost[0] = torch.tensor([1.0, 0.5, 0.5, 2.0, 0.5])  # ties: the first minimum
    cost[1] = torch.tensor([float("nan"), 3.0, float("-inf"), 3.0, 4.0])  # non-finite rank last
    cost[2] = float("nan")  # nothing finite: query 0
    cost[3] = torch.tensor([float("inf"), float("inf"), 7.0, float("nan"), 7.0])
    cost[4] = torch.tensor([-1e30, float("-inf"), -1e30, 0.0, 1.0])
    cost[5:10] = cost[5:10].round()  # many ties among small integers
    return cost


def test_assignment_equals_scipy_hungarian():
    cost = _hard_costs()
    expected = [_scipy_choice(row) for row in cost.double().numpy()]
    got = assign_single_target(cost)
    assert got.dtype == torch.long and got.shape == (cost.shape[0],)
    assert got.tolist() == expected


def _case(seed: int, invalid=((0, 1),)):
    g = torch.Generator().manual_seed(seed)
    b, t, q, h, w = 3, 4, 5, 16, 24
    samples = []
    for i in range(b):
        masks = (torch.rand(t, h, w, generator=g) < 0.3).float()
        boxes = torch.cat([torch.rand(t, 2, generator=g) * 0.4 + 0.3, torch.rand(t, 2, generator=g) * 0.3 + 0.1], -1)
        valid = torch.ones(t, dtype=torch.bool)
        for clip, frame in invalid:
            if clip == i:
                valid[frame] = False
                masks[frame] = 0
                boxes[frame] = 0
        samples.append(ClipSample(frames=torch.zeros(t, 3, h, w), masks=masks, boxes=boxes, valid=valid, text="x",
                                  orig_size=(h, w)))
    batch = collate_clips(samples, size_divisibility=1)
    boxes = torch.cat([torch.rand(b, t, q, 2, generator=g) * 0.5 + 0.25,
                       torch.rand(b, t, q, 2, generator=g) * 0.3 + 0.05], dim=-1)
    return batch, {"pred_logits": torch.randn(b, t, q, 1, generator=g) * 2, "pred_boxes": boxes,
                   "masks_low_all": torch.randn(b, t, q, h // 2, w // 2, generator=g) * 2,
                   "pred_masks": torch.randn(b, t, h, w, generator=g) * 2,
                   "pred_masks_low": torch.randn(b, t, h // 2, w // 2, generator=g) * 2}


@pytest.mark.parametrize("seed", range(4))
def test_matcher_choice_equals_the_host_hungarian(seed):
    batch, layer = _case(seed)
    args = (layer["pred_logits"], layer["pred_boxes"], layer["masks_low_all"], batch)
    for check_values in (True, False):
        matcher = VideoHungarianMatcher(check_values=check_values)
        cost = matcher.cost_matrix(*args)
        expected = [_scipy_choice(row) for row in cost.double().numpy()]
        assert matcher(*args).tolist() == expected


@pytest.mark.parametrize("invalid", [((0, 1), (2, 3)), ()])
def test_loss_values_bit_identical_to_the_float_normaliser(invalid):
    batch, layer = _case(7, invalid)
    matched = VideoHungarianMatcher()(layer["pred_logits"], layer["pred_boxes"], layer["masks_low_all"], batch)
    outputs = {**layer, "matched_query": matched}
    num_boxes = float(sum(bool(v) for v in batch.valid.flatten().tolist()))  # spec 4.2, counted in Python
    assert num_valid_frames(batch.valid).item() == num_boxes
    ce = loss_labels(layer["pred_logits"], matched, batch.valid, num_boxes)
    l1, giou = loss_boxes(layer["pred_boxes"], matched, batch.boxes, num_boxes)
    mask, dice = loss_masks(layer["pred_masks"], batch.masks, num_boxes)
    gt_low = low_res_targets(batch.masks, layer["pred_masks_low"].shape[-2:])
    mask_low, dice_low = loss_masks(layer["pred_masks_low"], gt_low, num_boxes)
    expected = {"loss_ce": ce, "loss_bbox": l1, "loss_giou": giou, "loss_mask": mask, "loss_dice": dice,
                "loss_mask_low": mask_low, "loss_dice_low": dice_low}
    for check_values in (True, False):
        losses = SetCriterion(num_aux_layers=0, check_values=check_values)(outputs, batch)
        for name, value in expected.items():
            assert torch.equal(losses[name], value), (name, losses[name].item(), value.item())


def test_normaliser_is_a_device_tensor_clamped_and_averaged():
    valid = torch.tensor([[True, False, True], [False, False, False]])
    n = num_valid_frames(valid)
    assert isinstance(n, torch.Tensor) and n.dim() == 0 and n.dtype == torch.float32 and n.item() == 2.0
    assert num_valid_frames(torch.zeros(1, 4, dtype=torch.bool)).item() == 1.0  # clamped to >= 1
