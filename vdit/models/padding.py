"""Padding frames to the sizes the network accepts: the one rule shared by data, model and predictor.

Frames are padded at the bottom and on the right with zeros (0 in ImageNet-normalised space, as the
official NestedTensor), and a pad mask marks the padding (True = pad). The model pads its input to a
multiple of INPUT_SIZE_DIVISIBILITY; training batches come padded to a coarser multiple (the trainer's
`SIZE_DIVISIBILITY`), which is also a multiple of 16, so the model then pads nothing.

This module depends on torch only, so `vdit.data` imports it without importing the model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

INPUT_SIZE_DIVISIBILITY = 16


def padded_size(h: int, w: int, divisor: int = INPUT_SIZE_DIVISIBILITY) -> tuple[int, int]:
    """(h, w) rounded up to multiples of `divisor` (1 or less: unchanged)."""
    if divisor <= 1:
        return h, w
    return -(-h // divisor) * divisor, -(-w // divisor) * divisor


def pad_to_divisible(frames: torch.Tensor, divisor: int = INPUT_SIZE_DIVISIBILITY,
                     pad_mask: torch.Tensor | None = None, size: tuple[int, int] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [..., C, h, w] -> (frames [..., C, Hp, Wp] zero-padded at the bottom/right, pad mask
    [..., Hp, Wp] bool, True = padding), with (Hp, Wp) = `size` (default: (h, w)) rounded up to
    multiples of `divisor`. `pad_mask` [..., h, w]: padding the frames already have (e.g. a batch's),
    kept and extended with True; None = none. Frames needing no padding are returned as they are."""
    h, w = frames.shape[-2:]
    lead = frames.shape[:-3]
    if size is not None and (size[0] < h or size[1] < w):
        raise ValueError(f"cannot pad frames of {h}x{w} to the smaller size {size[0]}x{size[1]}")
    hp, wp = padded_size(*(size or (h, w)), divisor)
    if pad_mask is None:
        pad_mask = torch.zeros((*lead, h, w), dtype=torch.bool, device=frames.device)
    elif pad_mask.shape != (*lead, h, w):
        raise ValueError(f"pad_mask must be {(*lead, h, w)} for frames {tuple(frames.shape)}, "
                         f"got {tuple(pad_mask.shape)}")
    if (hp, wp) == (h, w):
        return frames, pad_mask
    pad = (0, wp - w, 0, hp - h)
    return F.pad(frames, pad), F.pad(pad_mask, pad, value=True)


__all__ = ["INPUT_SIZE_DIVISIBILITY", "padded_size", "pad_to_divisible"]
