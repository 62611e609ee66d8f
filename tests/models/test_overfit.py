"""Learning sanity: the whole network (tiny preset) overfits one clip through the real loss."""
from __future__ import annotations

import pytest
import torch

from vdit.config import tiny_config
from vdit.data.types import ClipBatch
from vdit.models.ops.box_ops import box_xyxy_to_cxcywh, masks_to_boxes
from vdit.models.vdit import VDIT
from vdit.training import TrainingWrapper

STEPS = 150
LR = 1e-3
CLIP_MAX_NORM = 0.1  # the official gradient clipping


@pytest.mark.slow
def test_overfit_one_clip(tiny_root):
    torch.manual_seed(0)
    model = VDIT.from_config(tiny_config(tiny_root)).train()
    step = TrainingWrapper.from_model(model)
    params = list(model.trainable_named_parameters().values())
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=5e-4)
    b, t, h, w = 1, 2, 64, 64
    frames = torch.randn(b, t, 3, h, w, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(b, t, h, w)
    masks[:, 0, 16:40, 20:44] = 1
    masks[:, 1, 20:44, 24:48] = 1  # the object moves
    boxes = box_xyxy_to_cxcywh(masks_to_boxes(masks.flatten(0, 1)).float()) / torch.tensor([w, h, w, h])
    sizes = torch.tensor([[h, w]])
    batch = ClipBatch(frames=frames, pad_mask=torch.zeros(b, t, h, w, dtype=torch.bool), masks=masks,
                      boxes=boxes.view(b, t, 4), valid=torch.ones(b, t, dtype=torch.bool), sizes=sizes,
                      orig_sizes=sizes, texts=["the red square"])
    losses = []
    for _ in range(STEPS):
        out = step.matched_outputs(batch)
        loss = step.criterion(out, batch)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP_MAX_NORM)
        opt.step()
        losses.append(loss.item())
    pred = out["pred_masks"].detach().sigmoid() > 0.5
    target = masks > 0
    iou = ((pred & target).sum() / (pred | target).sum()).item()
    assert losses[0] / losses[-1] >= 5, (losses[0], losses[-1])
    assert iou > 0.9, iou
