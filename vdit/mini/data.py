"""The miniature world's data: the generated referring-video benchmark read as a caption corpus.

The foundation models are trained on the benchmark's `train` split only (its videos never show the
held-out colour+shape pairs, so the `heldout` split stays a compositional test for the whole stack).
Each video gives

- its frames (uint8, read back from the JPEGs the benchmark wrote, exactly what VD-IT later sees);
- its referring expressions ("the small red circle moving left", "the square below the blue star");
- a whole-scene caption built from the objects' attributes, objects ordered left to right by their mean
  x position: "a small red circle moving left and a large blue square moving up". The expressions name
  one object each; the scene caption names them all, so the generative model is also told what the
  rest of the clip holds. A motion-free variant describes single frames (CLIP sees one frame).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vdit.data.synthetic import (COLOURS, DIRECTIONS, INFO_FILE, RELATIONS, SHAPES, SIZES, benchmark_params,
                                 make_synthetic_benchmark)
from vdit.data.video_dataset import parse_meta_expressions
from vdit.data.ytvos import FRAME_EXT, meta_expressions_path
from vdit.errors import ConfigError, DataError
from vdit.fileio import read_json
from vdit.mini.preset import MINI_FRAME_SIZE


@dataclass(frozen=True)
class BenchmarkSpec:
    """The generated benchmark the miniature world is trained on (arguments of make_synthetic_benchmark)."""

    num_train_videos: int = 400
    num_valid_videos: int = 40
    num_heldout_videos: int = 40
    num_frames: int = 12
    # 64x64: the smallest size whose stride-64 UNet level is non-empty (VD-IT's MIN_SIDE); a VD-IT head
    # must train on CPU within minutes at this size. Square frames: CLIP's centre crop keeps everything.
    height: int = MINI_FRAME_SIZE
    width: int = MINI_FRAME_SIZE
    # The objects of a video have distinct colours and every expression names its target's colour.
    distinct_colours: bool = True


MINI_BENCHMARK = BenchmarkSpec()
CACHE_ENV = "VDIT_CACHE"
DEFAULT_CACHE = "~/.cache/vdit"
BENCHMARK_DIRNAME = "mini-benchmark-2"
SCENE_JOINER = " and "
# Words of the scene captions besides the attribute values.
SCENE_WORDS = ("a", "and", "moving")


def default_data_dir() -> Path:
    """Where `vdit mini` keeps its generated benchmark: $VDIT_CACHE (default ~/.cache/vdit)/mini-benchmark-2."""
    return Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE)).expanduser() / BENCHMARK_DIRNAME


def _spec_kwargs(spec: BenchmarkSpec) -> dict[str, Any]:
    """`make_synthetic_benchmark`'s arguments for `spec` (the seed aside)."""
    return {"num_train_videos": spec.num_train_videos, "num_valid_videos": spec.num_valid_videos,
            "num_heldout_videos": spec.num_heldout_videos, "num_frames": spec.num_frames,
            "height": spec.height, "width": spec.width, "distinct_colours": spec.distinct_colours}


def ensure_benchmark(root: str | Path, seed: int = 0, spec: BenchmarkSpec = MINI_BENCHMARK) -> tuple[Path, bool]:
    """Write the benchmark to `root` unless it already holds it; returns (root, whether it was written).

    An existing benchmark made with other parameters is an error (the models would silently differ
    from the ones the same seed gives elsewhere)."""
    root = Path(root).expanduser()
    info = root / INFO_FILE
    if info.is_file():
        have = read_json(info).get("params", {})
        want = benchmark_params(**_spec_kwargs(spec), seed=seed)
        if have != want:
            raise ConfigError(
                f"{info} holds a synthetic benchmark made with {have}, but this run needs {want}; "
                "pass another --data folder (it is generated there)")
        return root, False
    # Written beside `root` and renamed into place: another process (a parallel `vdit mini` command) may
    # be generating the same folder, and a reader must never see a half-written benchmark.
    staging = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    make_synthetic_benchmark(staging, **_spec_kwargs(spec), seed=seed)
    try:
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        os.rename(staging, root)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not info.is_file():
            raise ConfigError(f"cannot write the benchmark to {root}: the folder exists and holds no benchmark")
        return ensure_benchmark(root, seed, spec)
    return root, True


