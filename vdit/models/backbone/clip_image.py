"""CLIP image preprocessing on tensors, on the input's device (no PIL round trip).

Same steps as CLIPImageProcessor: resize the shortest side (bicubic, antialiased), centre crop,
normalise with the CLIP mean/std. Differences to the official path, accepted and documented: no uint8
truncation of the pixels and torch's bicubic instead of PIL's (differences of ~1/255).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vdit.models.foundation import ClipImageSpec


def clip_preprocess(images01: torch.Tensor, spec: ClipImageSpec) -> torch.Tensor:
    """images01 [N,3,H,W] in [0,1] -> CLIP pixel_values [N,3,crop_h,crop_w]."""
    _, _, h, w = images01.shape
    short = spec.shortest_edge
    # Output size as the HF processor computes it: short side = `short`, long side scaled and truncated.
    if h <= w:
        nh, nw = short, int(short * w / h)
    else:
        nh, nw = int(short * h / w), short
    x = F.interpolate(images01.float(), size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
    top = (nh - spec.crop_height) // 2
    left = (nw - spec.crop_width) // 2
    x = x[:, :, top : top + spec.crop_height, left : left + spec.crop_width]
    mean = torch.tensor(spec.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - mean) / std).to(images01.dtype)
