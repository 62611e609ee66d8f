"""Turning user frames (arrays, PIL images, tensors) into the model's normalised input, with clear errors."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from vdit.errors import InputError
from vdit.models.ops.device_values import uploaded_once

# ImageNet statistics of the official Normalize: the model's input (`frames_to_tensor`, the datasets'
# ClipSample.frames) and the backbone's un-normalisation before its CLIP and VAE branches.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
PIXEL_MAX = 255.0


def frame_to_uint8(frame: Any, index: int = 0) -> np.ndarray:
    """One RGB frame (uint8 H x W x 3 array, PIL image, [3,H,W] / [H,W,3] tensor, or float in [0,1] or
    [0,255]) -> uint8 H x W x 3 array; InputError naming frame `index` for anything else."""
    if isinstance(frame, torch.Tensor):
        arr = frame.detach().cpu().numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = arr.transpose(1, 2, 0)  # CHW -> HWC
    else:
        arr = np.asarray(frame)
    if arr.ndim == 2:
        raise InputError(f"frame {index} is single-channel (grey) {arr.shape}; give RGB frames")
    if arr.ndim != 3:
        raise InputError(f"frame {index} has shape {arr.shape}; expected H x W x 3")
    if arr.shape[-1] == 1:
        raise InputError(f"frame {index} is single-channel (grey); give RGB frames")
    if arr.shape[-1] == 4:
        raise InputError(f"frame {index} is RGBA; drop the alpha channel (e.g. image.convert('RGB'))")
    if arr.shape[-1] != 3:
        raise InputError(f"frame {index} has {arr.shape[-1]} channels; expected 3 (RGB)")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


def frames_to_tensor(frames: Sequence[Any]) -> torch.Tensor:
    """A clip as a list of RGB frames (uint8 H x W x 3 arrays, PIL images, or tensors) -> [T,3,H,W] float,
    ImageNet-normalised. All frames must have the same size."""
    if len(frames) == 0:
        raise InputError("the clip has no frames")
    arrays = [frame_to_uint8(f, i) for i, f in enumerate(frames)]
    size = arrays[0].shape[:2]
    for i, a in enumerate(arrays):
        if a.shape[:2] != size:
            raise InputError(f"frame {i} is {a.shape[1]}x{a.shape[0]} but frame 0 is {size[1]}x{size[0]}: "
                             "all frames of a clip must have the same size")
    return normalize_uint8(torch.from_numpy(np.stack(arrays)))


def normalize_uint8(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [T,H,W,3] (any device) -> [T,3,H,W] float32 ImageNet-normalised on the same device: the
    model's input format (`/ 255`, then `(x - mean) / std`, the official Normalize)."""
    mean, std = uploaded_once("imagenet_mean_std", frames.device, lambda: (
        torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)))
    return (frames.permute(0, 3, 1, 2).float() / PIXEL_MAX - mean) / std
