"""A generated referring-video benchmark in the exact Ref-YouTube-VOS layout (the miniature world's data).

Each video shows 3-5 moving shapes over a textured background. An object has a shape (circle, square,
triangle, star, diamond), a colour (red, green, blue, yellow, purple, cyan), a size (small / large), a
straight-line motion (moving left / right / up / down) and a depth (nearer objects occlude farther ones;
masks are the *visible* pixels). Expressions are built from those attributes and from spatial relations:

    "the green triangle", "the small red circle moving left", "the square below the blue star",
    "the large circle to the right of the yellow square"

Design, so that a text-blind model cannot score well:
- a video draws its objects' shapes from a pool of 2-3 shapes and their colours from a pool of 2-3
  colours, so distractors share shape and/or colour with every target;
- every expression identifies exactly one object (checked against the generated geometry: a
  relation holds with a margin in every frame for the target, and in no frame for the other
  objects its head noun phrase matches); relation expressions are only used when the head noun
  phrase alone matches at least two objects, so the relation has to be read;
- every video has at least 2 referred objects and at most `expressions_per_object` (2) expressions per
  object, so always segmenting the same object of a video gets at most half of its expressions right.

Splits: `train` and `valid` never contain the held-out colour+shape pairs `HELDOUT_PAIRS`; `heldout`
videos contain two objects with held-out pairs (every colour and shape is seen in training, only the
combination is new), and only those objects are referred to, always naming colour and shape.
Unlike the real Ref-YTVOS `valid`, `valid` and `heldout` ship Annotations so J&F can be computed.

Everything is deterministic from `seed`: the same arguments write byte-identical files.
`<root>/synthetic_benchmark.json` records the parameters and, per video, every object's attributes and
per-frame centre and every expression's structure (kind, attributes, relation, held-out flag).
"""
from __future__ import annotations

import math
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from vdit.data.transforms import ClipTransform
from vdit.data.ytvos import RefYTVOSDataset
from vdit.data.ytvos_writer import dump_json, write_ytvos_video
from vdit.errors import ConfigError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 65),
    "blue": (45, 90, 225),
    "yellow": (235, 205, 40),
    "purple": (150, 65, 195),
    "cyan": (40, 200, 210),
}
# Radius as a fraction of the frame's short side, drawn uniformly per object.
SIZES: dict[str, tuple[float, float]] = {"small": (0.085, 0.105), "large": (0.155, 0.185)}
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
RELATIONS: dict[str, str] = {
    "left": "to the left of", "right": "to the right of", "above": "above", "below": "below",
}
# Colour+shape pairs never shown in train/valid (every colour and shape still appears elsewhere).
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("red", "star"), ("green", "circle"), ("blue", "triangle"), ("yellow", "square"), ("purple", "diamond"),
})
SPLIT_NAMES = ("train", "valid", "heldout")

NUM_OBJECTS_RANGE = (3, 5)
SHAPE_POOL_RANGE = (2, 3)
COLOUR_POOL_RANGE = (2, 3)
HELDOUT_OBJECTS = 2
EXPRESSIONS_PER_OBJECT = 2
MIN_TARGETS = 2
RELATION_PREFERENCE = 0.75
# Total displacement over the video, as a fraction of the frame side along the motion.
TRAVEL_RANGE = (0.25, 0.45)
# Relations need this centre gap (fraction of the short side) in every frame.
RELATION_GAP = 0.06
# Occlusion limit: every object keeps this visible fraction of its area in this share of frames.
MIN_VISIBLE_FRACTION = 0.3
MIN_VISIBLE_FRAMES = 0.75
MAX_LAYOUT_TRIES = 500
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
FRAME_NAME_STEP = 5         # frame names 00000, 00005, ... as Ref-YTVOS (every 5th raw frame)
MIN_SIDE = 32
DEFAULT_NUM_FRAMES = 12
DEFAULT_HEIGHT = 96
DEFAULT_WIDTH = 160
INFO_FILE = "synthetic_benchmark.json"
PIXEL_MAX = 255.0

