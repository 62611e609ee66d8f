"""The synthetic world's vocabulary (shapes, colours, sizes, motions, relations, the held-out colour+shape
pairs) and its objects."""
from __future__ import annotations

from dataclasses import dataclass

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
