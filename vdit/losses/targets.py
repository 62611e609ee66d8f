"""Targets of the matcher and the criterion, aligned with the prediction tensors.

The model and the loss see one referred object per clip: `masks` [B,T,H,W] at the padded input size,
`boxes` [B,T,4] cxcywh normalised (zeros on invalid frames) and `valid` [B,T] (see
vdit.data.types.ClipBatch). Two alignments happen here:

- frames: on A2D / JHMDB the head runs on the annotated frame(s) only (spec 3.8), so predictions have
  fewer frames than the batch; `valid_indices` names which batch frames they are.
- resolution: M_o lives at stride 2; its targets are `masks[..., 1::2, 1::2]` (spec 4.3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


LOW_RES_STRIDE = 2
"""M_o is at stride 2 of the padded input."""
LOW_RES_OFFSET = 1
"""GT masks are subsampled starting at pixel 1: `[..., 1::2, 1::2]`."""
LOW_RES_SIZE_TOLERANCE = 1
"""Largest size difference (pixels, per axis) between subsampled GT and M_o that is cropped/padded."""


@dataclass
class ClipTargets:
    """masks [B,T,H,W] float, boxes [B,T,4] float cxcywh, valid [B,T] bool."""

    masks: torch.Tensor
    boxes: torch.Tensor
    valid: torch.Tensor


def align_targets(targets: Any, num_frames: int) -> ClipTargets:
    """Take `masks`, `boxes`, `valid` from a ClipBatch-like object, restricted to the predicted frames.

    If the predictions have as many frames as the targets, they are used as they are. Otherwise the
    batch must carry `valid_indices` (one list of `num_frames` frame positions per clip, A2D / JHMDB)
    and those frames are selected. Anything else is a ValueError.
    """
    masks, boxes, valid = _fields(targets)
    b, t = valid.shape
    if t != num_frames:
        indices = getattr(targets, "valid_indices", None)
        if indices is None:
            raise ValueError(
                f"targets have {t} frames but the predictions have {num_frames}, and the batch has no "
                "valid_indices saying which frames the head ran on"
            )
        index = _frame_index(indices, b, t, num_frames, valid.device)
        masks = torch.stack([masks[i, index[i]] for i in range(b)])
        boxes = torch.stack([boxes[i, index[i]] for i in range(b)])
        valid = torch.stack([valid[i, index[i]] for i in range(b)])
    return ClipTargets(masks=masks.float(), boxes=boxes.float(), valid=valid.bool())


def low_res_targets(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[..., H, W] targets -> [..., h, w] = masks[..., 1::2, 1::2], fitted to M_o's size (h, w).

    With inputs padded to a multiple of 8 or more the sizes agree exactly. A difference of at most
    LOW_RES_SIZE_TOLERANCE pixel per axis (odd padded sizes) is absorbed by cropping the bottom/right
    or zero-padding it (padding is background anyway); a larger one means the predictions and the
    targets do not belong together, which is a ValueError.
    """
    sub = masks[..., LOW_RES_OFFSET::LOW_RES_STRIDE, LOW_RES_OFFSET::LOW_RES_STRIDE]
    h, w = int(size[0]), int(size[1])
    dh, dw = h - sub.shape[-2], w - sub.shape[-1]
    if abs(dh) > LOW_RES_SIZE_TOLERANCE or abs(dw) > LOW_RES_SIZE_TOLERANCE:
        raise ValueError(
            f"low-resolution masks are {h}x{w} but the targets {tuple(masks.shape[-2:])} subsampled "
            f"[{LOW_RES_OFFSET}::{LOW_RES_STRIDE}] are {tuple(sub.shape[-2:])}: M_o must be at stride "
            f"{LOW_RES_STRIDE} of the padded input"
        )
    sub = sub[..., : min(h, sub.shape[-2]), : min(w, sub.shape[-1])]
    if dh > 0 or dw > 0:
        sub = F.pad(sub, (0, max(dw, 0), 0, max(dh, 0)))
    return sub


def require_valid_frame_per_clip(valid: torch.Tensor) -> None:
    """ValueError if a clip has no valid frame (the official matcher would crash on an empty stack)."""
    per_clip = valid.sum(dim=1)
    empty = (per_clip == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"clip(s) {empty} of the batch have no valid frame: the referred object must be visible in "
            "at least one frame of every training clip (datasets resample such clips)"
        )


def _fields(targets: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        masks, boxes, valid = targets.masks, targets.boxes, targets.valid
    except AttributeError as exc:
        raise ValueError(
            f"targets need masks, boxes and valid fields (a ClipBatch); got {type(targets).__name__}"
        ) from exc
    if valid.dim() != 2:
        raise ValueError(f"targets.valid must be [B, T], got shape {tuple(valid.shape)}")
    b, t = valid.shape
    if boxes.shape != (b, t, 4):
        raise ValueError(f"targets.boxes must be [B, T, 4] = [{b}, {t}, 4], got {tuple(boxes.shape)}")
    if masks.dim() != 4 or masks.shape[:2] != (b, t):
        raise ValueError(f"targets.masks must be [B, T, H, W] with B, T = {b}, {t}; got {tuple(masks.shape)}")
    return masks, boxes, valid


def _frame_index(indices: Any, b: int, t: int, num_frames: int, device: torch.device) -> torch.Tensor:
    if len(indices) != b:
        raise ValueError(f"valid_indices has {len(indices)} entries for a batch of {b} clips")
    rows = []
    for i, clip in enumerate(indices):
        clip = [int(k) for k in clip]
        if len(clip) != num_frames or any(k < 0 or k >= t for k in clip):
            raise ValueError(
                f"valid_indices[{i}] = {clip} must list {num_frames} frame position(s) in [0, {t}) "
                f"to match predictions with {num_frames} frame(s)"
            )
        rows.append(clip)
    return torch.tensor(rows, dtype=torch.long, device=device)
