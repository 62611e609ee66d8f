"""Bounding-box utilities (no torchvision): format conversion, IoU, generalised IoU, masks -> boxes.

Formats: ``cxcywh`` = (centre x, centre y, width, height); ``xyxy`` = (x0, y0, x1, y1). Both are
usually normalised by the unpadded image size, but nothing here depends on the scale.

IoU and GIoU carry the official code's smoothing (spec 4.4, "IoU uses +1e-6 smoothing"):

    IoU  = (inter + eps) / (union + eps)
    GIoU = IoU - (enclosing - union + eps) / (enclosing + eps)        eps = BOX_EPS = 1e-6

so degenerate boxes never divide by zero. Two consequences worth knowing:
- two identical non-empty boxes of area A give GIoU = 1 - eps / (A + eps) (1 up to ~1e-6 / A);
- two all-zero boxes (the targets of invalid frames) give IoU = 1 and GIoU = 0, and a real box
  against an all-zero box gives a finite, negative-leaning GIoU. The loss keeps these frames
  (spec 11.11, kept for fidelity), so this case must not crash and it does not.
"""
from __future__ import annotations

import torch


BOX_EPS = 1e-6
"""Additive smoothing of the IoU ratio and of GIoU's enclosing-area ratio (official box_ops)."""


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x0, y0, x1, y1)."""
    _check_last_dim(boxes, "boxes")
    cx, cy, w, h = boxes.unbind(-1)
    half_w, half_h = 0.5 * w, 0.5 * h
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x0, y0, x1, y1) -> [..., 4] (cx, cy, w, h)."""
    _check_last_dim(boxes, "boxes")
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] xyxy -> [...] area (not clamped: validate the boxes first)."""
    _check_last_dim(boxes, "boxes")
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise smoothed IoU of [N, 4] and [M, 4] xyxy boxes -> [N, M]."""
    b1, b2 = _pairwise_operands(boxes1, boxes2)
    iou, _, _ = _iou_union_enclosing(b1, b2)
    return iou


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise smoothed GIoU of [N, 4] and [M, 4] xyxy boxes -> [N, M], values in (-1, 1].

    Raises ValueError if a box has x1 < x0 or y1 < y0 (the official code asserts instead). NaN
    coordinates are not rejected: they propagate so the engine's non-finite check reports them.
    """
    b1, b2 = _pairwise_operands(boxes1, boxes2)
    return _giou(b1, b2)


def paired_generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Element-wise smoothed GIoU of broadcastable [..., 4] xyxy boxes -> [...].

    Equal to the diagonal of `generalized_box_iou` for two [N, 4] inputs, without the N x N matrix.
    """
    _check_last_dim(boxes1, "boxes1")
    _check_last_dim(boxes2, "boxes2")
    _check_xyxy(boxes1, "boxes1")
    _check_xyxy(boxes2, "boxes2")
    return _giou(boxes1, boxes2)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """[N, H, W] masks (non-zero = foreground) -> [N, 4] float xyxy in pixel indices.

    x1/y1 are the last foreground column/row (inclusive, as torchvision's masks_to_boxes).
    An empty mask gives an all-zero box, the convention the datasets use for frames without the
    object (the official helper returns 1e8 minima there instead).
    """
    if masks.dim() != 3:
        raise ValueError(f"masks_to_boxes: expected masks of shape [N, H, W], got {tuple(masks.shape)}")
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    fg = masks != 0
    rows = fg.any(dim=2)  # [N, H]
    cols = fg.any(dim=1)  # [N, W]
    y0, y1 = _first_last(rows, h)
    x0, x1 = _first_last(cols, w)
    boxes = torch.stack((x0, y0, x1, y1), dim=-1).float()
    empty = ~rows.any(dim=1)
    return boxes.masked_fill(empty[:, None], 0.0)


def _first_last(present: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last True index along the last dim (garbage where none is True)."""
    idx = torch.arange(length, device=present.device).expand_as(present)
    first = torch.where(present, idx, length).amin(dim=-1)
    last = torch.where(present, idx, -1).amax(dim=-1)
    return first, last


def _giou(b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    iou, union, enclosing = _iou_union_enclosing(b1, b2)
    return iou - (enclosing - union + BOX_EPS) / (enclosing + BOX_EPS)


def _iou_union_enclosing(b1: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smoothed IoU, union area and enclosing-box area of broadcastable xyxy boxes."""
    inter_wh = (torch.minimum(b1[..., 2:], b2[..., 2:]) - torch.maximum(b1[..., :2], b2[..., :2])).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = box_area(b1) + box_area(b2) - inter
    iou = (inter + BOX_EPS) / (union + BOX_EPS)
    encl_wh = (torch.maximum(b1[..., 2:], b2[..., 2:]) - torch.minimum(b1[..., :2], b2[..., :2])).clamp(min=0)
    enclosing = encl_wh[..., 0] * encl_wh[..., 1]
    return iou, union, enclosing


def _pairwise_operands(boxes1: torch.Tensor, boxes2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for name, boxes in (("boxes1", boxes1), ("boxes2", boxes2)):
        if boxes.dim() != 2:
            raise ValueError(f"{name}: expected [N, 4] xyxy boxes, got shape {tuple(boxes.shape)}")
        _check_last_dim(boxes, name)
        _check_xyxy(boxes, name)
    return boxes1[:, None, :], boxes2[None, :, :]


def _check_last_dim(boxes: torch.Tensor, name: str) -> None:
    if boxes.dim() == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"{name}: expected a last dimension of 4 box coordinates, got shape {tuple(boxes.shape)}")


def _check_xyxy(boxes: torch.Tensor, name: str) -> None:
    # `<` is False for NaN, so NaN boxes pass here on purpose (see generalized_box_iou).
    bad = (boxes[..., 2:] < boxes[..., :2]).any(dim=-1)
    if bool(bad.any()):
        first = boxes[bad][0].tolist()
        raise ValueError(
            f"{name}: {int(bad.sum())} box(es) are not valid xyxy (need x1 >= x0 and y1 >= y0), "
            f"e.g. {first}; were cxcywh boxes passed without box_cxcywh_to_xyxy, or a negative size predicted?"
        )
