"""CLIP image preprocessing (spec 2.1 step 3, 2.3): the default "official" path against an independent
PIL + numpy restatement of VD-IT's pipeline, the truncation of `((x + 1) * 127.5)`, the opt-in "fast"
path's documented tolerance, and the `backbone.clip_preprocess` switch reaching the backbone."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vdit.config import ModelConfig, apply_overrides, from_dict, tiny_config, to_dict
from vdit.errors import ConfigError
from vdit.models.backbone.clip_image import (clip_preprocess, clip_preprocess_fast, clip_preprocess_official,
                                             pil_bicubic_resize)
from vdit.models.foundation import ClipImageSpec

# Numbers written out (not imported) so that the reference shares nothing with the code under test.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMNET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMNET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
VIT_H = ClipImageSpec(224, 224, 224, CLIP_MEAN, CLIP_STD)
ODD_CROP = ClipImageSpec(40, 36, 32, CLIP_MEAN, CLIP_STD)  # crop smaller than the short side, not square


# ------------------------------------------------------------------ independent reference


def _ref_ints(x: np.ndarray) -> np.ndarray:
    """Spec 2.1 step 3 in numpy: [N,3,H,W] float32 in [-1,1] -> int32 by truncation."""
    return ((x.astype(np.float32) + np.float32(1)) * np.float32(127.5)).astype(np.int32)


def _ref_clip_pixels(ints: np.ndarray, shortest: int, crop_h: int, crop_w: int) -> np.ndarray:
    """Spec 2.3 with PIL and numpy, frame by frame: PIL bicubic resize of the shortest side (long side
    scaled and truncated to int, as the HF processor computes it), centre crop, /255, CLIP mean/std."""
    mean = np.array(CLIP_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.array(CLIP_STD, dtype=np.float32).reshape(3, 1, 1)
    out = []
    for frame in ints:
        h, w = frame.shape[1:]
        if h <= w:
            nh, nw = shortest, int(shortest * w / h)
        else:
            nh, nw = int(shortest * h / w), shortest
        img = Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0)).astype(np.uint8))
        arr = np.asarray(img.resize((nw, nh), Image.BICUBIC)).transpose(2, 0, 1)
        top, left = (nh - crop_h) // 2, (nw - crop_w) // 2
        arr = arr[:, top : top + crop_h, left : left + crop_w]
        unit = (arr.astype(np.float64) / 255).astype(np.float32)
        out.append((unit - mean) / std)
    return np.stack(out)


def _backbone_inputs(n: int, h: int, w: int, seed: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Random uint8 frames -> ImageNet-normalised float32 (as frames_to_tensor) -> the backbone's
    un-normalisation (spec 2.1 steps 1-2). Returns (normalised numpy, x01, x in [-1,1])."""
    rng = np.random.default_rng(seed)
    u8 = rng.integers(0, 256, size=(n, 3, h, w), dtype=np.uint8)
    norm = (u8.astype(np.float32) / np.float32(255) - IMNET_MEAN.reshape(3, 1, 1)) / IMNET_STD.reshape(3, 1, 1)
    x01 = np.clip(norm * IMNET_STD.reshape(3, 1, 1) + IMNET_MEAN.reshape(3, 1, 1), 0, 1)
    x = 2 * x01 - 1
    return norm, torch.from_numpy(x01), torch.from_numpy(x)


def _assert_within_1ulp(actual: torch.Tensor, expected: np.ndarray) -> None:
    assert actual.dtype == torch.float32 and tuple(actual.shape) == expected.shape
    np.testing.assert_array_max_ulp(actual.numpy(), expected.astype(np.float32), maxulp=1)


# ------------------------------------------------------------------ official path


# on_device=True: the processor's arithmetic restated in torch (what runs on an accelerator), here on the CPU.
@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("hw", [(101, 67), (67, 101), (360, 640), (225, 224), (224, 225), (223, 222), (222, 224)])
def test_official_matches_pil_reference(hw, on_device):
    h, w = hw
    _, _, x = _backbone_inputs(2, h, w, seed=h * 1000 + w)
    expected = _ref_clip_pixels(_ref_ints(x.numpy()), 224, 224, 224)
    _assert_within_1ulp(clip_preprocess_official(x, VIT_H, on_device=on_device), expected)


@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("hw", [(101, 67), (67, 101), (41, 40), (39, 38)])
def test_official_matches_pil_reference_non_square_crop(hw, on_device):
    _, _, x = _backbone_inputs(3, *hw, seed=7)
    expected = _ref_clip_pixels(_ref_ints(x.numpy()), 40, 36, 32)
    _assert_within_1ulp(clip_preprocess_official(x, ODD_CROP, on_device=on_device), expected)


