"""CLIP image preprocessing for the image tokens (spec 2.1 step 3 and 2.3), two interchangeable paths.

- "official" (default, `clip_preprocess_official`): what VD-IT does. The [-1, 1] frames become
  `((x + 1) * 127.5)` cast to integers (truncation, not rounding) and go through the stock PIL-based
  transformers CLIP image processor (PIL bicubic resize of the shortest side, centre crop, rescale 1/255,
  CLIP mean/std). On the CPU that is the processor itself; on an accelerator the same integer arithmetic
  runs on the device (`pil_bicubic_resize`: Pillow's fixed-point two-pass resampling restated in torch,
  equal to PIL pixel for pixel), so the frames never make a round trip through the host, which would
  stall the device's queue (issue 16).
- "fast" (opt-in, `clip_preprocess_fast`): the same steps on tensors, on the input's device: torch's
  antialiased bicubic instead of PIL's and no integer truncation. It differs from the official pixels by
  up to 2/255 (measured in docs/model.md), enough to move the CLIP image tokens noticeably.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vdit.errors import ConfigError
from vdit.models.foundation import ClipImageSpec
from vdit.models.ops.device_values import tensor_on_device, uploaded_once

PIXEL_MAX = 255
# Pillow's resampling (libImaging/Resample.c): filter weights in double, normalised to sum 1, then fixed
# point with 32 - 8 - 2 fraction bits; each pass rounds (adds half) and clips to 0..255 before the next.
PIL_PRECISION_BITS = 32 - 8 - 2
PIL_BICUBIC_A = -0.5
PIL_BICUBIC_SUPPORT = 2.0


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
    """[1,3,1,1] constant in `like`'s dtype, made on its device without a host-to-device copy."""
    return tensor_on_device(list(values), like.dtype, like.device).view(1, -1, 1, 1)


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


def _pil_bicubic(x: float) -> float:
    x = abs(x)
    a = PIL_BICUBIC_A
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _pil_tables(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tap indices [out, ksize] int64, fixed-point weights [out, ksize] int32) of one pass, on the host."""
    starts, weights = _pil_coefficients(in_size, out_size)
    ksize = len(weights[0])
    # Tap j of output i reads input starts[i] + j; taps past the edge have weight 0 (index clamped).
    index = (torch.tensor(starts)[:, None] + torch.arange(ksize)[None]).clamp_(max=in_size - 1)
    return index, torch.tensor(weights, dtype=torch.int32)


@functools.lru_cache(maxsize=32)
def _pil_coefficients(in_size: int, out_size: int) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bicubic filter over the whole input
    (box 0..in_size): per output pixel the first input index and the fixed-point weights of its taps
    (zero beyond the taps that fall inside the image). Python floats are C doubles, `int()` truncates
    as C's cast does."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = PIL_BICUBIC_SUPPORT * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    starts, weights = [], []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_pil_bicubic((x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
        ww = sum(k)  # summed left to right, as the C loop does
        k = [w / ww if ww != 0.0 else w for w in k]
        one = 1 << PIL_PRECISION_BITS
        fixed = [int(-0.5 + w * one) if w < 0 else int(0.5 + w * one) for w in k]
        starts.append(xmin)
        weights.append(tuple(fixed + [0] * (ksize - xmax)))
    return tuple(starts), tuple(weights)


def _pil_pass(x: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    """One of Pillow's 8-bit resampling passes along `dim` of an int32 tensor of 0..255 values."""
    index, w = uploaded_once(("pil_bicubic", x.shape[dim], out_size), x.device,
                             lambda: _pil_tables(x.shape[dim], out_size))
    ksize = index.shape[1]
    shape = [1] * x.dim()
    shape[dim] = out_size
    acc = torch.full((), 1 << (PIL_PRECISION_BITS - 1), dtype=torch.int32, device=x.device)
    for j in range(ksize):  # the sum fits int32 by Pillow's choice of fraction bits, as in its C loop
        acc = acc + x.index_select(dim, index[:, j]) * w[:, j].view(shape)
    return (acc >> PIL_PRECISION_BITS).clamp_(0, PIXEL_MAX)


def pil_bicubic_resize(ints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ints [N,C,H,W] (integers 0..255, any integer dtype, any device) -> [N,C,h,w] int32: exactly
    `PIL.Image.resize((w, h), Image.BICUBIC)` of each 8-bit channel (Pillow's two-pass fixed-point
    resampling: horizontal first into 8 bits, then vertical; a pass whose size is unchanged is skipped)."""
    h, w = size
    x = ints.to(torch.int32)
    if w != x.shape[-1]:
        x = _pil_pass(x, w, dim=-1)
    if h != x.shape[-2]:
        x = _pil_pass(x, h, dim=-2)
    return x


def _official_on_device(ints: torch.Tensor, spec: ClipImageSpec) -> torch.Tensor:
    """The CLIP processor's steps on int32 pixels [N,3,H,W] on their device -> float32 pixel_values:
    PIL bicubic resize of the shortest side (the processor's output size), centre crop, `/ 255` in
    float64 then float32 (the processor's rescale), `(x - mean) / std` in float32."""
    _, _, h, w = ints.shape
    short = spec.shortest_edge
    nh, nw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
    resized = pil_bicubic_resize(ints, (nh, nw))
    top, left = (nh - spec.crop_height) // 2, (nw - spec.crop_width) // 2
    crop = resized[:, :, top : top + spec.crop_height, left : left + spec.crop_width]
    unit = (crop.to(torch.float64) / PIXEL_MAX).to(torch.float32)
    return (unit - _channel_constant(spec.mean, unit)) / _channel_constant(spec.std, unit)


def clip_preprocess_official(x: torch.Tensor, spec: ClipImageSpec, on_device: bool | None = None) -> torch.Tensor:
    """x [N,3,H,W] in [-1, 1] (the diffusion-range frames of spec 2.1 step 2), any device/dtype ->
    CLIP pixel_values [N,3,crop_h,crop_w] on x's device and dtype, exactly as VD-IT computes them
    (spec 2.1 step 3, 2.3): truncated integers through the PIL CLIP image processor. `on_device`
    (default: when x is not on the CPU) runs the processor's integer arithmetic on x's device instead
    of calling it on the host (equal pixels; no device -> host -> device round trip)."""
    if x.shape[0] == 0 or x.device.type == "meta":  # meta: shapes only (memory/FLOP accounting)
        return torch.empty((x.shape[0], 3, spec.crop_height, spec.crop_width), device=x.device, dtype=x.dtype)
    ints = official_clip_ints(x)
    if on_device if on_device is not None else x.device.type != "cpu":
        return _official_on_device(ints, spec).to(x.dtype)
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
