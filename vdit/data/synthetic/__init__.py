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

Stages, one module each: `world` (vocabulary and objects), `scene` (layout and `generate_video`), `render`
(frames and visible masks), `expressions` (descriptions and relations), `benchmark` (writing the splits,
`make_synthetic_benchmark`), `dataset` (`SyntheticRefDataset`, the reader).

Everything is deterministic from `seed`: the same arguments write byte-identical files.
`<root>/synthetic_benchmark.json` records the parameters and, per video, every object's attributes and
per-frame centre and every expression's structure (kind, attributes, relation, held-out flag).
"""
from vdit.data.synthetic.benchmark import INFO_FILE, SPLIT_NAMES, benchmark_params, make_synthetic_benchmark, video_rng
from vdit.data.synthetic.dataset import SyntheticRefDataset
from vdit.data.synthetic.expressions import SyntheticExpression
from vdit.data.synthetic.scene import SyntheticVideo, generate_video
from vdit.data.synthetic.world import COLOURS, DIRECTIONS, HELDOUT_PAIRS, RELATIONS, SHAPES, SIZES, SyntheticObject

__all__ = [
    "COLOURS", "DIRECTIONS", "HELDOUT_PAIRS", "INFO_FILE", "RELATIONS", "SHAPES", "SIZES", "SPLIT_NAMES",
    "SyntheticExpression", "SyntheticObject", "SyntheticRefDataset", "SyntheticVideo", "benchmark_params",
    "generate_video", "make_synthetic_benchmark", "video_rng",
]
