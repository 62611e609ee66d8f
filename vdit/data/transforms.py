"""Clip (video) transforms: the augmentation recipes of spec 5.5, one geometry for all frames of a clip.

A `ClipTransform` is a callable

    (frames: list[PIL.Image], masks: np.ndarray bool [T,H,W], valid: np.ndarray bool [T], text: str,
     rng: random.Random)
    -> (frames [T,3,H,W] float normalised, masks [T,H,W] float, boxes [T,4] cxcywh normalised,
        valid [T] bool, text)

built by `build_transforms(dataset, train)`. All randomness comes from the `rng` argument, so a
transform is deterministic given the rng state; geometric parameters (resize scale, crop window,
flip) are drawn once per clip, photometric parameters once per frame (as the official code does).

Differences from the official implementation (deliberate, documented in docs/data.md):
- Boxes are not carried through the geometric ops; they are recomputed from the final masks at the
  end (tight box over the mask pixels, right/bottom edges exclusive). The official `Check` step is
  therefore folded into that final stage: `valid = box non-empty AND incoming valid`.
- The horizontal flip swaps "left"/"right" only at the start of a word ("leftmost" -> "rightmost",
  but "bright" stays "bright"); the official code replaces substrings anywhere ("bright" -> "bleft").
- The HSV saturation step is computed in closed form (per channel c' = v - k (v - c), v = max
  channel), which is what the float BGR->HSV, S*k, HSV->BGR round trip of OpenCV computes; the
  final uint8 conversion wraps modulo 256 (the official `astype(uint8)` after an unclipped contrast
  step, made explicit and platform-independent here).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vdit.errors import ConfigError, InputError
from vdit.models.inputs import PIXEL_MAX, frames_to_tensor

# Ref-YTVOS / A2D training recipe (spec 5.5).
TRAIN_SCALES: tuple[int, ...] = (288, 320, 352, 392, 416, 448, 480, 512)
TRAIN_MAX_SIZE = 640
CROP_PRE_SCALES: tuple[int, ...] = (400, 500, 600)
CROP_MIN_SIZE = 384
CROP_MAX_SIZE = 600
RANDOM_SELECT_P = 0.5
HFLIP_P = 0.5

# RefCOCO training recipe (spec 5.5; image transforms, T = 1).
REFCOCO_SCALES: tuple[int, ...] = tuple(range(480, 768 + 1, 32))
REFCOCO_MAX_SIZE = 800
REFCOCO_CROP_SCALES: tuple[int, ...] = (296, 328, 360, 392, 416, 448, 480, 512)
REFCOCO_CROP_MAX_SIZE = 640

# Evaluation: short side 360, long side at most 640 (dataset classes).
EVAL_SHORT_SIDE = 360
EVAL_MAX_SIZE = 640

# PhotometricDistort (SgMg values, spec 5.5).
PHOTOMETRIC_P = 0.5
BRIGHTNESS_DELTA = 32.0
CONTRAST_RANGE: tuple[float, float] = (0.8, 1.2)
SATURATION_RANGE: tuple[float, float] = (0.8, 1.2)
CHANNEL_SWAP_P = 0.2
CHANNEL_PERMUTATIONS: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0),
)
UINT8_RANGE = 256

# Synthetic benchmark (vdit.data.synthetic): small native frames, so augment around the native size
# instead of upscaling to 288-512 px. No crop (it could remove an object a relation refers to) and
# no channel permutation and no uint8 wrap-around (both would change the colour words' meaning).
SYNTHETIC_SCALE_FACTORS: tuple[float, ...] = (0.875, 1.0, 1.125, 1.25)

DATASETS = ("ytvos", "davis", "mevis", "a2d", "jhmdb", "refcoco", "synthetic")

_LEFT_RIGHT = re.compile(r"(?<![a-z])(left|right)")


def normalize_text(s: str) -> str:
    """Lower-case and collapse whitespace (the official loaders' caption normalisation)."""
    return " ".join(str(s).lower().split())


def swap_left_right(text: str) -> str:
    """Swap the words 'left' and 'right' (also as word prefixes: 'leftmost' <-> 'rightmost')."""
    return _LEFT_RIGHT.sub(lambda m: "right" if m.group(1) == "left" else "left", text)


@dataclass
class Clip:
    """The state transforms operate on: PIL frames, bool masks [T,H,W], incoming valid [T], text."""

    frames: list[Image.Image]
    masks: torch.Tensor
    valid: torch.Tensor
    text: str

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        w, h = self.frames[0].size
        return h, w


Op = Callable[[Clip, random.Random], Clip]


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------

def resized_hw(h: int, w: int, short: int, max_size: int | None) -> tuple[int, int]:
    """Output (h, w) for a short-side resize with a long-side cap (DETR's get_size_with_aspect_ratio).

    If `long/short * short_target > max_size`, the target becomes `round(max_size * short / long)`;
    the long side is truncated (int), exactly as the official code.
    """
    if max_size is not None:
        lo, hi = float(min(h, w)), float(max(h, w))
        if hi / lo * short > max_size:
            short = int(round(max_size * lo / hi))
    if (w <= h and w == short) or (h <= w and h == short):
        return h, w
    if w < h:
        return int(short * h / w), short
    return short, int(short * w / h)


def resize_clip(clip: Clip, out_h: int, out_w: int) -> Clip:
    """Bilinear PIL resize of the frames, nearest (torch, then > 0.5) resize of the masks."""
    if (out_h, out_w) == clip.size:
        return clip
    frames = [f.resize((out_w, out_h), Image.BILINEAR) for f in clip.frames]
    masks = clip.masks
    if masks.numel() > 0:
        masks = F.interpolate(masks[:, None].float(), size=(out_h, out_w), mode="nearest")[:, 0] > 0.5
    else:
        masks = torch.zeros((masks.shape[0], out_h, out_w), dtype=torch.bool)
    return replace(clip, frames=frames, masks=masks)


def crop_clip(clip: Clip, top: int, left: int, height: int, width: int) -> Clip:
    """Crop every frame and mask to the same window."""
    frames = [f.crop((left, top, left + width, top + height)) for f in clip.frames]
    masks = clip.masks[:, top:top + height, left:left + width]
    return replace(clip, frames=frames, masks=masks)


def hflip_clip(clip: Clip) -> Clip:
    """Mirror frames and masks and swap left/right in the text."""
    frames = [f.transpose(Image.FLIP_LEFT_RIGHT) for f in clip.frames]
    return replace(clip, frames=frames, masks=clip.masks.flip(-1), text=swap_left_right(clip.text))


class RandomResize:
    """Short side drawn from `sizes` (once per clip), long side capped at `max_size`."""

    def __init__(self, sizes: Sequence[int], max_size: int | None = None):
        if not sizes:
            raise ConfigError("RandomResize: empty list of sizes")
        self.sizes = tuple(int(s) for s in sizes)
        self.max_size = max_size

    def __call__(self, clip: Clip, rng: random.Random) -> Clip:
        short = rng.choice(self.sizes)
        return resize_clip(clip, *resized_hw(*clip.size, short, self.max_size))

    def __repr__(self) -> str:
        return f"RandomResize({list(self.sizes)}, max_size={self.max_size})"


class RandomScale:
    """Short side = native short side x a factor drawn from `factors` (synthetic benchmark)."""

    def __init__(self, factors: Sequence[float], max_size: int | None = None):
        if not factors:
            raise ConfigError("RandomScale: empty list of factors")
        self.factors = tuple(float(f) for f in factors)
        self.max_size = max_size

    def __call__(self, clip: Clip, rng: random.Random) -> Clip:
        h, w = clip.size
        short = max(1, int(round(min(h, w) * rng.choice(self.factors))))
        return resize_clip(clip, *resized_hw(h, w, short, self.max_size))

    def __repr__(self) -> str:
        return f"RandomScale({list(self.factors)}, max_size={self.max_size})"


class RandomSizeCrop:
    """Crop w ~ U{min, min(W, max)}, h ~ U{min, min(H, max)} at a uniformly random position.

    When a side is already smaller than `min_size` (never the case after the official pre-resize to
    >= 400 px), that side is kept whole instead of failing.
    """

    def __init__(self, min_size: int, max_size: int):
        self.min_size = int(min_size)
        self.max_size = int(max_size)

    def __call__(self, clip: Clip, rng: random.Random) -> Clip:
        h, w = clip.size
        cw = rng.randint(min(self.min_size, w), min(w, self.max_size))
        ch = rng.randint(min(self.min_size, h), min(h, self.max_size))
        top = rng.randint(0, h - ch)
        left = rng.randint(0, w - cw)
        return crop_clip(clip, top, left, ch, cw)

    def __repr__(self) -> str:
        return f"RandomSizeCrop({self.min_size}, {self.max_size})"


class RandomHorizontalFlip:
    """Mirror the clip with probability p, swapping 'left'/'right' in the text."""

    def __init__(self, p: float = HFLIP_P):
        self.p = p

    def __call__(self, clip: Clip, rng: random.Random) -> Clip:
        return hflip_clip(clip) if rng.random() < self.p else clip

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomSelect:
    """Apply `first` with probability p, else `second`."""

    def __init__(self, first: Op, second: Op, p: float = RANDOM_SELECT_P):
        self.first, self.second, self.p = first, second, p

    def __call__(self, clip: Clip, rng: random.Random) -> Clip:
        return self.first(clip, rng) if rng.random() < self.p else self.second(clip, rng)

    def __repr__(self) -> str:
        return f"RandomSelect(p={self.p}, {self.first!r}, {self.second!r})"


class Compose:
    """Apply ops in order."""

    def __init__(self, ops: Sequence[Op]):
        self.ops = list(ops)

    def __call__(self, clip: Clip, rng: random.Random) -> Clip:
        for op in self.ops:
            clip = op(clip, rng)
        return clip

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(o) for o in self.ops) + ")"


