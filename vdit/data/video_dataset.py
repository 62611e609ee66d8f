"""The referring-video dataset base, shared by the Ref-YouTube-VOS, Ref-DAVIS, MeViS and synthetic readers:
video and expression records, the meta_expressions.json parser (YTVOS and MeViS flavours), the training
index and clip sampling of spec 5.4, and `RefVideoDataset`, which (through `vdit.data.common`, shared with
the A2D, JHMDB and RefCOCO datasets) adds the per-sample seeded rng, bounded resampling and bad-sample
skipping; subclasses only say where the metadata, frames and masks are.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from vdit.data.common import (
    MAX_RESAMPLE, BadSampleSkipper, SeededSampling, apply_transform, missing_files, resolve_transform,
)
from vdit.data.transforms import ClipTransform
from vdit.data.types import ClipSample
from vdit.data.video_io import read_image
from vdit.errors import ConfigError, DataError, InputError
from vdit.fileio import read_json

# Spec 5.4 clip sampling.
DEFAULT_NUM_FRAMES = 5
LOCAL_MAX_SKIP = 3          # r1, r2 ~ U{1..3} (the official code's hard-coded max_skip)
NUM_LOCAL_FRAMES = 2        # one frame before, one after the start frame
REVERSE_PROB = 0.3          # sorted indices are reversed with this probability (train)


@dataclass(frozen=True)
class VideoRecord:
    """One video: its id and its (sorted) frame names."""

    video_id: str
    frames: tuple[str, ...]


@dataclass(frozen=True)
class ExpressionRecord:
    """One referring expression: the raw text and the object id(s) it refers to."""

    video_id: str
    exp_id: str
    text: str
    obj_ids: tuple[int, ...]
    anno_ids: tuple[str, ...] = ()


def _as_obj_ids(value: Any, path: Path, where: str) -> tuple[int, ...]:
    """obj_id as written by YTVOS ("3"), ints, or MeViS lists ([1, 2]) -> tuple of ints."""
    items = value if isinstance(value, (list, tuple)) else [value]
    try:
        ids = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {where}: obj_id {value!r} is not an integer (or list of integers)")
    if not ids:
        raise DataError(f"{path}: {where}: empty obj_id list")
    return ids


def parse_meta_expressions(
    path: str | Path, *, require_anno_ids: bool = False
) -> tuple[dict[str, VideoRecord], list[ExpressionRecord]]:
    """Parse a meta_expressions.json (YTVOS or MeViS flavour) into video and expression records.

    Videos keep the file's order; frames are sorted; expressions keep the file's order per video.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise DataError(f"{path}: expected an object with a 'videos' mapping")
    videos: dict[str, VideoRecord] = {}
    expressions: list[ExpressionRecord] = []
    for vid, entry in data["videos"].items():
        if not isinstance(entry, dict):
            raise DataError(f"{path}: video {vid!r}: entry is not an object")
        frames = entry.get("frames")
        exps = entry.get("expressions")
        if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
            raise DataError(f"{path}: video {vid!r}: 'frames' must be a list of frame names")
        if not isinstance(exps, dict):
            raise DataError(f"{path}: video {vid!r}: 'expressions' must be a mapping")
        videos[vid] = VideoRecord(vid, tuple(sorted(frames)))
        for exp_id, exp in exps.items():
            where = f"video {vid!r} expression {exp_id!r}"
            if not isinstance(exp, dict) or not isinstance(exp.get("exp"), str) or "obj_id" not in exp:
                raise DataError(f"{path}: {where}: needs 'exp' (string) and 'obj_id'")
            anno = exp.get("anno_id", [])
            if require_anno_ids and not anno:
                raise DataError(f"{path}: {where}: missing 'anno_id'")
            anno_ids = tuple(str(a) for a in (anno if isinstance(anno, (list, tuple)) else [anno]))
            expressions.append(ExpressionRecord(
                video_id=vid, exp_id=str(exp_id), text=exp["exp"],
                obj_ids=_as_obj_ids(exp["obj_id"], path, where), anno_ids=anno_ids,
            ))
    return videos, expressions


# ----------------------------------------------------------------------------------------------
# Clip sampling (spec 5.4)
# ----------------------------------------------------------------------------------------------

