"""A2D-Sentences: reader, dataset and writers for the on-disk layout of spec 7.3.

```
<root>/Release/CLIPS320/<video_id>.mp4        (the A2D release calls the folder clips320H; both are accepted)
<root>/text_annotations/a2d_annotation_with_instances/<video_id>/<frame_idx:05d>.h5
<root>/a2d_sentences_single_frame_{train,test}_annotations.json
<root>/a2d_sentences_test_annotations_in_coco_format.json
```

The h5 files come from MATLAB (column-major): `reMask` is stored as [N, W, H], or [W, H] when the frame
has a single instance; `instance` lists the N instance ids. Frame numbers are 1-based.

Every sample is one (sentence, annotated frame, instance). Only the annotated frame has a mask, so a
sample's `valid_indices` is that frame's position in the clip. Clips:
- "window" (eval; spec 6.3): T frames centred on the annotated frame, `[f - T//2, f + (T+1)//2)`, indices
  clamped to the video (edge frames repeat);
- "sparse" (train; the official A2D loader): the annotated frame, one local neighbour on each side at a
  random distance in {1,2,3} (clamped), and T-3 random "global" frames outside that span; sorted.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# centred_window, write_coco_gt, MAX_RESAMPLE and the dataset machinery live in vdit.data.common; they
# stay importable from here.
from vdit.data.common import (
    MAX_RESAMPLE, BadSampleSkipper, SampleListDataset, apply_transform, centred_window, drop_missing,
    read_json_rows, resolve_transform, write_coco_gt,
)
from vdit.data.transforms import normalize_text
from vdit.data.types import ClipSample
from vdit.data.video_io import read_video_frames, write_video
from vdit.errors import ConfigError, DataError
from vdit.fileio import dumps_json

log = logging.getLogger(__name__)

A2D_VIDEO_DIRS = ("Release/CLIPS320", "Release/clips320H")  # SgMg/VD-IT name first, then the A2D release name
A2D_MASK_DIR = "text_annotations/a2d_annotation_with_instances"
A2D_SAMPLES_JSON = "a2d_sentences_single_frame_{split}_annotations.json"
A2D_TEST_GT_JSON = "a2d_sentences_test_annotations_in_coco_format.json"
A2D_SPLITS = ("train", "test")
A2D_NUM_FRAMES = 5  # window length T of spec 6.3 / 5.2
A2D_LOCAL_SKIP = (1, 3)  # train: local neighbours at distance U{1..3} on each side of the annotated frame
A2D_VIDEO_FPS = 24  # writer default; the loader never needs the frame rate
A2D_SAMPLE_ROW = "[text, video_id, frame_idx, instance_id]"

SAMPLING_MODES = ("window", "sparse")


@dataclass(frozen=True)
class A2DSample:
    """One line of the samples json: `[text, video_id, frame_idx (1-based), instance_id]`."""

    text: str
    video_id: str
    frame_idx: int
    instance_id: int


def a2d_image_id(video_id: str, frame_idx: int, instance_id: int) -> str:
    """The COCO image id of spec 6.3: `v_<video>_f_<frame>_i_<instance>` (frame 1-based)."""
    return f"v_{video_id}_f_{frame_idx}_i_{instance_id}"


# ---------------------------------------------------------------------------------------------------
# readers


def _parse_a2d_sample(entry: Any) -> A2DSample:
    text, video_id, frame_idx, instance_id = entry
    sample = A2DSample(str(text), str(video_id), int(frame_idx), int(instance_id))
    if sample.frame_idx < 1:
        raise DataError(f"frame_idx {sample.frame_idx} (frames are 1-based)")
    return sample


def read_a2d_samples(path: str | Path) -> list[A2DSample]:
    """Parse `a2d_sentences_single_frame_<split>_annotations.json`; DataError naming the file if malformed."""
    return read_json_rows(path, A2D_SAMPLE_ROW, _parse_a2d_sample)


def read_a2d_instance_masks(path: str | Path) -> tuple[list[int], np.ndarray]:
    """Read one annotation h5: (instance ids, masks bool [N, H, W]).

    `reMask` is stored transposed ([N, W, H], or [W, H] for a single instance); this undoes both.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        with h5py.File(path, "r") as f:
            instances = np.asarray(f["instance"]).reshape(-1)
            raw = np.asarray(f["reMask"])
        ids = [int(round(float(v))) for v in instances]
    except KeyError as exc:
        raise DataError(f"{path}: missing dataset in A2D annotation h5 ({exc})") from None
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot read A2D annotation h5 ({exc})") from None
    if raw.ndim == 2:
        raw = raw[np.newaxis]
    if raw.ndim != 3 or raw.shape[0] != len(ids):
        raise DataError(
            f"{path}: reMask shape {tuple(raw.shape)} does not match {len(ids)} instance id(s)")
    return ids, np.ascontiguousarray(raw.transpose(0, 2, 1) > 0)


def find_video_dir(root: str | Path) -> Path:
    """The clip folder under `root`: the first of A2D_VIDEO_DIRS that exists (DataError if none)."""
    root = Path(root)
    for rel in A2D_VIDEO_DIRS:
        if (root / rel).is_dir():
            return root / rel
    raise DataError(f"{root}: no video folder (looked for {', '.join(A2D_VIDEO_DIRS)})")