def scene_caption(objects: Sequence[dict[str, Any]], motion: bool = True) -> str:
    """'a small red circle moving left and a large blue square moving up' (objects left to right)."""
    ordered = sorted(objects, key=lambda o: (float(np.mean([c[0] for c in o["centres"]])), o["obj_id"]))
    parts = []
    for o in ordered:
        words = ["a", o["size"], o["colour"], o["shape"]]
        if motion:
            words += ["moving", o["motion"]]
        parts.append(" ".join(words))
    return SCENE_JOINER.join(parts)


@dataclass
class CaptionCorpus:
    """Frames and captions of one benchmark split, in the benchmark's video order."""

    video_ids: list[str]
    frames: torch.Tensor  # uint8 [N, T, H, W, 3]
    expressions: list[list[str]]  # per video, in exp_id order
    scene_captions: list[str]  # with motion (clips)
    frame_captions: list[str]  # without motion (single frames)

    def __len__(self) -> int:
        return len(self.video_ids)

    def all_texts(self) -> list[str]:
        """Every distinct caption, sorted (deterministic order for tables of text embeddings)."""
        texts = {t for exps in self.expressions for t in exps}
        texts.update(self.scene_captions)
        texts.update(self.frame_captions)
        return sorted(texts)


def _read_frames(root: Path, split: str, video_id: str, names: Sequence[str]) -> np.ndarray:
    from vdit.data.video_io import read_image

    out = [np.asarray(read_image(root / split / "JPEGImages" / video_id / f"{name}{FRAME_EXT}")) for name in names]
    shapes = {a.shape for a in out}
    if len(shapes) != 1:
        raise DataError(f"frames of {root / split / 'JPEGImages' / video_id} differ in size: {sorted(shapes)}")
    return np.stack(out)


def load_corpus(root: str | Path, split: str = "train") -> CaptionCorpus:
    """Read one split of a generated benchmark (frames, expressions, scene captions)."""
    root = Path(root).expanduser()
    info_path = root / INFO_FILE
    if not info_path.is_file():
        raise DataError(f"{root} holds no generated benchmark ({INFO_FILE} missing); run `vdit data make-synthetic`")
    info = read_json(info_path)
    split_info = info.get("splits", {}).get(split)
    if split_info is None:
        raise DataError(f"{info_path} has no split {split!r}")
    videos, records = parse_meta_expressions(meta_expressions_path(root, split))
    by_video: dict[str, list[tuple[int, str]]] = {vid: [] for vid in videos}
    for rec in records:
        by_video[rec.video_id].append((int(rec.exp_id), rec.text))
    ids, frames, exps, scenes, frame_caps = [], [], [], [], []
    for vid, video in videos.items():
        if vid not in split_info:
            raise DataError(f"{info_path}: video {vid!r} of split {split!r} has no object record")
        objects = split_info[vid]["objects"]
        ids.append(vid)
        frames.append(_read_frames(root, split, vid, video.frames))
        exps.append([text for _, text in sorted(by_video[vid])])
        scenes.append(scene_caption(objects, motion=True))
        frame_caps.append(scene_caption(objects, motion=False))
    if not ids:
        raise DataError(f"split {split!r} of {root} has no videos")
    if len({f.shape for f in frames}) != 1:
        raise DataError(f"videos of split {split!r} of {root} differ in frame count or size")
    return CaptionCorpus(ids, torch.from_numpy(np.stack(frames)), exps, scenes, frame_caps)


def vocabulary(corpora: Sequence[CaptionCorpus] = ()) -> list[str]:
    """Sorted words the tokenizers learn as whole tokens: every word the benchmark generator can write
    (shapes, colours, sizes, directions, relation phrases) plus every word of the given corpora."""
    words = set(SHAPES) | set(COLOURS) | set(SIZES) | set(DIRECTIONS) | set(SCENE_WORDS) | {"the"}
    for phrase in RELATIONS.values():
        words.update(phrase.split())
    for corpus in corpora:
        for text in corpus.all_texts():
            words.update(text.lower().split())
    return sorted(words)
