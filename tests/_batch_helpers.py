"""Training batches for tests (imported by name: tests/ is on sys.path through tests/conftest.py)."""
from __future__ import annotations

import torch

from vdit.data.types import ClipBatch


def box_batch(frames: torch.Tensor, texts: list[str]) -> ClipBatch:
    """A training batch of `frames` [B,T,3,H,W]: one rectangle per clip, every frame valid, no padding;
    masks [B,T,H,W], cxcywh boxes."""
    b, t, _, h, w = frames.shape
    masks = torch.zeros(b, t, h, w)
    masks[:, :, h // 4 : h // 2, w // 3 : w // 2] = 1
    boxes = torch.tensor([(w // 3 + w // 2) / 2 / w, (h // 4 + h // 2) / 2 / h, (w // 2 - w // 3) / w,
                          (h // 2 - h // 4) / h]).expand(b, t, 4).clone()
    sizes = torch.tensor([[h, w]] * b)
    return ClipBatch(frames=frames, pad_mask=torch.zeros(b, t, h, w, dtype=torch.bool), masks=masks, boxes=boxes,
                     valid=torch.ones(b, t, dtype=torch.bool), sizes=sizes, orig_sizes=sizes, texts=list(texts))
