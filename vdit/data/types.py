"""The two data contracts between datasets, the model, the loss and the engine.

A dataset yields `ClipSample`s (one referring expression on one clip); `collate_clips` pads them into a
`ClipBatch`, the only thing the model and the criterion ever see.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from vdit.models.padding import pad_to_divisible


@dataclass
class ClipSample:
    """One (clip, expression) pair after transforms.

    frames:  [T,3,H,W] float, ImageNet-normalised (mean 0.485/0.456/0.406, std 0.229/0.224/0.225).
    masks:   [T,H,W] float in {0,1}: the referred object per frame (zeros where absent / not annotated).
    boxes:   [T,4] float, (cx, cy, w, h) normalised by the unpadded (W, H); zeros where not valid.
    valid:   [T] bool: the object is present (and annotated) in that frame.
    text:    the referring expression, lower-cased and whitespace-normalised.
    orig_size: (H0, W0) of the source frames before resizing (for upsampling predictions back).
    valid_indices: for A2D/JHMDB only: positions of the annotated frame(s) within the window; the
        head runs on those frames only (spec 3.8). None elsewhere.
    meta: free-form ids: video_id, exp_id, obj_id, frame_ids (list[str]), dataset, ...
    """

    frames: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    valid: torch.Tensor
    text: str
    orig_size: tuple[int, int]
    valid_indices: list[int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[-2]), int(self.frames.shape[-1])


@dataclass
class ClipBatch:
    """B samples padded (bottom/right) to a common size divisible by `size_divisibility`.

    frames:   [B,T,3,Hp,Wp] (padding = 0 in normalised space, as the official NestedTensor)
    pad_mask: [B,T,Hp,Wp] bool, True on padding
    masks:    [B,T,Hp,Wp] float targets, 0 on padding
    boxes:    [B,T,4], valid: [B,T] bool
    sizes:    [B,2] long, unpadded (h, w) of each sample
    orig_sizes: [B,2] long
    texts:    list of B strings
    valid_indices: list of B lists, or None
    meta:     list of B dicts
    """

    frames: torch.Tensor
    pad_mask: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    valid: torch.Tensor
    sizes: torch.Tensor
    orig_sizes: torch.Tensor
    texts: list[str]
    valid_indices: list[list[int]] | None = None
    meta: list[dict[str, Any]] = field(default_factory=list)

    def to(self, device: torch.device | str) -> "ClipBatch":
        moved = {}
        for name, value in self.__dict__.items():
            moved[name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return ClipBatch(**moved)


def collate_clips(samples: list[ClipSample], size_divisibility: int = 32) -> ClipBatch:
    """Pad a list of samples with equal T into a ClipBatch (training pads to 32, eval to 16): frames and
    target masks to the largest sample's size rounded up to `size_divisibility` (`pad_to_divisible`)."""
    if not samples:
        raise ValueError("collate_clips: empty batch")
    t = samples[0].frames.shape[0]
    if any(s.frames.shape[0] != t for s in samples):
        raise ValueError("collate_clips: all samples of a batch need the same number of frames")
    size = (max(s.frames.shape[-2] for s in samples), max(s.frames.shape[-1] for s in samples))
    frames, pad_mask, masks = [], [], []
    for s in samples:
        f, m = pad_to_divisible(s.frames, size_divisibility, size=size)
        frames.append(f)
        pad_mask.append(m)
        masks.append(pad_to_divisible(s.masks.float()[:, None], size_divisibility, size=size)[0][:, 0])
    return ClipBatch(
        frames=torch.stack(frames),
        pad_mask=torch.stack(pad_mask),
        masks=torch.stack(masks),
        boxes=torch.stack([s.boxes.float() for s in samples]),
        valid=torch.stack([s.valid.bool() for s in samples]),
        sizes=torch.tensor([s.size for s in samples], dtype=torch.long),
        orig_sizes=torch.tensor([s.orig_size for s in samples], dtype=torch.long),
        texts=[s.text for s in samples],
        valid_indices=[s.valid_indices for s in samples] if samples[0].valid_indices is not None else None,
        meta=[s.meta for s in samples],
    )