def sample_clip_indices(frame_id: int, n: int, num_frames: int, rng: random.Random) -> list[int]:
    """Frame indices of one training clip, sorted (the official ReferFormer/SgMg sampler).

    `frame_id`; for T >= 2 a local frame after it, min(n-1, f + r2), and for T >= 3 one before it,
    max(0, f - r1), with r1, r2 ~ U{1..3}; then T - 3 "global" frames drawn without replacement from
    [0, min) U [max, n) (max included). When that pool is not *larger* than the number needed, they
    are drawn from all frames, and with repetition when the video has fewer frames than needed.
    """
    if n <= 0:
        raise InputError("sample_clip_indices: the video has no frames")
    if not 0 <= frame_id < n:
        raise InputError(f"sample_clip_indices: frame_id {frame_id} outside [0, {n})")
    indices = [frame_id]
    if num_frames >= 2:
        before = rng.randint(1, LOCAL_MAX_SKIP)
        after = rng.randint(1, LOCAL_MAX_SKIP)
        if num_frames >= 3:
            indices.append(max(0, frame_id - before))
        indices.append(min(n - 1, frame_id + after))
    num_global = num_frames - len(indices)
    if num_global > 0:
        pool = list(range(0, min(indices))) + list(range(max(indices), n))
        if len(pool) > num_global:
            indices.extend(rng.sample(pool, num_global))
        elif n >= num_global:
            indices.extend(rng.sample(range(n), num_global))
        else:
            extra = [rng.randrange(n) for _ in range(num_global - n)]
            indices.extend(extra + list(range(n)))
    return sorted(indices)


def build_train_index(
    videos: Mapping[str, VideoRecord], expressions: Sequence[ExpressionRecord], num_frames: int
) -> list[tuple[int, int]]:
    """(expression index, start frame) for every start frame in range(0, n, T) of every expression."""
    index = []
    for i, exp in enumerate(expressions):
        n = len(videos[exp.video_id].frames)
        index.extend((i, f) for f in range(0, n, num_frames))
    return index


# ----------------------------------------------------------------------------------------------
# Dataset base
# ----------------------------------------------------------------------------------------------