@pytest.mark.parametrize("src,dst", [
    ((368, 640), (224, 389)), ((360, 640), (224, 398)),  # the eval frames' downscale
    ((101, 67), (338, 224)), ((64, 96), (224, 336)),  # upscales (filter support not widened)
    ((225, 224), (225, 224)), ((224, 225), (224, 225)),  # one pass skipped / identity
    ((223, 222), (225, 224)), ((30, 45), (40, 60)), ((5, 7), (3, 2)), ((3, 1), (1, 5)),
])
def test_pil_bicubic_resize_equals_pil(src, dst):
    """Pillow's 8-bit bicubic resize, pixel for pixel, on random and on saturated content (the
    fixed-point clipping at 0 and 255 and the rounding of the intermediate 8-bit pass)."""
    rng = np.random.default_rng(src[0] * 7 + dst[1])
    noise = rng.integers(0, 256, size=(2, 3, *src), dtype=np.uint8)
    edges = (rng.random(size=(1, 3, *src)) > 0.5).astype(np.uint8) * 255
    u8 = np.concatenate([noise, edges])
    for frame, got in zip(u8, pil_bicubic_resize(torch.from_numpy(u8), dst).numpy()):
        img = Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0)))
        want = np.asarray(img.resize((dst[1], dst[0]), Image.BICUBIC)).transpose(2, 0, 1)
        np.testing.assert_array_equal(got, want)


