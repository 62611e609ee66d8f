"""Box utilities: conversions, smoothed IoU / GIoU on boxes with hand-computed areas, masks_to_boxes."""
import math

import pytest
import torch

from vdit.models.ops.box_ops import (
    BOX_EPS,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    masks_to_boxes,
    paired_generalized_box_iou,
)


def test_cxcywh_to_xyxy_known_values():
    out = box_cxcywh_to_xyxy(torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.0, 0.0, 0.0, 0.0]]))
    assert torch.allclose(out, torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.0, 0.0, 0.0, 0.0]]))


def test_round_trip_is_identity_on_batched_boxes():
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(3, 5, 4, generator=g)
    assert torch.allclose(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(boxes)), boxes, atol=1e-6)
    xyxy = box_cxcywh_to_xyxy(boxes)
    assert torch.allclose(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(xyxy)), xyxy, atol=1e-6)


def test_iou_and_giou_of_overlapping_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    # inter 1, union 4 + 4 - 1 = 7, enclosing 3 x 3 = 9
    iou = (1 + BOX_EPS) / (7 + BOX_EPS)
    assert box_iou(a, b).item() == pytest.approx(iou, rel=1e-6)
    assert generalized_box_iou(a, b).item() == pytest.approx(iou - (9 - 7 + BOX_EPS) / (9 + BOX_EPS), rel=1e-6)
    assert generalized_box_iou(a, b).item() == pytest.approx(1 / 7 - 2 / 9, abs=1e-6)


def test_giou_of_disjoint_boxes_is_negative():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    c = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    # no overlap, union 2, enclosing 3 x 1 -> GIoU = 0 - 1/3
    assert generalized_box_iou(a, c).item() == pytest.approx(-1 / 3, abs=1e-5)
    far = torch.tensor([[100.0, 100.0, 101.0, 101.0]])
    assert generalized_box_iou(a, far).item() < -0.99


def test_giou_of_identical_boxes_is_one():
    a = torch.tensor([[0.1, 0.2, 0.5, 0.9]])
    assert generalized_box_iou(a, a).item() == pytest.approx(1.0, abs=1e-4)


def test_zero_boxes_do_not_crash():
    zero = torch.zeros(1, 4)
    real = torch.tensor([[0.4, 0.4, 0.6, 0.6]])
    assert generalized_box_iou(zero, zero).item() == pytest.approx(0.0, abs=1e-6)  # documented value
    g = generalized_box_iou(real, zero).item()
    # area 0.04, enclosing (0,0)-(0.6,0.6) = 0.36
    assert math.isfinite(g)
    assert g == pytest.approx(BOX_EPS / (0.04 + BOX_EPS) - (0.36 - 0.04 + BOX_EPS) / (0.36 + BOX_EPS), abs=1e-6)


def test_pairwise_shape_and_paired_equals_diagonal():
    g = torch.Generator().manual_seed(1)
    b1 = box_cxcywh_to_xyxy(torch.rand(4, 4, generator=g))
    b2 = box_cxcywh_to_xyxy(torch.rand(4, 4, generator=g))
    full = generalized_box_iou(b1, b2)
    assert full.shape == (4, 4)
    assert generalized_box_iou(b1, b2[:3]).shape == (4, 3)
    assert torch.allclose(paired_generalized_box_iou(b1, b2), full.diagonal(), atol=1e-6)
    assert torch.all(full <= 1.0) and torch.all(full > -1.0)


def test_invalid_xyxy_raises_clear_error():
    bad = torch.tensor([[0.5, 0.5, 0.2, 0.2]])  # cxcywh passed as xyxy
    with pytest.raises(ValueError, match="not valid xyxy"):
        generalized_box_iou(bad, bad)
    with pytest.raises(ValueError, match="last dimension of 4"):
        generalized_box_iou(torch.zeros(2, 3), torch.zeros(2, 4))


def test_nan_boxes_propagate_instead_of_raising():
    nan = torch.full((1, 4), float("nan"))
    assert torch.isnan(generalized_box_iou(nan, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))).all()


def test_masks_to_boxes():
    masks = torch.zeros(3, 6, 7)
    masks[0, 1:4, 2:5] = 1  # rows 1..3, cols 2..4
    masks[1, 5, 0] = 1  # one pixel
    boxes = masks_to_boxes(masks)
    assert boxes.tolist() == [[2.0, 1.0, 4.0, 3.0], [0.0, 5.0, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0]]
    assert masks_to_boxes(torch.zeros(0, 4, 4)).shape == (0, 4)
    with pytest.raises(ValueError):
        masks_to_boxes(torch.zeros(4, 4))