# Attribute subsets (besides the always-present shape) tried for plain descriptions.
ATTRIBUTE_TEMPLATES: tuple[tuple[str, ...], ...] = (
    (), ("colour",), ("size",), ("motion",), ("size", "colour"), ("colour", "motion"),
    ("size", "motion"), ("size", "colour", "motion"),
)
# Attribute subsets for a relation's head noun phrase and its anchor (no motion: keep them short).
NOUN_TEMPLATES: tuple[tuple[str, ...], ...] = ((), ("colour",), ("size",), ("size", "colour"))


@dataclass
class SyntheticObject:
    obj_id: int
    shape: str
    colour: str
    size: str
    motion: str
    radius: float
    depth: int                      # 0 = farthest (drawn first)
    centres: list[tuple[float, float]]  # (x, y) per frame

    @property
    def heldout(self) -> bool:
        return (self.colour, self.shape) in HELDOUT_PAIRS


@dataclass
class SyntheticExpression:
    exp_id: str
    text: str
    obj_id: int
    kind: str                       # "attribute", "motion" or "relation"
    attrs: dict[str, str]
    relation: str | None = None
    anchor_id: int | None = None
    anchor_attrs: dict[str, str] = field(default_factory=dict)
    heldout: bool = False


@dataclass
class SyntheticVideo:
    frames: np.ndarray              # uint8 [T,H,W,3]
    masks: np.ndarray               # uint8 [T,H,W], object ids (0 = background), visible pixels
    objects: list[SyntheticObject]
    expressions: list[SyntheticExpression]

    def expressions_dict(self) -> dict[str, dict[str, str]]:
        """The meta_expressions entry ({exp_id: {"exp", "obj_id"}})."""
        return {e.exp_id: {"exp": e.text, "obj_id": str(e.obj_id)} for e in self.expressions}

    def info(self) -> dict[str, Any]:
        objs = []
        for o in self.objects:
            d = asdict(o)
            d["centres"] = [[round(x, 3), round(y, 3)] for x, y in o.centres]
            d["radius"] = round(o.radius, 3)
            d["heldout"] = o.heldout
            objs.append(d)
        return {"objects": objs, "expressions": [asdict(e) for e in self.expressions]}


# ----------------------------------------------------------------------------------------------
# Descriptions
# ----------------------------------------------------------------------------------------------

def describe(attrs: dict[str, str]) -> str:
    """Noun phrase without article: '[size] [colour] shape [moving dir]'."""
    words = [attrs[k] for k in ("size", "colour") if k in attrs] + [attrs["shape"]]
    if "motion" in attrs:
        words += ["moving", attrs["motion"]]
    return " ".join(words)


def matches(obj: SyntheticObject, attrs: dict[str, str]) -> bool:
    return all(getattr(obj, k) == v for k, v in attrs.items())


def relation_gaps(obj: SyntheticObject, anchor: SyntheticObject, relation: str) -> np.ndarray:
    """Per-frame signed distance by which `obj` lies on the `relation` side of `anchor` (pixels)."""
    o = np.asarray(obj.centres)
    a = np.asarray(anchor.centres)
    if relation == "left":
        return a[:, 0] - o[:, 0]
    if relation == "right":
        return o[:, 0] - a[:, 0]
    if relation == "above":
        return a[:, 1] - o[:, 1]
    if relation == "below":
        return o[:, 1] - a[:, 1]
    raise ConfigError(f"unknown relation {relation!r}")


def _attrs(obj: SyntheticObject, keys: Sequence[str]) -> dict[str, str]:
    d = {k: getattr(obj, k) for k in keys}
    d["shape"] = obj.shape
    return d


def _unique(objects: Sequence[SyntheticObject], attrs: dict[str, str]) -> bool:
    return sum(matches(o, attrs) for o in objects) == 1