class Resize:
    """Deterministic short-side resize with a long-side cap (evaluation)."""

    def __init__(self, short: int, max_size: int | None = None):
        self.short, self.max_size = int(short), max_size

    def __call__(self, clip: Clip, rng: random.Random) -> Clip:
        return resize_clip(clip, *resized_hw(*clip.size, self.short, self.max_size))

    def __repr__(self) -> str:
        return f"Resize({self.short}, max_size={self.max_size})"


class Identity:
    """No-op (evaluation at native resolution)."""

    def __call__(self, clip: Clip, rng: random.Random) -> Clip:
        return clip

    def __repr__(self) -> str:
        return "Identity()"


# ----------------------------------------------------------------------------------------------
# Photometric
# ----------------------------------------------------------------------------------------------

def _scale_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """HSV saturation x factor with hue and value fixed, for float images in [0, 255+].

    Equals OpenCV's float BGR->HSV, S *= factor, HSV->BGR round trip (which does not clamp S), and is
    symmetric in the channel order, so the official RGB-read-as-BGR mix-up does not matter here.
    """
    v = img.max(axis=2, keepdims=True)
    return v - factor * (v - img)


def wrap_to_uint8(img: np.ndarray) -> np.ndarray:
    """Truncate towards zero, then wrap modulo 256 (what a C float->uint8 cast does on x86)."""
    return np.mod(np.trunc(img).astype(np.int64), UINT8_RANGE).astype(np.uint8)


