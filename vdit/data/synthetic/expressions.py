"""Referring expressions of a synthetic video: descriptions from an object's attributes and spatial
relations, each checked to identify exactly one object."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vdit.data.synthetic.world import RELATIONS, SyntheticObject
from vdit.errors import ConfigError

RELATION_PREFERENCE = 0.75

# Attribute subsets (besides the always-present shape) tried for plain descriptions.
ATTRIBUTE_TEMPLATES: tuple[tuple[str, ...], ...] = (
    (), ("colour",), ("size",), ("motion",), ("size", "colour"), ("colour", "motion"),
    ("size", "motion"), ("size", "colour", "motion"),
)
# Attribute subsets for a relation's head noun phrase and its anchor (no motion: keep them short).
NOUN_TEMPLATES: tuple[tuple[str, ...], ...] = ((), ("colour",), ("size",), ("size", "colour"))


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


def candidate_expressions(target: SyntheticObject, objects: Sequence[SyntheticObject], margin: float,
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


def choose_expressions(rng: random.Random, cands: list[SyntheticExpression], k: int) -> list[SyntheticExpression]:
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
