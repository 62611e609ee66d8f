"""Colour overlays of predicted masks on video frames (one distinct colour per referring expression)."""
from __future__ import annotations

import numpy as np

from vdit.errors import InputError

# Opacity of the tint inside a mask; the mask boundary is drawn opaque so small objects stay visible.
OVERLAY_ALPHA = 0.5
# Distinct, colour-blind-friendlier hues (Sasha Trubetskoy's "20 distinct colours", first eight);
# text i gets TEXT_COLORS[i % len(TEXT_COLORS)].
TEXT_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25),
    (145, 30, 180), (70, 240, 240), (245, 130, 48), (240, 50, 230),
)


def text_color(index: int) -> tuple[int, int, int]:
    """RGB colour of the index-th referring expression."""
    return TEXT_COLORS[index % len(TEXT_COLORS)]


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a boolean mask [H, W] with a 4-neighbour outside the mask (the image border counts as inside)."""
    padded = np.pad(mask, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def overlay_masks(frame: np.ndarray, masks: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """frame uint8 [H, W, 3], masks bool [S, H, W] -> uint8 [H, W, 3]: mask s tinted with text_color(s)
    at opacity `alpha` and outlined; later texts are drawn over earlier ones where masks overlap.

    Only the pixels inside some mask are computed (in float32, rounded once at the end); the others are
    copied, which is what the blend leaves them. A 24-megapixel photo costs its mask area, not its size."""
    frame = np.asarray(frame)
    masks = np.asarray(masks, dtype=bool)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise InputError(f"overlay: frame must be H x W x 3, got {frame.shape}")
    if masks.ndim != 3 or masks.shape[1:] != frame.shape[:2]:
        raise InputError(f"overlay: masks must be [S, {frame.shape[0]}, {frame.shape[1]}], got {masks.shape}")
    out = np.array(frame, dtype=np.uint8)
    union = masks.any(axis=0)
    if not union.any():
        return out
    inside = np.nonzero(union)
    pixels = frame[inside].astype(np.float32)  # [N, 3]: the pixels any mask touches
    for s, mask in enumerate(masks):
        if not mask.any():
            continue
        color = np.asarray(text_color(s), dtype=np.float32)
        tint = mask[inside]
        pixels[tint] = (1.0 - alpha) * pixels[tint] + alpha * color
        pixels[_boundary_near(mask)[inside]] = color
    out[inside] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return out


def _boundary_near(mask: np.ndarray) -> np.ndarray:
    """mask_boundary(mask), computed on the mask's bounding box plus a 1-pixel margin (the margin is
    outside the mask, so the box edges see the same neighbours as in the whole frame)."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[0])
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[1])
    out = np.zeros_like(mask)
    out[r0:r1, c0:c1] = mask_boundary(mask[r0:r1, c0:c1])
    return out