class PhotometricDistort:
    """SgMg's PhotometricDistort, with independent random parameters per frame (spec 5.5).

    Per frame: brightness +-32 (p 0.5, clipped to [0, 255]); then either contrast -> saturation or
    saturation -> contrast (each p 0.5, factors U(0.8, 1.2), no clipping); channel permutation
    (p 0.2, one of the 6 orders, identity included); uint8 conversion that wraps out-of-range values.

    `keep_colours=True` (the synthetic benchmark, whose colour words name exact hues) drops the
    permutation and saturates instead of wrapping: with wrapping, contrast 1.2 turns a 235-valued channel
    into 26, so a bright yellow object turned dark green or teal in the frames that drew such a contrast.
    """

    def __init__(self, keep_colours: bool = False):
        self.keep_colours = keep_colours

    def distort_frame(self, frame: Image.Image, rng: random.Random) -> Image.Image:
        img = np.asarray(frame.convert("RGB"), dtype=np.float32).copy()
        if rng.random() < PHOTOMETRIC_P:
            img = np.clip(img + rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA), 0.0, PIXEL_MAX)
        contrast_first = rng.random() < PHOTOMETRIC_P
        if contrast_first and rng.random() < PHOTOMETRIC_P:
            img = img * rng.uniform(*CONTRAST_RANGE)
        if rng.random() < PHOTOMETRIC_P:
            img = _scale_saturation(img, rng.uniform(*SATURATION_RANGE))
        if not contrast_first and rng.random() < PHOTOMETRIC_P:
            img = img * rng.uniform(*CONTRAST_RANGE)
        if self.keep_colours:
            return Image.fromarray(np.clip(np.trunc(img), 0.0, PIXEL_MAX).astype(np.uint8), mode="RGB")
        if rng.random() < CHANNEL_SWAP_P:
            img = img[:, :, list(CHANNEL_PERMUTATIONS[rng.randrange(len(CHANNEL_PERMUTATIONS))])]
        return Image.fromarray(wrap_to_uint8(img), mode="RGB")

    def __call__(self, clip: Clip, rng: random.Random) -> Clip:
        return replace(clip, frames=[self.distort_frame(f, rng) for f in clip.frames])

    def __repr__(self) -> str:
        return f"PhotometricDistort(keep_colours={self.keep_colours})"


