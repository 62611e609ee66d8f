"""One synthetic video: objects laid out on straight-line paths (occlusion limited), rendered, and given
referring expressions; `generate_video` draws all of it from one rng."""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vdit.data.synthetic.expressions import SyntheticExpression, candidate_expressions, choose_expressions
from vdit.data.synthetic.render import render_video
from vdit.data.synthetic.world import COLOURS, DIRECTIONS, HELDOUT_PAIRS, SHAPES, SIZES, SyntheticObject
from vdit.errors import ConfigError

NUM_OBJECTS_RANGE = (3, 5)
SHAPE_POOL_RANGE = (2, 3)
COLOUR_POOL_RANGE = (2, 3)
HELDOUT_OBJECTS = 2
EXPRESSIONS_PER_OBJECT = 2
MIN_TARGETS = 2
# Total displacement over the video, as a fraction of the frame side along the motion.
TRAVEL_RANGE = (0.25, 0.45)
# Relations need this centre gap (fraction of the short side) in every frame.
RELATION_GAP = 0.06
# Occlusion limit: every object keeps this visible fraction of its area in this share of frames.
MIN_VISIBLE_FRACTION = 0.3
MIN_VISIBLE_FRAMES = 0.75
MAX_LAYOUT_TRIES = 500
MIN_SIDE = 32
DEFAULT_NUM_FRAMES = 12
DEFAULT_HEIGHT = 96
DEFAULT_WIDTH = 160


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
        frames, masks, full, visible = render_video(objects, np_rng, num_frames, height, width)
        frac = visible / np.maximum(full, 1)
        if ((frac >= MIN_VISIBLE_FRACTION).mean(axis=0) < MIN_VISIBLE_FRAMES).any():
            continue
        targets = [o for o in objects if o.heldout] if heldout else objects
        expressions: list[SyntheticExpression] = []
        for o in targets:
            cands = candidate_expressions(o, objects, margin, colour_required=heldout or distinct_colours)
            expressions += choose_expressions(rng, cands, expressions_per_object)
        if len({e.obj_id for e in expressions}) < min(MIN_TARGETS, len(targets)):
            continue
        for i, e in enumerate(expressions):
            e.exp_id = str(i)
        return SyntheticVideo(frames, masks, objects, expressions)
    raise ConfigError(
        f"could not lay out a synthetic video in {MAX_LAYOUT_TRIES} tries at {height}x{width}; "
        "use larger frames"
    )