def _candidates(target: SyntheticObject, objects: Sequence[SyntheticObject], margin: float,
                colour_required: bool) -> list[SyntheticExpression]:
    """Every expression that identifies `target` alone among `objects`."""
    out = []
    for keys in ATTRIBUTE_TEMPLATES:
        if colour_required and "colour" not in keys:
            continue
        attrs = _attrs(target, keys)
        if _unique(objects, attrs):
            kind = "motion" if "motion" in keys else "attribute"
            out.append(SyntheticExpression("", f"the {describe(attrs)}", target.obj_id, kind, attrs,
                                           heldout=target.heldout))
    if colour_required:
        return out
    for anchor in objects:
        if anchor is target:
            continue
        anchor_attrs = next((_attrs(anchor, k) for k in NOUN_TEMPLATES if _unique(objects, _attrs(anchor, k))), None)
        if anchor_attrs is None:
            continue
        for rel, phrase in RELATIONS.items():
            if not (relation_gaps(target, anchor, rel) > margin).all():
                continue
            for keys in NOUN_TEMPLATES:
                head = _attrs(target, keys)
                group = [o for o in objects if matches(o, head)]
                others = [o for o in group if o is not target]
                if len(group) < 2 or any((relation_gaps(o, anchor, rel) > 0).any() for o in others):
                    continue
                text = f"the {describe(head)} {phrase} the {describe(anchor_attrs)}"
                out.append(SyntheticExpression("", text, target.obj_id, "relation", head, rel,
                                               anchor.obj_id, anchor_attrs))
                break
    return out


def _choose_expressions(rng: random.Random, cands: list[SyntheticExpression], k: int) -> list[SyntheticExpression]:
    """Up to k candidates with distinct texts, preferring distinct kinds."""
    chosen: list[SyntheticExpression] = []
    pool = list(cands)
    rng.shuffle(pool)
    while pool and len(chosen) < k:
        used = {c.kind for c in chosen}
        fresh = sorted({c.kind for c in pool} - used) or sorted({c.kind for c in pool})
        # Relations are rarer candidates than attributes; favour them when one exists.
        if "relation" in fresh and rng.random() < RELATION_PREFERENCE:
            kind = "relation"
        else:
            kind = rng.choice(fresh)
        pick = next(c for c in pool if c.kind == kind)
        pool = [c for c in pool if c is not pick and c.text != pick.text]
        chosen.append(pick)
    return chosen


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

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