def test_official_truncates_not_rounds():
    # float32 x and what (x + 1) * 127.5 gives in float32: truncation, not rounding, makes the integer.
    # x = 13/127.5 - 1 lands a hair below 13 in float32 and becomes 12, as in VD-IT; the next float32 up
    # lands above 13 and stays 13.
    xs = np.array([12.999 / 127.5 - 1, 13 / 127.5 - 1, -0.89803916, 0.4 / 127.5 - 1, 254.99 / 127.5 - 1, 1.0, 0.0],
                  dtype=np.float32)
    mapped = (xs + np.float32(1)) * np.float32(127.5)
    np.testing.assert_allclose(mapped, [12.999, 12.999999, 13.000007, 0.4, 254.99, 255.0, 127.5], atol=2e-5)
    expected_ints = [12, 12, 13, 0, 254, 255, 127]
    # One constant frame per value (PIL's bicubic keeps a constant image constant).
    x = torch.from_numpy(np.repeat(xs, 3).reshape(len(xs), 3, 1, 1)).expand(-1, -1, 30, 45).contiguous()
    pixels = clip_preprocess_official(x, ODD_CROP)
    mean = np.array(CLIP_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(CLIP_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    ints = np.array(expected_ints, dtype=np.float64).reshape(-1, 1, 1, 1)
    want = ((ints / 255).astype(np.float32) - mean) / std
    np.testing.assert_array_max_ulp(pixels.numpy(), np.broadcast_to(want, pixels.shape).astype(np.float32), 1)
    rounded = ((np.round(mapped).reshape(-1, 1, 1, 1) / 255).astype(np.float32) - mean) / std
    assert not np.allclose(pixels.numpy()[:, :, :1, :1], rounded)  # rounding would give other pixels


def test_unit_range_entry_point_defaults_to_official():
    # clip_preprocess(images01) forms x = 2 * x01 - 1 itself; the reference does the same in numpy.
    _, x01, _ = _backbone_inputs(2, 67, 101, seed=5)
    x = 2 * x01.numpy() - 1
    _assert_within_1ulp(clip_preprocess(x01, VIT_H), _ref_clip_pixels(_ref_ints(x), 224, 224, 224))
    torch.testing.assert_close(clip_preprocess(x01, VIT_H, "fast"), clip_preprocess_fast(x01, VIT_H), atol=0, rtol=0)
    with pytest.raises(ConfigError, match="official.*fast"):
        clip_preprocess(x01, VIT_H, "pil")


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_official_keeps_dtype(dtype):
    _, _, x = _backbone_inputs(2, 45, 38, seed=3)
    xd = x.to(dtype)
    expected = _ref_clip_pixels(_ref_ints(xd.float().numpy()), 40, 36, 32)
    out = clip_preprocess_official(xd, ODD_CROP)
    assert out.dtype == dtype and out.device == xd.device
    torch.testing.assert_close(out, torch.from_numpy(expected).to(dtype), atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_official_on_cuda():
    _, _, x = _backbone_inputs(2, 67, 101, seed=4)
    out = clip_preprocess_official(x.cuda(), VIT_H)  # on the device by default
    assert out.is_cuda
    _assert_within_1ulp(out.cpu(), _ref_clip_pixels(_ref_ints(x.numpy()), 224, 224, 224))


def test_official_on_device_makes_no_host_round_trip():
    """The device path reads nothing back to the host (the CPU path's round trip would stall a GPU)."""
    from vdit.engine.syncs import SyncCounter

    _, _, x = _backbone_inputs(2, 67, 101, seed=4)
    clip_preprocess_official(x, VIT_H, on_device=True)  # the first call of a size uploads its tables
    # CPU tensors stand in for device memory here, also on a machine with a GPU
    with SyncCounter(cpu_is_device=True) as syncs:
        clip_preprocess_official(x, VIT_H, on_device=True)
    assert syncs.count == 0, syncs.summary()
    with SyncCounter(cpu_is_device=True) as syncs:
        clip_preprocess_official(x, VIT_H, on_device=False)
    assert syncs.count >= 1  # the host path reads the frames back (what the device path avoids)


def test_official_empty_batch():
    out = clip_preprocess_official(torch.zeros(0, 3, 50, 60), ODD_CROP)
    assert out.shape == (0, 3, 36, 32)


# ------------------------------------------------------------------ fast path tolerance


def _smooth_frames(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Natural-image-like content: low-frequency random colour fields (fractional 0..255 values)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 9, 16, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


def test_fast_within_documented_tolerance_of_official():
    """docs/model.md: on real frames at the 224 crop the paths differ by at most ~4/255, 0.47/255 on
    average, biased by about +0.45/255 (the official truncation); checked here on smooth content."""
    x01 = _smooth_frames(2, 360, 640, seed=0)
    x = 2 * x01 - 1
    fast, off = clip_preprocess_fast(x01, VIT_H), clip_preprocess_official(x, VIT_H)
    d = (fast.double() - off.double()) * torch.tensor(CLIP_STD, dtype=torch.float64).view(1, 3, 1, 1) * 255
    assert d.abs().max() <= 5.0
    assert d.abs().mean() <= 0.6
    assert 0.3 <= d.mean() <= 0.6


# ------------------------------------------------------------------ the config switch


def test_config_switch_default_and_validation():
    assert ModelConfig().backbone.clip_preprocess == "official"
    assert tiny_config().backbone.clip_preprocess == "official"
    fast = apply_overrides(tiny_config(), ["backbone.clip_preprocess=fast"]).validate()
    assert fast.backbone.clip_preprocess == "fast"
    with pytest.raises(ConfigError, match=r"backbone\.clip_preprocess='pil'.*official.*fast"):
        apply_overrides(tiny_config(), ["backbone.clip_preprocess=pil"]).validate()
    old = to_dict(tiny_config())
    del old["backbone"]["clip_preprocess"]  # a config saved before the switch existed
    assert from_dict(ModelConfig, old).validate().backbone.clip_preprocess == "official"


def _captured_clip_pixels(model, frames: torch.Tensor) -> torch.Tensor:
    seen = []
    hook = model.backbone.clip_vision.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["pixel_values"].clone()), with_kwargs=True)
    try:
        model.backbone.encode_visual(frames)
    finally:
        hook.remove()
    return seen[0]


def test_switch_reaches_the_backbone(tiny_root):
    from transformers import CLIPImageProcessorPil

    from vdit.models.vdit import VDIT

    b, t, h, w = 1, 2, 64, 96
    norm, _, x = _backbone_inputs(b * t, h, w, seed=11)
    frames = torch.from_numpy(norm).view(b, t, 3, h, w)
    pixels = {}
    for mode in ("official", "fast"):
        torch.manual_seed(0)
        model = VDIT.from_config(apply_overrides(tiny_config(tiny_root), [f"backbone.clip_preprocess={mode}"]))
        assert model.backbone.cfg.clip_preprocess == mode
        pixels[mode] = _captured_clip_pixels(model.eval(), frames)
    # The stock PIL processor as the CLIP folder configures it, on VD-IT's truncated integers.
    processor = CLIPImageProcessorPil.from_pretrained(tiny_root / "clip_vision")
    ints = _ref_ints(x.numpy()).astype(np.uint8)
    want = processor(images=list(ints), input_data_format="channels_first", return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixels["official"], want, atol=0, rtol=0)
    assert not torch.equal(pixels["fast"], pixels["official"])
