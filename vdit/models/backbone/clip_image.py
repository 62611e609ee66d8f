"""CLIP image preprocessing for the image tokens (spec 2.1 step 3 and 2.3), two interchangeable paths.

- "official" (default, `clip_preprocess_official`): what VD-IT does. The [-1, 1] frames become
  `((x + 1) * 127.5)` cast to integers (truncation, not rounding) and go through the stock PIL-based
  transformers CLIP image processor on the CPU (PIL bicubic resize of the shortest side, centre crop,
  rescale 1/255, CLIP mean/std), then back to the input's device and dtype.
- "fast" (opt-in, `clip_preprocess_fast`): the same steps on tensors, on the input's device: torch's
  antialiased bicubic instead of PIL's and no integer truncation. It differs from the official pixels by
  up to 2/255 (measured in docs/model.md), enough to move the CLIP image tokens noticeably.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vdit.errors import ConfigError
from vdit.models.foundation import ClipImageSpec

PIXEL_MAX = 255


def clip_preprocess_fast(images01: torch.Tensor, spec: ClipImageSpec) -> torch.Tensor:
    """images01 [N,3,H,W] in [0,1] -> CLIP pixel_values [N,3,crop_h,crop_w], on the input's device."""
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
    mean, std = _channel_constant(spec.mean, x), _channel_constant(spec.std, x)
    return ((x - mean) / std).to(images01.dtype)


def _channel_constant(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """[1,3,1,1] constant on `like`'s device and dtype, filled there: a tensor built from a Python list on
    an accelerator is a blocking upload (the host waits for the device's queue); the values are the same."""
    out = like.new_empty(len(values))
    for i, v in enumerate(values):
        out[i] = float(v)
    return out.view(1, -1, 1, 1)


def official_clip_ints(x: torch.Tensor) -> torch.Tensor:
    """Spec 2.1 step 3: [-1, 1] pixels -> `((x + 1) * 127.5)` cast to int32 (truncation toward zero) as
    VD-IT computes it, in fp32. The clamp only guards against values a hair outside [0, 255] (the official
    code has no clamp: there the int32 cast truncates -0.00001 to 0 and the uint8 PIL conversion would
    reject 256); within range it changes nothing."""
    return ((x.float() + 1) * 127.5).to(torch.int32).clamp_(0, PIXEL_MAX)


@functools.lru_cache(maxsize=8)
def _processor(shortest_edge: int, crop_height: int, crop_width: int, mean: tuple[float, ...],
               std: tuple[float, ...]) -> Any:
    # The PIL/numpy backend ("slow" processor, `CLIPImageProcessorPil` in transformers 5): it is what
    # transformers 4.36's `CLIPImageProcessor` was, and needs no torchvision. Bicubic (resample=3) is the
    # class default, as in the CLIP preprocessor_config.json files.
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": shortest_edge},
        crop_size={"height": crop_height, "width": crop_width},
        image_mean=list(mean),
        image_std=list(std),
    )


def clip_processor(spec: ClipImageSpec) -> Any:
    """The stock transformers PIL CLIP image processor configured with the numbers of the CLIP folder's
    preprocessor_config.json (`spec`); cached, so building it costs nothing per batch."""
    return _processor(int(spec.shortest_edge), int(spec.crop_height), int(spec.crop_width),
                      tuple(float(m) for m in spec.mean), tuple(float(s) for s in spec.std))


def clip_preprocess_official(x: torch.Tensor, spec: ClipImageSpec) -> torch.Tensor:
    """x [N,3,H,W] in [-1, 1] (the diffusion-range frames of spec 2.1 step 2), any device/dtype ->
    CLIP pixel_values [N,3,crop_h,crop_w] on x's device and dtype, exactly as VD-IT computes them
    (spec 2.1 step 3, 2.3): truncated integers through the PIL CLIP image processor on the CPU."""
    if x.shape[0] == 0 or x.device.type == "meta":  # meta: shapes only (memory/FLOP accounting)
        return torch.empty((x.shape[0], 3, spec.crop_height, spec.crop_width), device=x.device, dtype=x.dtype)
    ints = official_clip_ints(x)
    # uint8 holds 0..255 exactly; channels-last numpy is PIL's layout. One processor call for the batch.
    frames = ints.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
    out = clip_processor(spec)(images=list(frames), return_tensors="np", input_data_format="channels_last")
    pixels = torch.from_numpy(np.ascontiguousarray(out["pixel_values"], dtype=np.float32))
    return pixels.to(device=x.device, dtype=x.dtype)


def clip_preprocess(images01: torch.Tensor, spec: ClipImageSpec, mode: str = "official") -> torch.Tensor:
    """images01 [N,3,H,W] in [0,1] -> CLIP pixel_values by `mode` (`backbone.clip_preprocess`). The
    official path starts from `2 * images01 - 1`, the same operation the backbone applies (spec 2.1)."""
    if mode == "fast":
        return clip_preprocess_fast(images01, spec)
    if mode != "official":
        raise ConfigError(f"clip_preprocess mode {mode!r}: expected 'official' or 'fast'")
    return clip_preprocess_official(2 * images01 - 1, spec)
