"""Rendering a synthetic video: shapes drawn supersampled over a textured background, nearer objects
occluding farther ones; masks are the visible pixels."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from vdit.data.synthetic.world import COLOURS, SyntheticObject
from vdit.errors import ConfigError
from vdit.models.inputs import PIXEL_MAX

SUPERSAMPLE = 4
STAR_INNER_RATIO = 0.45
SQUARE_HALF_SIDE = 0.85     # of the radius, so squares and circles have similar areas
OBJECT_SHADE_JITTER = 12.0  # per-object brightness offset
OBJECT_PIXEL_NOISE = 4.0
BACKGROUND_LEVEL = (90.0, 170.0)
BACKGROUND_TINT = 15.0
BACKGROUND_AMPLITUDE = (12.0, 30.0)
BACKGROUND_NOISE = 6.0
FRAME_NOISE = 2.5


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = SQUARE_HALF_SIDE * r
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape == "triangle":
        return [(cx + r * math.cos(math.radians(a)), cy - r * math.sin(math.radians(a))) for a in (90, 210, 330)]
    if shape == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * STAR_INNER_RATIO
            ang = math.radians(90 + 36 * i)
            pts.append((cx + rad * math.cos(ang), cy - rad * math.sin(ang)))
        return pts
    raise ConfigError(f"unknown shape {shape!r}")


def shape_mask(shape: str, cx: float, cy: float, r: float, height: int, width: int) -> np.ndarray:
    """Bool mask [H,W] of a shape (supersampled, area-thresholded at 1/2 per pixel)."""
    out = np.zeros((height, width), dtype=bool)
    x0, x1 = max(0, int(math.floor(cx - r)) - 1), min(width, int(math.ceil(cx + r)) + 2)
    y0, y1 = max(0, int(math.floor(cy - r)) - 1), min(height, int(math.ceil(cy + r)) + 2)
    if x0 >= x1 or y0 >= y1:
        return out
    s = SUPERSAMPLE
    canvas = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    draw = ImageDraw.Draw(canvas)
    lx, ly = (cx - x0) * s, (cy - y0) * s
    if shape == "circle":
        draw.ellipse([lx - r * s, ly - r * s, lx + r * s, ly + r * s], fill=255)
    else:
        draw.polygon([(x * s, y * s) for x, y in _shape_points(shape, cx - x0, cy - y0, r)], fill=255)
    small = np.asarray(canvas.resize((x1 - x0, y1 - y0), Image.BOX))
    out[y0:y1, x0:x1] = small >= 128
    return out


def _background(np_rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A low-saturation texture (stripes, checker, blobs or noise) [H,W,3] float."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    level = np_rng.uniform(*BACKGROUND_LEVEL)
    tint = np_rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, size=3)
    amp = np_rng.uniform(*BACKGROUND_AMPLITUDE)
    kind = int(np_rng.integers(4))
    if kind == 0:  # stripes
        theta = np_rng.uniform(0, math.pi)
        period = np_rng.uniform(6, 20)
        pattern = np.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)
    elif kind == 1:  # checker
        cell = int(np_rng.integers(5, 14))
        pattern = (((xx // cell) + (yy // cell)) % 2) * 2.0 - 1.0
    elif kind == 2:  # blobs
        pattern = np.zeros_like(xx)
        for _ in range(4):
            bx, by = np_rng.uniform(0, width), np_rng.uniform(0, height)
            sigma = np_rng.uniform(0.1, 0.3) * min(height, width)
            pattern += np_rng.choice([-1.0, 1.0]) * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma ** 2))
    else:  # smooth noise
        coarse = np_rng.uniform(-1, 1, size=(max(2, height // 8), max(2, width // 8)))
        coarse_img = Image.fromarray(coarse.astype(np.float32), mode="F")
        pattern = np.asarray(coarse_img.resize((width, height), Image.BILINEAR))
    bg = level + tint[None, None, :] + amp * pattern[..., None]
    bg = bg + np_rng.normal(0, BACKGROUND_NOISE, size=(height, width, 1))
    return bg.astype(np.float32)


def render_video(objects: list[SyntheticObject], np_rng: np.random.Generator, num_frames: int,
            height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frames [T,H,W,3] uint8, visible-id masks [T,H,W] uint8, full areas and visible areas [T,K]."""
    bg = _background(np_rng, height, width)
    shades = {o.obj_id: np_rng.uniform(-OBJECT_SHADE_JITTER, OBJECT_SHADE_JITTER) for o in objects}
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    ids = np.zeros((num_frames, height, width), dtype=np.uint8)
    full = np.zeros((num_frames, len(objects)))
    order = sorted(objects, key=lambda o: o.depth)
    for t in range(num_frames):
        img = bg + np_rng.normal(0, FRAME_NOISE, size=(height, width, 1)).astype(np.float32)
        for o in order:
            cx, cy = o.centres[t]
            m = shape_mask(o.shape, cx, cy, o.radius, height, width)
            full[t, o.obj_id - 1] = m.sum()
            colour = np.asarray(COLOURS[o.colour], dtype=np.float32) + shades[o.obj_id]
            noise = np_rng.normal(0, OBJECT_PIXEL_NOISE, size=(int(m.sum()), 1)).astype(np.float32)
            img[m] = colour[None, :] + noise
            ids[t][m] = o.obj_id
        frames[t] = np.clip(np.rint(img), 0, PIXEL_MAX).astype(np.uint8)
    visible = np.stack([(ids == o.obj_id).sum(axis=(1, 2)) for o in objects], axis=1)
    return frames, ids, full, visible