# ---------------------------------------------------------------------------------------------------
# clip sampling


def sparse_train_indices(frame: int, num_frames: int, num_video_frames: int, rng: random.Random) -> list[int]:
    """The official A2D training clip: annotated frame, two local neighbours, T-3 global frames; sorted.

    Gives the same indices as `vdit.data.video_dataset.sample_clip_indices` (the Ref-YTVOS recipe) except, as the
    two official loaders do, for T = 2 (the frame *before* is kept here, the one after there) and for videos
    with fewer frames than the T - 3 global frames (repeated differently); so each keeps its own function.
    """
    n = num_video_frames
    lo_skip, hi_skip = A2D_LOCAL_SKIP
    local = [max(0, frame - rng.randint(lo_skip, hi_skip)), min(n - 1, frame + rng.randint(lo_skip, hi_skip))]
    indices = [frame] + local[: max(0, num_frames - 1)]
    n_global = num_frames - len(indices)
    if n_global > 0:
        outside = list(range(0, min(indices))) + list(range(max(indices), n))
        if len(outside) > n_global:
            indices += rng.sample(outside, n_global)
        elif n >= n_global:
            indices += rng.sample(range(n), n_global)
        else:  # a video shorter than the clip: repeat frames
            indices += [rng.randrange(n) for _ in range(n_global)]
    return sorted(indices)


# ---------------------------------------------------------------------------------------------------
# dataset


class A2DSentencesDataset(SampleListDataset):
    """A2D-Sentences samples as `ClipSample`s (T frames, one annotated).

    root: the A2D-Sentences folder (spec 7.3). split: "train" or "test".
    transform: a ClipTransform; default `build_transforms("a2d", train=split == "train")`.
    sampling: "window" or "sparse"; default "sparse" for train, "window" for test (as the official loader).
    skip_bad: skip samples whose files are missing or corrupt (warning with a count) instead of raising.
    seed: base of the per-sample random streams (see `vdit.data.common.SeededSampling`; call `set_epoch`
    every epoch). Train draws resample until the target is visible (`SampleListDataset`).
    """

    dataset_name = "a2d"

    def __init__(self, root: str | Path, split: str = "train", num_frames: int = A2D_NUM_FRAMES,
                 transform: Any = None, skip_bad: bool = False, sampling: str | None = None, *,
                 seed: int = 0) -> None:
        if split not in A2D_SPLITS:
            raise ConfigError(f"A2D-Sentences: unknown split {split!r} (expected one of {A2D_SPLITS})")
        if num_frames < 1:
            raise ConfigError(f"A2D-Sentences: num_frames must be >= 1, got {num_frames}")
        sampling = sampling or ("sparse" if split == "train" else "window")
        if sampling not in SAMPLING_MODES:
            raise ConfigError(f"A2D-Sentences: unknown sampling {sampling!r} (expected one of {SAMPLING_MODES})")
        self.root = Path(root)
        self.split = split
        self.num_frames = num_frames
        self.sampling = sampling
        self.seed = int(seed)
        self.train = split == "train"
        self.video_dir = find_video_dir(self.root)
        self.mask_dir = self.root / A2D_MASK_DIR
        self.samples_path = self.root / A2D_SAMPLES_JSON.format(split=split)
        self.transform = resolve_transform(transform, "a2d", self.train)
        self._skipper = BadSampleSkipper("A2D-Sentences", skip_bad)
        self.samples: list[A2DSample] = drop_missing(
            read_a2d_samples(self.samples_path), lambda s: (self.video_path(s), self.mask_path(s)),
            "A2D-Sentences", skip_bad)
        log.info("A2D-Sentences %s: %d samples", split, len(self.samples))

    def video_path(self, sample: A2DSample) -> Path:
        return self.video_dir / f"{sample.video_id}.mp4"

    def mask_path(self, sample: A2DSample) -> Path:
        return self.mask_dir / sample.video_id / f"{sample.frame_idx:05d}.h5"

    def _no_visible_target(self, index: int, last: int | None) -> str:
        return (f"A2D-Sentences: no sample with a visible target after {MAX_RESAMPLE} draws "
                f"(check the masks under {self.mask_dir})")

    def _load_once(self, idx: int, rng: random.Random) -> ClipSample:
        sample = self.samples[idx]
        video_path, mask_path = self.video_path(sample), self.mask_path(sample)
        frames, _fps = read_video_frames(video_path)
        n = len(frames)
        frame = sample.frame_idx - 1  # the annotation is 1-based
        if not 0 <= frame < n:
            raise DataError(f"{video_path}: has {n} frames, the annotation refers to frame {sample.frame_idx}")
        if self.sampling == "window":
            indices = centred_window(frame, self.num_frames, n)
        else:
            indices = sparse_train_indices(frame, self.num_frames, n, rng)
        position = indices.index(frame)

        ids, instance_masks = read_a2d_instance_masks(mask_path)
        if sample.instance_id not in ids:
            raise DataError(f"{mask_path}: instance {sample.instance_id} not among {ids}")
        mask = instance_masks[ids.index(sample.instance_id)]
        width, height = frames[frame].size
        if mask.shape != (height, width):
            raise DataError(f"{mask_path}: mask {mask.shape[1]}x{mask.shape[0]} (WxH) does not match the "
                            f"{width}x{height} frames of {video_path}")

        masks = np.zeros((len(indices), height, width), dtype=bool)
        valid = np.zeros(len(indices), dtype=bool)
        masks[position] = mask
        valid[position] = bool(mask.any())
        clip = [frames[i] for i in indices]
        out = apply_transform(self.transform, clip, masks, valid, normalize_text(sample.text), rng)
        return ClipSample(
            frames=out[0], masks=out[1], boxes=out[2], valid=out[3], text=out[4],
            orig_size=(height, width), valid_indices=[position],
            meta={
                "dataset": "a2d", "split": self.split, "video_id": sample.video_id,
                "frame_idx": sample.frame_idx, "instance_id": sample.instance_id,
                "image_id": a2d_image_id(sample.video_id, sample.frame_idx, sample.instance_id),
                "frame_ids": [f"{i + 1:05d}" for i in indices],
            },
        )


