"""Tiny synthetic clips and model outputs shared by the matcher and criterion tests."""
from __future__ import annotations

import torch

from vdit.data.types import ClipBatch, ClipSample, collate_clips
from vdit.models.ops.box_ops import box_xyxy_to_cxcywh, masks_to_boxes

CONFIDENT = 8.0


def make_batch(b: int = 2, t: int = 3, h: int = 16, w: int = 16, seed: int = 0, invalid=((0, 1),)) -> ClipBatch:
    """B clips with one random rectangle per frame; (clip, frame) pairs in `invalid` have no object."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(b):
        masks = torch.zeros(t, h, w)
        valid = torch.ones(t, dtype=torch.bool)
        for f in range(t):
            if (i, f) in invalid:
                valid[f] = False
                continue
            y0, x0 = (int(v) for v in torch.randint(0, h // 2, (2,), generator=g))
            hh, ww = (int(v) for v in torch.randint(3, h // 2, (2,), generator=g))
            masks[f, y0 : y0 + hh, x0 : x0 + ww] = 1
        xyxy = masks_to_boxes(masks)
        xyxy[:, 2:] += 1  # pixel indices -> right/bottom edges
        boxes = box_xyxy_to_cxcywh(xyxy / torch.tensor([w, h, w, h]))
        boxes[~valid] = 0
        frames = torch.zeros(t, 3, h, w)
        samples.append(ClipSample(frames=frames, masks=masks, boxes=boxes, valid=valid, text="x", orig_size=(h, w)))
    return collate_clips(samples, size_divisibility=1)


def logits_from_mask(mask: torch.Tensor) -> torch.Tensor:
    return (mask * 2 - 1) * CONFIDENT


def random_layer(batch: ClipBatch, q: int, g: torch.Generator) -> dict:
    """Random predictions of every query: logits, boxes (valid cxcywh), M_o logits at stride 2."""
    b, t, h, w = batch.masks.shape
    cxcy = torch.rand(b, t, q, 2, generator=g) * 0.5 + 0.25
    wh = torch.rand(b, t, q, 2, generator=g) * 0.4 + 0.05
    return {
        "pred_logits": torch.randn(b, t, q, 1, generator=g),
        "pred_boxes": torch.cat([cxcy, wh], dim=-1),
        "masks_all_low": torch.randn(b, t, q, h // 2, w // 2, generator=g) * 2,
    }


def plant(layer: dict, batch: ClipBatch, queries: list[int]) -> dict:
    """Make query queries[i] of clip i a perfect prediction of clip i's target."""
    low = batch.masks[..., 1::2, 1::2]
    for i, q in enumerate(queries):
        layer["pred_logits"][i, :, q, 0] = torch.where(batch.valid[i], CONFIDENT, -CONFIDENT)
        layer["pred_boxes"][i, :, q] = batch.boxes[i]
        layer["masks_all_low"][i, :, q] = logits_from_mask(low[i])
    return layer