# ----------------------------------------------------------------------------------------------
# Final stage: tensors, boxes, valid
# ----------------------------------------------------------------------------------------------

def masks_to_boxes_cxcywh(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight boxes of bool masks [T,H,W] -> (boxes [T,4] cxcywh normalised by (W,H), non-empty [T]).

    The box spans whole pixels: x1 = min column, x2 = max column + 1 (same for y). Empty masks give
    zero boxes and False.
    """
    t, h, w = masks.shape
    boxes = torch.zeros((t, 4), dtype=torch.float32)
    if h == 0 or w == 0:
        return boxes, torch.zeros(t, dtype=torch.bool)
    cols = masks.any(dim=1)  # [T,W]
    rows = masks.any(dim=2)  # [T,H]
    present = cols.any(dim=1)
    xs = torch.arange(w, dtype=torch.float32)
    ys = torch.arange(h, dtype=torch.float32)
    big = float(max(h, w) + 1)
    x1 = torch.where(cols, xs, big).amin(dim=1)
    x2 = torch.where(cols, xs, -1.0).amax(dim=1) + 1
    y1 = torch.where(rows, ys, big).amin(dim=1)
    y2 = torch.where(rows, ys, -1.0).amax(dim=1) + 1
    xyxy = torch.stack([x1, y1, x2, y2], dim=1)
    ok = present & (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    cxcywh = torch.stack(
        [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h], dim=1
    )
    boxes[ok] = cxcywh[ok]
    return boxes, ok


ClipOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]


class ClipTransform:
    """A recipe of clip ops followed by the final stage (tensors, boxes from masks, valid flags)."""

    def __init__(self, ops: Sequence[Op], name: str = ""):
        self.pipeline = Compose(ops)
        self.name = name

    def __call__(
        self,
        frames: Sequence[Image.Image],
        masks: np.ndarray,
        valid: np.ndarray,
        text: str,
        rng: random.Random,
    ) -> ClipOutput:
        clip = _make_clip(frames, masks, valid, text)
        clip = self.pipeline(clip, rng)
        masks_t = clip.masks & clip.valid[:, None, None]
        boxes, present = masks_to_boxes_cxcywh(masks_t)
        out_valid = present & clip.valid
        boxes[~out_valid] = 0.0
        return frames_to_tensor(clip.frames), masks_t.float(), boxes, out_valid, clip.text

    def __repr__(self) -> str:
        return f"ClipTransform[{self.name}]({self.pipeline!r})"


def _make_clip(frames: Sequence[Image.Image], masks: np.ndarray, valid: np.ndarray, text: str) -> Clip:
    """Validate shapes and build the internal Clip (text normalised, masks bool)."""
    if len(frames) == 0:
        raise InputError("clip transform: no frames")
    frames = [f if f.mode == "RGB" else f.convert("RGB") for f in frames]
    w, h = frames[0].size
    if any(f.size != (w, h) for f in frames):
        raise InputError(f"clip transform: frames of different sizes {sorted({f.size for f in frames})}")
    masks = np.asarray(masks)
    valid = np.asarray(valid)
    t = len(frames)
    if masks.shape != (t, h, w):
        raise InputError(f"clip transform: masks have shape {masks.shape}, frames need {(t, h, w)}")
    if valid.shape != (t,):
        raise InputError(f"clip transform: valid has shape {valid.shape}, expected {(t,)}")
    return Clip(
        frames=list(frames),
        masks=torch.from_numpy(masks != 0),
        valid=torch.from_numpy(valid.astype(bool)),
        text=normalize_text(text),
    )


# ----------------------------------------------------------------------------------------------
# Recipes
# ----------------------------------------------------------------------------------------------

def _scale_or_crop(scales: Sequence[int], max_size: int, crop_scales: Sequence[int],
                   first_scales: Sequence[int] | None = None, first_max: int | None = None) -> RandomSelect:
    """RandomSelect of [RandomResize(first)] or [RandomResize(400..600) -> crop -> RandomResize]."""
    first = RandomResize(first_scales or scales, first_max or max_size)
    second = Compose([
        RandomResize(CROP_PRE_SCALES),
        RandomSizeCrop(CROP_MIN_SIZE, CROP_MAX_SIZE),
        RandomResize(crop_scales, max_size),
    ])
    return RandomSelect(first, second, RANDOM_SELECT_P)


def build_transforms(
    dataset: str,
    train: bool,
    *,
    max_size: int | None = None,
    eval_short_side: int | None = None,
) -> ClipTransform:
    """The spec 5.5 recipe for `dataset` in {ytvos, davis, mevis, a2d, jhmdb, refcoco, synthetic}.

    - ytvos / davis train: RandomSelect(0.5) of [RandomResize(288..512, max 640)] or
      [RandomResize(400/500/600) -> RandomSizeCrop(384, 600) -> RandomResize(288..512, max 640)],
      then HorizontalFlip(0.5) with text swap, PhotometricDistort, normalise.
    - a2d / jhmdb / mevis train: Flip -> PhotometricDistort -> the same RandomSelect -> normalise
      (MeViS's released ReferFormer-style loader uses the A2D order).
    - refcoco train: Flip -> RandomSelect of [RandomResize(480..768 step 32, max 800)] or
      [RandomResize(400/500/600) -> RandomSizeCrop(384, 600) -> RandomResize(296..512, max 640)].
    - synthetic train: scale jitter x{0.875, 1, 1.125, 1.25} of the native size -> Flip ->
      PhotometricDistort keeping colours (no channel permutation, saturating uint8).
    - eval: short side `eval_short_side` (default 360), long side <= `max_size` (default 640);
      synthetic eval keeps the native size unless `eval_short_side` is given.

    `max_size` (train) overrides the final long-side cap (640, or 800 for the refcoco first branch).
    """
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r} for transforms; expected one of {DATASETS}")
    if not train:
        if dataset == "synthetic" and eval_short_side is None:
            return ClipTransform([Identity()], name=f"{dataset}/eval")
        short = EVAL_SHORT_SIDE if eval_short_side is None else eval_short_side
        cap = EVAL_MAX_SIZE if max_size is None else max_size
        return ClipTransform([Resize(short, cap)], name=f"{dataset}/eval")

    if dataset in ("ytvos", "davis"):
        cap = TRAIN_MAX_SIZE if max_size is None else max_size
        ops: list[Op] = [
            _scale_or_crop(TRAIN_SCALES, cap, TRAIN_SCALES),
            RandomHorizontalFlip(HFLIP_P),
            PhotometricDistort(),
        ]
    elif dataset in ("a2d", "jhmdb", "mevis"):
        cap = TRAIN_MAX_SIZE if max_size is None else max_size
        ops = [
            RandomHorizontalFlip(HFLIP_P),
            PhotometricDistort(),
            _scale_or_crop(TRAIN_SCALES, cap, TRAIN_SCALES),
        ]
    elif dataset == "refcoco":
        first_cap = REFCOCO_MAX_SIZE if max_size is None else max_size
        crop_cap = REFCOCO_CROP_MAX_SIZE if max_size is None else max_size
        ops = [
            RandomHorizontalFlip(HFLIP_P),
            _scale_or_crop(REFCOCO_CROP_SCALES, crop_cap, REFCOCO_CROP_SCALES,
                           first_scales=REFCOCO_SCALES, first_max=first_cap),
        ]
    else:  # synthetic
        ops = [
            RandomScale(SYNTHETIC_SCALE_FACTORS, max_size),
            RandomHorizontalFlip(HFLIP_P),
            PhotometricDistort(keep_colours=True),
        ]
    return ClipTransform(ops, name=f"{dataset}/train")