# ---------------------------------------------------------------------------------------------------
# writers (the real layout; tests build small datasets with them)


def mask_bbox_xyxy(mask: np.ndarray) -> list[float]:
    """Tight [x1, y1, x2, y2] pixel box of a boolean mask (zeros when empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def write_a2d_instance_masks(path: str | Path, instance_ids: Sequence[int], masks: np.ndarray) -> Path:
    """Write an annotation h5 the way the MATLAB export stores it.

    masks: bool [N, H, W]. Stored as `reMask` [N, W, H], or [W, H] when N == 1; `instance` [N] (float64,
    as MATLAB writes numbers); `reBBox` [4, N] x1y1x2y2.
    """
    import h5py

    path = Path(path)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[0] != len(instance_ids):
        raise ValueError("write_a2d_instance_masks: masks must be [N, H, W] with N = len(instance_ids)")
    stored = masks.transpose(0, 2, 1).astype(np.uint8)
    boxes = np.array([mask_bbox_xyxy(m) for m in masks], dtype=np.float64).T  # [4, N]
    if len(instance_ids) == 1:
        stored = stored[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("instance", data=np.asarray(instance_ids, dtype=np.float64))
        f.create_dataset("reMask", data=stored)
        f.create_dataset("reBBox", data=boxes)
    return path


def write_a2d_samples(path: str | Path, samples: Sequence[A2DSample]) -> Path:
    """Write the samples json: a list of `[text, video_id, frame_idx, instance_id]`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [[s.text, s.video_id, s.frame_idx, s.instance_id] for s in samples]
    path.write_text(dumps_json(rows), encoding="utf-8")
    return path


def write_a2d_coco_gt(root: str | Path, samples: Sequence[A2DSample], path: str | Path | None = None) -> Path:
    """Build `a2d_sentences_test_annotations_in_coco_format.json` from the h5 masks of `samples`."""
    root = Path(root)
    items = []
    for s in samples:
        ids, masks = read_a2d_instance_masks(root / A2D_MASK_DIR / s.video_id / f"{s.frame_idx:05d}.h5")
        if s.instance_id in ids:
            items.append((a2d_image_id(s.video_id, s.frame_idx, s.instance_id), masks[ids.index(s.instance_id)]))
    return write_coco_gt(path or root / A2D_TEST_GT_JSON, items)


def write_a2d_dataset(root: str | Path, videos: dict[str, Sequence[np.ndarray]],
                      annotations: dict[tuple[str, int], tuple[Sequence[int], np.ndarray]],
                      samples: dict[str, Sequence[A2DSample]], fps: int = A2D_VIDEO_FPS) -> Path:
    """Write a complete A2D-Sentences tree.

    videos: video_id -> RGB frames. annotations: (video_id, frame_idx 1-based) -> (instance ids, masks
    [N, H, W]). samples: split -> samples; the test split also gets its COCO GT json.
    """
    root = Path(root)
    for video_id, frames in videos.items():
        write_video(root / A2D_VIDEO_DIRS[0] / f"{video_id}.mp4", np.stack(frames), fps)
    for (video_id, frame_idx), (ids, masks) in annotations.items():
        write_a2d_instance_masks(root / A2D_MASK_DIR / video_id / f"{frame_idx:05d}.h5", ids, masks)
    for split, split_samples in samples.items():
        write_a2d_samples(root / A2D_SAMPLES_JSON.format(split=split), split_samples)
        if split == "test":
            write_a2d_coco_gt(root, split_samples)
    return root


__all__ = [
    "A2DSample", "A2DSentencesDataset", "a2d_image_id", "read_a2d_samples", "read_a2d_instance_masks",
    "centred_window", "sparse_train_indices", "write_a2d_instance_masks",
    "write_a2d_samples", "write_a2d_coco_gt", "write_coco_gt", "write_a2d_dataset",
]