def _render(objects: list[SyntheticObject], np_rng: np.random.Generator, num_frames: int,
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


# ----------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------

def _sample_combos(rng: random.Random, k: int, heldout: bool,
                   distinct_colours: bool = False) -> list[tuple[str, str]] | None:
    shapes = rng.sample(SHAPES, rng.randint(*SHAPE_POOL_RANGE))
    if distinct_colours:
        colours = rng.sample(sorted(COLOURS), k)
        held_shapes = {c: [s for s in shapes if (c, s) in HELDOUT_PAIRS] for c in colours}
        carriers = [c for c in colours if held_shapes[c]][:HELDOUT_OBJECTS] if heldout else []
        if heldout and len(carriers) < HELDOUT_OBJECTS:
            return None
        combos = [(c, rng.choice(held_shapes[c])) for c in carriers]
        for c in (c for c in colours if c not in carriers):
            allowed = [s for s in shapes if (c, s) not in HELDOUT_PAIRS]
            if not allowed:
                return None
            combos.append((c, rng.choice(allowed)))
    else:
        colours = rng.sample(sorted(COLOURS), rng.randint(*COLOUR_POOL_RANGE))
        pairs = [(c, s) for c in colours for s in shapes]
        allowed = [p for p in pairs if p not in HELDOUT_PAIRS]
        held = [p for p in pairs if p in HELDOUT_PAIRS]
        if not allowed:
            return None
        if heldout:
            if len(held) < HELDOUT_OBJECTS:
                return None
            combos = rng.sample(held, HELDOUT_OBJECTS) + [rng.choice(allowed) for _ in range(k - HELDOUT_OBJECTS)]
        else:
            combos = [rng.choice(allowed) for _ in range(k)]
    # Every object must share its colour or its shape with another one (no trivially unique object).
    for i, (c, s) in enumerate(combos):
        if not any(j != i and (c2 == c or s2 == s) for j, (c2, s2) in enumerate(combos)):
            return None
    rng.shuffle(combos)
    return combos


def _trajectory(rng: random.Random, radius: float, motion: str, num_frames: int, height: int,
                width: int) -> list[tuple[float, float]] | None:
    dx, dy = DIRECTIONS[motion]
    axis = width if dx else height
    travel = rng.uniform(*TRAVEL_RANGE) * axis
    lo_x, hi_x = radius, width - radius
    lo_y, hi_y = radius, height - radius
    # Start range so the whole path stays inside the frame.
    sx_lo = lo_x + (travel if dx < 0 else 0)
    sx_hi = hi_x - (travel if dx > 0 else 0)
    sy_lo = lo_y + (travel if dy < 0 else 0)
    sy_hi = hi_y - (travel if dy > 0 else 0)
    if sx_lo > sx_hi or sy_lo > sy_hi:
        return None
    x0, y0 = rng.uniform(sx_lo, sx_hi), rng.uniform(sy_lo, sy_hi)
    steps = max(1, num_frames - 1)
    return [(x0 + dx * travel * t / steps, y0 + dy * travel * t / steps) for t in range(num_frames)]


def generate_video(
    rng: random.Random,
    *,
    num_frames: int = DEFAULT_NUM_FRAMES,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    num_objects: int | None = None,
    heldout: bool = False,
    expressions_per_object: int = EXPRESSIONS_PER_OBJECT,
    distinct_colours: bool = False,
) -> SyntheticVideo:
    """One video with its frames, visible-id masks, objects and expressions (all from `rng`).

    `heldout=True` places `HELDOUT_OBJECTS` objects with held-out colour+shape pairs and refers only
    to them (naming colour and shape); otherwise held-out pairs never appear.
    `distinct_colours=True`: the objects' colours are pairwise distinct (their shapes still repeat) and
    every expression names its target's colour; no relation expressions.
    """
    if num_frames < 2:
        raise ConfigError(f"synthetic videos need at least 2 frames, got {num_frames}")
    if min(height, width) < MIN_SIDE:
        raise ConfigError(f"synthetic frames must be at least {MIN_SIDE}x{MIN_SIDE}, got {height}x{width}")
    lo, hi = NUM_OBJECTS_RANGE
    if num_objects is not None and not (max(lo, HELDOUT_OBJECTS if heldout else 0) <= num_objects <= hi):
        raise ConfigError(f"num_objects must be in {lo}..{hi}, got {num_objects}")
    np_rng = np.random.default_rng(rng.getrandbits(63))
    short = min(height, width)
    margin = RELATION_GAP * short
    for _ in range(MAX_LAYOUT_TRIES):
        k = num_objects if num_objects is not None else rng.randint(lo, hi)
        combos = _sample_combos(rng, k, heldout, distinct_colours)
        if combos is None:
            continue
        depths = list(range(k))
        rng.shuffle(depths)
        objects = []
        for i, (colour, shape) in enumerate(combos):
            size = rng.choice(sorted(SIZES))
            radius = rng.uniform(*SIZES[size]) * short
            motion = rng.choice(sorted(DIRECTIONS))
            centres = _trajectory(rng, radius, motion, num_frames, height, width)
            if centres is None:
                break
            objects.append(SyntheticObject(i + 1, shape, colour, size, motion, radius, depths[i], centres))
        if len(objects) != k:
            continue
        frames, masks, full, visible = _render(objects, np_rng, num_frames, height, width)
        frac = visible / np.maximum(full, 1)
        if ((frac >= MIN_VISIBLE_FRACTION).mean(axis=0) < MIN_VISIBLE_FRAMES).any():
            continue
        targets = [o for o in objects if o.heldout] if heldout else objects
        expressions: list[SyntheticExpression] = []
        for o in targets:
            cands = _candidates(o, objects, margin, colour_required=heldout or distinct_colours)
            expressions += _choose_expressions(rng, cands, expressions_per_object)
        if len({e.obj_id for e in expressions}) < min(MIN_TARGETS, len(targets)):
            continue
        for i, e in enumerate(expressions):
            e.exp_id = str(i)
        return SyntheticVideo(frames, masks, objects, expressions)
    raise ConfigError(
        f"could not lay out a synthetic video in {MAX_LAYOUT_TRIES} tries at {height}x{width}; "
        "use larger frames"
    )


# ----------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------

def video_rng(seed: int, split: str, index: int) -> random.Random:
    """The rng of one benchmark video: a pure function of (seed, split, index)."""
    return random.Random(f"vdit-synthetic/{seed}/{split}/{index}")


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and any(root.iterdir()):
        if not (root / INFO_FILE).is_file():
            raise ConfigError(f"{root} exists, is not empty and is not a synthetic benchmark; choose another folder")
        if not overwrite:
            raise ConfigError(f"{root} already holds a synthetic benchmark (pass overwrite=True / --overwrite)")
        for name in (*SPLIT_NAMES, "meta_expressions"):
            if (root / name).is_dir():
                shutil.rmtree(root / name)
        (root / INFO_FILE).unlink()
    root.mkdir(parents=True, exist_ok=True)


def benchmark_params(*, num_train_videos: int, num_valid_videos: int, num_heldout_videos: int, num_frames: int,
                     height: int, width: int, seed: int, distinct_colours: bool = False) -> dict[str, Any]:
    """The `params` that `make_synthetic_benchmark` records in `synthetic_benchmark.json` for these
    arguments: a folder holds the benchmark of some arguments exactly when its params equal these.
    `distinct_colours` is recorded only when True, so older benchmarks keep their params."""
    params: dict[str, Any] = {
        "num_frames": num_frames, "height": height, "width": width, "seed": seed,
        "videos": {"train": num_train_videos, "valid": num_valid_videos, "heldout": num_heldout_videos},
        "heldout_pairs": sorted([list(p) for p in HELDOUT_PAIRS])}
    if distinct_colours:
        params["distinct_colours"] = True
    return params


def make_synthetic_benchmark(
    root: str | Path,
    *,
    num_train_videos: int = 200,
    num_valid_videos: int = 40,
    num_heldout_videos: int = 40,
    num_frames: int = DEFAULT_NUM_FRAMES,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    seed: int = 0,
    overwrite: bool = False,
    distinct_colours: bool = False,
) -> dict[str, Any]:
    """Write train / valid / heldout splits in the Ref-YouTube-VOS layout; returns a summary dict.
    `distinct_colours`: see `generate_video` (recorded in the parameters only when True)."""
    root = Path(root)
    counts = {"train": num_train_videos, "valid": num_valid_videos, "heldout": num_heldout_videos}
    if any(n < 0 for n in counts.values()):
        raise ConfigError(f"video counts must be >= 0, got {counts}")
    _prepare_root(root, overwrite)
    params = benchmark_params(num_train_videos=num_train_videos, num_valid_videos=num_valid_videos,
                              num_heldout_videos=num_heldout_videos, num_frames=num_frames, height=height,
                              width=width, seed=seed, distinct_colours=distinct_colours)
    info: dict[str, Any] = {"format": "vdit-synthetic-1", "params": params, "splits": {}}
    summary: dict[str, Any] = {"root": str(root), "params": params, "splits": {}}
    names = [f"{FRAME_NAME_STEP * i:05d}" for i in range(num_frames)]
    for split, n in counts.items():
        split_info: dict[str, Any] = {}
        kinds: dict[str, int] = {}
        n_exp = n_obj = 0
        for i in range(n):
            video = generate_video(video_rng(seed, split, i), num_frames=num_frames, height=height,
                                   width=width, heldout=(split == "heldout"),
                                   distinct_colours=distinct_colours)
            vid = f"{split}{i:05d}"
            cats = {o.obj_id: f"{o.colour} {o.shape}" for o in video.objects}
            write_ytvos_video(root, split, vid, video.frames, video.masks, video.expressions_dict(),
                              frame_names=names, categories=cats)
            split_info[vid] = video.info()
            n_exp += len(video.expressions)
            n_obj += len(video.objects)
            for e in video.expressions:
                kinds[e.kind] = kinds.get(e.kind, 0) + 1
        info["splits"][split] = split_info
        summary["splits"][split] = {"videos": n, "objects": n_obj, "expressions": n_exp,
                                    "expression_kinds": dict(sorted(kinds.items()))}
    dump_json(root / INFO_FILE, info)
    return summary


class SyntheticRefDataset(RefYTVOSDataset):
    """The synthetic benchmark through the Ref-YTVOS reader, with its own defaults.

    Transforms: `build_transforms("synthetic")` (native-size scale jitter, flip with left/right swap,
    photometric without channel permutation). Clips are never reversed in time (`reverse_prob=0`):
    reversal would turn "moving left" into a false statement.
    """

    dataset_name = "synthetic"
    default_reverse_prob = 0.0

    def __init__(self, root: str | Path, split: str = "train", num_frames: int = 5,
                 transform: ClipTransform | None = None, **kwargs: Any):
        kwargs.setdefault("exclude_test", False)
        super().__init__(root, split, num_frames, transform, **kwargs)
