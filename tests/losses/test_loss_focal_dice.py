"""Focal loss / cost and dice against scalar computations written out by hand."""
import math

import pytest
import torch

from vdit.errors import ConfigError
from vdit.losses.dice import dice_coefficient, dice_loss
from vdit.config import LossConfig
from vdit.losses.focal import check_focal_params, focal_class_cost, sigmoid_focal_loss


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _focal_scalar(x: float, t: int, alpha: float = 0.25, gamma: float = 2.0) -> float:
    p = _sig(x)
    if t == 1:
        return alpha * (1 - p) ** gamma * -math.log(p)
    return (1 - alpha) * p**gamma * -math.log(1 - p)


def test_constants():
    assert LossConfig().focal_alpha == 0.25 and LossConfig().focal_gamma == 2  # the defaults used below


def test_focal_matches_scalar_computation():
    logits = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    targets = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    out = sigmoid_focal_loss(logits, targets)
    expected = [_focal_scalar(0.0, 1), _focal_scalar(2.0, 0), _focal_scalar(-1.0, 1)]
    assert out.tolist() == pytest.approx(expected, rel=1e-9)
    # written-out value of the first element: 0.25 * 0.5^2 * ln 2
    assert out[0].item() == pytest.approx(0.0625 * math.log(2), rel=1e-9)


def test_focal_is_small_for_confident_correct_predictions():
    out = sigmoid_focal_loss(torch.tensor([8.0, -8.0]), torch.tensor([1.0, 0.0]))
    assert torch.all(out < 1e-6)


def test_focal_shape_mismatch_raises():
    with pytest.raises(ValueError):
        sigmoid_focal_loss(torch.zeros(3), torch.zeros(2))


def test_focal_class_cost_hand_value():
    # p = 0.5: 0.25 * 0.25 * ln2 - 0.75 * 0.25 * ln2 = -0.125 ln2
    assert focal_class_cost(torch.tensor([0.0])).item() == pytest.approx(-0.125 * math.log(2), rel=1e-5)
    costs = focal_class_cost(torch.tensor([-3.0, 0.0, 3.0]))
    assert costs[0] > costs[1] > costs[2]  # more confident "referred" = cheaper


def test_dice_hand_values():
    # p = 0.5 everywhere, target [1,1,0,0]: (2*1 + 1) / (2 + 2 + 1) = 0.6
    logits = torch.zeros(1, 4)
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert dice_coefficient(logits, target).item() == pytest.approx(0.6)
    assert dice_loss(logits, target).item() == pytest.approx(0.4)
    # p = 0.75 (logit ln 3), target [1, 0]: (1.5 + 1) / (1.5 + 1 + 1) = 5/7
    two = torch.full((1, 2), math.log(3.0))
    assert dice_coefficient(two, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(5 / 7, rel=1e-6)


def test_dice_is_over_the_whole_volume_and_broadcasts_one_target():
    logits = torch.zeros(3, 2, 2, 2)  # [N, T, H, W]
    target = torch.zeros(1, 2, 2, 2)
    target[0, 1, 0, 0] = 1
    # sum p = 4, sum g = 1, sum pg = 0.5 -> (1 + 1) / (5 + 1) = 1/3 for every prediction
    assert dice_coefficient(logits, target).tolist() == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError):
        dice_coefficient(torch.zeros(3, 4), torch.zeros(2, 4))


def test_focal_params_validation():
    with pytest.raises(ConfigError):
        check_focal_params(1.5, 2)
    with pytest.raises(ConfigError):
        check_focal_params(0.25, -1)
