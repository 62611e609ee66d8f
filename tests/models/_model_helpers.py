"""Helpers shared by the model tests (imported by name, as _head_reference)."""
from __future__ import annotations

from types import SimpleNamespace

import torch


def box_targets(b: int, t: int, h: int, w: int) -> SimpleNamespace:
    """Training targets of one rectangle per clip, every frame valid: masks [B,T,H,W], cxcywh boxes."""
    masks = torch.zeros(b, t, h, w)
    masks[:, :, h // 4 : h // 2, w // 3 : w // 2] = 1
    boxes = torch.tensor([(w // 3 + w // 2) / 2 / w, (h // 4 + h // 2) / 2 / h, (w // 2 - w // 3) / w,
                          (h // 2 - h // 4) / h]).expand(b, t, 4).clone()
    return SimpleNamespace(masks=masks, boxes=boxes, valid=torch.ones(b, t, dtype=torch.bool))