class RefVideoDataset(SeededSampling, Dataset):
    """Shared machinery of the referring-video datasets (see module docstring).

    Train mode (`train=True`): one sample per (expression, start frame in range(0, n, T)), T frames
    sampled as in spec 5.4, reversed with probability `reverse_prob`, transformed; if no frame is
    valid afterwards another index is drawn (at most `max_resample` times, then DataError).
    Eval mode: one sample per expression with all frames of the video, eval transform, original size.

    Every sample's randomness comes from `random.Random` seeded by (seed, epoch, index, attempt):
    runs are reproducible and independent of DataLoader worker scheduling. Call `set_epoch` per epoch.

    `skip_bad=True`: in train mode, a sample whose files are missing or corrupt is replaced by
    another (random) index, with a warning that counts them (`num_skipped`). In eval mode, expressions
    of videos with missing files are dropped at construction (warned, counted); a corrupt file still
    raises, because silently dropping frames would change what is evaluated. (The A2D, JHMDB and
    RefCOCO datasets skip to the next index instead, in eval too: see `vdit.data.common`.)
    """

    dataset_name = "ytvos"
    default_reverse_prob = REVERSE_PROB

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_frames: int = DEFAULT_NUM_FRAMES,
        transform: ClipTransform | None = None,
        *,
        train: bool | None = None,
        seed: int = 0,
        skip_bad: bool = False,
        reverse_prob: float | None = None,
        max_resample: int = MAX_RESAMPLE,
        video_ids: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        self.split = split
        self.train = (split == "train") if train is None else bool(train)
        if num_frames < 1:
            raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames = int(num_frames)
        self.transform = resolve_transform(transform, self.dataset_name, self.train)
        self.seed = int(seed)
        self.epoch = 0
        self.skip_bad = skip_bad
        self.reverse_prob = self.default_reverse_prob if reverse_prob is None else float(reverse_prob)
        self.max_resample = int(max_resample)
        self._skipper = BadSampleSkipper(self.dataset_name, skip_bad)
        if not self.root.is_dir():
            raise DataError(f"{self.dataset_name} root not found: {self.root}")
        videos, expressions = self._load_index()
        if video_ids is not None:
            keep = set(video_ids)
            videos = {k: v for k, v in videos.items() if k in keep}
            expressions = [e for e in expressions if e.video_id in keep]
        expressions = [e for e in expressions if e.video_id in videos and videos[e.video_id].frames]
        self.videos = videos
        self.expressions = expressions
        if not self.train and self.skip_bad:
            self._drop_videos_with_missing_files()
        self.index = (
            build_train_index(self.videos, self.expressions, self.num_frames)
            if self.train else [(i, 0) for i in range(len(self.expressions))]
        )

    # -- hooks for subclasses -------------------------------------------------------------------
    def _load_index(self) -> tuple[dict[str, VideoRecord], list[ExpressionRecord]]:
        raise NotImplementedError

    def _frame_path(self, video_id: str, frame: str) -> Path:
        raise NotImplementedError

    def _has_annotations(self, exp: ExpressionRecord) -> bool:
        raise NotImplementedError

    def _read_masks(self, exp: ExpressionRecord, indices: Sequence[int], hw: tuple[int, int]) -> np.ndarray:
        """Bool masks [T,H,W] of the referred object(s) on the given frame positions."""
        raise NotImplementedError

    def _required_files(self, exp: ExpressionRecord) -> list[Path]:
        video = self.videos[exp.video_id]
        return [self._frame_path(video.video_id, f) for f in video.frames]

    # -- public ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    @property
    def num_skipped(self) -> int:
        """Bad samples (train) or videos with missing files (eval) skipped so far (skip_bad)."""
        return self._skipper.num_skipped

    def __getitem__(self, index: int) -> ClipSample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if not self.train:
            return self._eval_sample(index)
        # One draw plus `max_resample` re-draws; a bad sample is replaced like an invisible target.
        return self.draw_until_visible(index, self._train_sample, self.max_resample + 1,
                                       on_bad=self._skip_bad_sample if self.skip_bad else None)

    # -- internals ------------------------------------------------------------------------------
    def _skip_bad_sample(self, exc: DataError, position: int) -> None:
        # stacklevel 4: here <- draw_until_visible <- __getitem__ <- its caller
        self._skipper.note(exc, position, stacklevel=4)

    def _no_visible_target(self, index: int, last: int | None) -> str:
        if last is None:
            tried = ""
        else:
            exp = self.expressions[self.index[last][0]]
            tried = f"{exp.video_id}/{exp.exp_id}"
        return (f"{self.dataset_name} {self.split} under {self.root}: no clip with the referred object "
                f"visible after {self.max_resample} resamples (from index {index}, last {tried}); "
                "check that the annotations contain the referred object ids")

    def _drop_videos_with_missing_files(self) -> None:
        exists: dict[Path, bool] = {}
        bad_videos: set[str] = set()
        for exp in self.expressions:
            if exp.video_id in bad_videos:
                continue
            missing = missing_files(self._required_files(exp), exists)
            if missing:
                bad_videos.add(exp.video_id)
                # stacklevel 2: here <- __init__ (the warning points at the dataset's construction)
                self._skipper.note(DataError(f"video {exp.video_id}: missing file {missing[0]}"), stacklevel=2)
        self.expressions = [e for e in self.expressions if e.video_id not in bad_videos]

    def _load_frames(self, video_id: str, names: Sequence[str]) -> list[Image.Image]:
        frames = [read_image(self._frame_path(video_id, n)) for n in names]
        sizes = {f.size for f in frames}
        if len(sizes) > 1:
            raise DataError(
                f"{self.dataset_name}: frames of video {video_id} under {self.root / self.split} "
                f"have different sizes {sorted(sizes)}"
            )
        return frames

    def _train_sample(self, position: int, rng: random.Random) -> ClipSample:
        exp_idx, frame_id = self.index[position]
        exp = self.expressions[exp_idx]
        video = self.videos[exp.video_id]
        indices = sample_clip_indices(frame_id, len(video.frames), self.num_frames, rng)
        if rng.random() < self.reverse_prob:
            indices = indices[::-1]
        return self._make_sample(exp, indices, rng)

    def _eval_sample(self, position: int) -> ClipSample:
        exp = self.expressions[self.index[position][0]]
        indices = list(range(len(self.videos[exp.video_id].frames)))
        return self._make_sample(exp, indices, self.sample_rng(position))

    def _make_sample(self, exp: ExpressionRecord, indices: Sequence[int], rng: random.Random) -> ClipSample:
        video = self.videos[exp.video_id]
        names = [video.frames[i] for i in indices]
        frames = self._load_frames(video.video_id, names)
        w, h = frames[0].size
        if self._has_annotations(exp):
            masks = self._read_masks(exp, indices, (h, w))
            annotated = np.ones(len(indices), dtype=bool)
        else:
            masks = np.zeros((len(indices), h, w), dtype=bool)
            annotated = np.zeros(len(indices), dtype=bool)
        out_frames, out_masks, boxes, valid, text = apply_transform(self.transform, frames, masks, annotated,
                                                                    exp.text, rng)
        return ClipSample(
            frames=out_frames, masks=out_masks, boxes=boxes, valid=valid, text=text,
            orig_size=(h, w), valid_indices=None,
            meta={
                "dataset": self.dataset_name, "split": self.split, "video_id": video.video_id,
                "exp_id": exp.exp_id, "obj_ids": list(exp.obj_ids), "frame_ids": names,
                "frame_indices": list(indices), "has_annotations": bool(annotated.any()),
            },
        )
