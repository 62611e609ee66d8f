"""Indexed ("palette", PIL mode 'P') PNG masks, as used by YouTube-VOS, DAVIS and their referring variants.

A pixel's palette *index* is the object id (0 = background, 255 = void in DAVIS ground truth); the
palette colours are only for display. `read_index_png` returns the index map whatever way the file
was saved ('P', 'L', 1-bit, 16-bit grey, or RGB painted with the standard palette).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vdit.errors import DataError, InputError

PALETTE_SIZE = 256
BITS_PER_CHANNEL = 8
MAX_INDEX = 255


def voc_palette(num_colors: int = PALETTE_SIZE) -> list[int]:
    """The PASCAL-VOC / DAVIS colour map, flat [r0,g0,b0,r1,...] (index 1 = dark red, 2 = dark green...).

    Colour i spreads the bits of i over the three channels, most significant bit first.
    """
    palette: list[int] = []
    for i in range(num_colors):
        r = g = b = 0
        c = i
        for j in range(BITS_PER_CHANNEL):
            shift = BITS_PER_CHANNEL - 1 - j
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.extend((r, g, b))
    return palette


DAVIS_PALETTE: list[int] = voc_palette()


def write_index_png(path: str | Path, ids: np.ndarray, palette: list[int] | None = None) -> Path:
    """Save an object-id map [H,W] (values 0..255) as a palette PNG (DAVIS palette by default)."""
    path = Path(path)
    arr = np.asarray(ids)
    if arr.ndim != 2:
        raise InputError(f"write_index_png {path}: ids must be [H,W], got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > MAX_INDEX):
        raise InputError(f"write_index_png {path}: ids must be within 0..{MAX_INDEX}")
    img = Image.fromarray(arr.astype(np.uint8), mode="P")
    img.putpalette(palette if palette is not None else DAVIS_PALETTE)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(f"mask file not found: {path}")
    try:
        img = Image.open(path)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read mask PNG {path}: {exc}") from exc


def read_index_png(path: str | Path) -> np.ndarray:
    """Object-id map [H,W] uint8 of a mask PNG (palette index for 'P' images, value for grey ones)."""
    path = Path(path)
    img = _open(path)
    if img.mode == "P":
        return np.array(img, dtype=np.uint8)
    if img.mode in ("L", "1"):
        return np.array(img.convert("L"), dtype=np.uint8)
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):
        arr = np.array(img)
        if arr.size and (arr.min() < 0 or arr.max() > MAX_INDEX):
            raise DataError(f"mask PNG {path} has values outside 0..{MAX_INDEX}")
        return arr.astype(np.uint8)
    if img.mode in ("RGB", "RGBA"):
        return _rgb_to_index(np.array(img.convert("RGB")), path)
    raise DataError(f"mask PNG {path} has unsupported mode {img.mode!r}")


def _rgb_to_index(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Map colours painted with the DAVIS palette back to indices; unknown colours are an error."""
    pal = np.asarray(DAVIS_PALETTE, dtype=np.int64).reshape(-1, 3)
    keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    lookup = {int(k): i for i, k in reversed(list(enumerate(keys)))}
    flat = rgb.reshape(-1, 3).astype(np.int64)
    codes = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    uniq, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(u) for u in uniq if int(u) not in lookup]
    if unknown:
        raise DataError(
            f"RGB mask PNG {path} uses colours outside the DAVIS palette, e.g. #{unknown[0]:06x}; "
            "save masks as palette ('P') or grey ('L') PNGs"
        )
    idx = np.array([lookup[int(u)] for u in uniq], dtype=np.uint8)
    return idx[inverse].reshape(rgb.shape[:2])


def read_palette(path: str | Path) -> list[int]:
    """The flat palette of a palette PNG (e.g. to write results with the ground truth's colours)."""
    path = Path(path)
    img = _open(path)
    if img.mode != "P":
        raise DataError(f"{path} is not a palette PNG (mode {img.mode!r})")
    pal = img.getpalette() or []
    return list(pal) + [0] * (3 * PALETTE_SIZE - len(pal))
