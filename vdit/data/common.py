"""Machinery shared by the dataset modules of `vdit.data` (each piece has its one home here).

- `read_json_rows`: a json file of rows, with a `DataError` naming the file and the entry (JSON itself:
  `vdit.fileio`).
- `missing_files`, `drop_missing`: checking at construction that the files a sample needs exist.
- `resolve_transform`, `apply_transform`: the default `build_transforms` recipe; the ClipSample dtypes.
- `SeededSampling`: per-sample rng from (dataset, seed, epoch, index, attempt), `set_epoch`, and the
  training draw that resamples until the target is visible (`draw_until_visible`).
- `BadSampleSkipper`: `skip_bad`, a running count of skipped samples and one warning per skip.
- `SampleListDataset`: base of the datasets backed by a list of samples (A2D, JHMDB, RefCOCO).
- `centred_window`: the evaluation window of spec 6.3 (A2D, JHMDB).
- `write_coco_gt`: class-agnostic COCO ground truth (A2D, JHMDB writers).

Two families use these pieces and keep two deliberate differences (each pinned by its tests):

- Resample budget: the list datasets (A2D, RefCOCO) make `MAX_RESAMPLE` draws in all; the video datasets
  (`vdit.data.video_dataset.RefVideoDataset`: Ref-YTVOS, Ref-DAVIS, MeViS, synthetic) make one draw plus
  `max_resample` re-draws (default `MAX_RESAMPLE`).
- `skip_bad`: a list dataset replaces a sample that fails to load by the *next* index, in train and eval,
  and drops samples with missing files at construction with one summary warning (not counted in
  `num_skipped`). A video dataset replaces it by a *random* index like an invisible target, in train
  only; in eval it drops the videos with missing files at construction (one counted warning per video)
  and a corrupt file raises, so that what is evaluated never silently changes.
"""
from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from vdit.data.transforms import build_transforms
from vdit.data.types import ClipSample
from vdit.errors import DataError
from vdit.fileio import dumps_json, read_json

T = TypeVar("T")

MAX_RESAMPLE = 100  # train: bound on drawing another index when the target is not visible (unbounded officially)
COCO_DUMMY_CATEGORY = {"id": 1, "name": "dummy_class"}  # RVOS GT is class-agnostic (MTTR convention)


def read_json_rows(path: str | Path, row: str, parse: Callable[[Any], T]) -> list[T]:
    """A json file holding a list of rows, each turned into a record by `parse`.

    `row` describes one row for the messages. `parse` raises TypeError / ValueError for a row of the wrong
    shape and DataError for a well-formed row with a bad value; both become a DataError naming the file and
    the entry.
    """
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of {row}")
    records = []
    for i, entry in enumerate(data):
        try:
            records.append(parse(entry))
        except (TypeError, ValueError):
            raise DataError(f"{path}: entry {i} is not {row}: {entry!r}") from None
        except DataError as exc:
            raise DataError(f"{path}: entry {i}: {exc}") from None
    return records


# ---------------------------------------------------------------------------------------------------
# missing files


def missing_files(paths: Iterable[Path], exists: dict[Path, bool] | None = None) -> list[Path]:
    """The paths that are not files, in order. `exists` caches answers across calls (one stat per file)."""
    cache = {} if exists is None else exists
    missing = []
    for path in paths:
        if path not in cache:
            cache[path] = path.is_file()
        if not cache[path]:
            missing.append(path)
    return missing


def drop_missing(
    entries: Sequence[Any], paths_of: Callable[[Any], Sequence[Path]], dataset_name: str, skip_bad: bool
) -> list[Any]:
    """Check that every file an entry needs exists: DataError naming the first missing one, or (skip_bad)
    drop those entries with one warning that counts them."""
    exists: dict[Path, bool] = {}
    kept, missing = [], []
    for entry in entries:
        absent = missing_files(paths_of(entry), exists)
        (missing if absent else kept).append((entry, absent))
    if missing:
        first = missing[0][1][0]
        if not skip_bad:
            raise DataError(f"{first}: file not found ({len(missing)} sample(s) of {dataset_name} need a missing file)")
        # stacklevel 3: the warning points at whoever constructed the dataset
        warnings.warn(f"{dataset_name}: skipped {len(missing)} sample(s) with missing files (first: {first})",
                      RuntimeWarning, stacklevel=3)
    return [entry for entry, _ in kept]


# ---------------------------------------------------------------------------------------------------
# transforms


def resolve_transform(transform: Any, dataset: str, train: bool) -> Any:
    """The given transform, or the project default `build_transforms(dataset, train)`."""
    return transform if transform is not None else build_transforms(dataset, train)


def apply_transform(
    transform: Any, frames: list, masks: np.ndarray, valid: np.ndarray, text: str, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """Run a ClipTransform and coerce its outputs to the ClipSample dtypes (a no-op for a ClipTransform,
    whose outputs already have them)."""
    out_frames, out_masks, boxes, out_valid, out_text = transform(frames, masks, valid, text, rng)
    return (torch.as_tensor(out_frames, dtype=torch.float32), torch.as_tensor(out_masks, dtype=torch.float32),
            torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(out_valid, dtype=torch.bool), out_text)


# ---------------------------------------------------------------------------------------------------
# bad samples, seeded sampling, resampling


class BadSampleSkipper:
    """Implements `skip_bad`: counts the samples skipped because a file is missing or corrupt and warns
    once per skip with the running count (`num_skipped`)."""

    def __init__(self, dataset_name: str, skip_bad: bool) -> None:
        self.dataset_name = dataset_name
        self.skip_bad = skip_bad
        self.num_skipped = 0

    def note(self, exc: Exception, index: int | None = None, *, stacklevel: int = 1) -> None:
        """Count one skipped sample (`index`, when there is one) and warn. `stacklevel` as for
        `warnings.warn`, counted from the caller of `note`."""
        self.num_skipped += 1
        which = "" if index is None else f" {index}"
        warnings.warn(f"{self.dataset_name}: skipping bad sample{which} ({exc}); "
                      f"{self.num_skipped} bad sample(s) skipped so far", RuntimeWarning, stacklevel=stacklevel + 1)

    def fetch(self, idx: int, length: int, load: Callable[[int], ClipSample]) -> ClipSample:
        """`load(idx)`, or with skip_bad the first following index that loads (DataError if none does)."""
        if not 0 <= idx < length:
            raise IndexError(f"{self.dataset_name}: index {idx} out of range for {length} samples")
        if not self.skip_bad:
            return load(idx)
        last_error: DataError | None = None
        for offset in range(length):
            j = (idx + offset) % length
            try:
                return load(j)
            except DataError as exc:
                last_error = exc
                self.note(exc, j, stacklevel=3)  # fetch <- __getitem__ <- its caller
        raise DataError(f"{self.dataset_name}: every sample failed to load; last error: {last_error}")


class SeededSampling:
    """Per-sample randomness as a pure function of (dataset, seed, epoch, index, attempt): reproducible,
    and independent of how DataLoader workers share out the indices. Mixed into datasets that define
    `__len__`, `dataset_name` and `seed`; call `set_epoch` every epoch."""

    dataset_name = "dataset"
    seed = 0
    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random stream (sampling and augmentation differ per epoch)."""
        self.epoch = int(epoch)

    def sample_rng(self, index: int, attempt: int = 0) -> random.Random:
        """The rng of one sample draw."""
        return random.Random(f"vdit/{self.dataset_name}/{self.seed}/{self.epoch}/{index}/{attempt}")

    def draw_until_visible(
        self, index: int, load: Callable[[int, random.Random], ClipSample], attempts: int,
        on_bad: Callable[[DataError, int], None] | None = None,
    ) -> ClipSample:
        """The training draw of sample `index` (the official loaders resample too).

        Draw `attempt` calls `load(position, rng)` with `rng = sample_rng(index, attempt)`; while the result
        has no valid frame, that rng picks another position at random. After `attempts` draws: DataError
        with `_no_visible_target(index, last position tried)`. `on_bad(exc, position)`, when given, takes a
        DataError of `load` instead of raising it, and the draw counts as failed.
        """
        position, last = index, None
        for attempt in range(attempts):
            rng = self.sample_rng(index, attempt)
            try:
                sample: ClipSample | None = load(position, rng)
            except DataError as exc:
                if on_bad is None:
                    raise
                on_bad(exc, position)
                sample = None
            if sample is not None and bool(sample.valid.any()):
                return sample
            last = position
            position = rng.randrange(len(self))  # type: ignore[arg-type]  # the dataset defines __len__
        raise DataError(self._no_visible_target(index, last))

    def _no_visible_target(self, index: int, last: int | None) -> str:
        """The message when `draw_until_visible` gives up (datasets name where to look)."""
        return f"{self.dataset_name}: no sample with a visible target when drawing from index {index}"


class SampleListDataset(SeededSampling, Dataset):
    """Base of the datasets backed by a list `self.samples` (A2D-Sentences, JHMDB-Sentences, RefCOCO).

    Subclasses set `samples`, `train`, `_skipper` (a BadSampleSkipper) and implement
    `_load_once(index, rng) -> ClipSample`. Eval loads `index` with the rng of attempt 0; train draws
    until the target is visible (`MAX_RESAMPLE` draws in all). With skip_bad, a sample whose files are
    corrupt is replaced by the next index (see the module doc).
    """

    samples: list
    train = False
    _skipper: BadSampleSkipper

    @property
    def num_skipped(self) -> int:
        """Samples skipped at load time so far in this process (skip_bad)."""
        return self._skipper.num_skipped

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> ClipSample:
        return self._skipper.fetch(idx, len(self), self._load)

    def _load(self, idx: int) -> ClipSample:
        if not self.train:  # eval keeps every sample, visible target or not
            return self._load_once(idx, self.sample_rng(idx))
        return self.draw_until_visible(idx, self._load_once, MAX_RESAMPLE)

    def _load_once(self, idx: int, rng: random.Random) -> ClipSample:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------
# clip window and COCO ground truth (A2D-Sentences, JHMDB-Sentences)


def centred_window(frame: int, num_frames: int, num_video_frames: int) -> list[int]:
    """0-based indices `[frame - T//2, frame + (T+1)//2)` clamped to the video (edge frames repeat)."""
    if num_video_frames < 1:
        raise ValueError("centred_window: empty video")
    start = frame - num_frames // 2
    return [min(max(i, 0), num_video_frames - 1) for i in range(start, start + num_frames)]


def mask_to_coco_annotation(mask: np.ndarray, image_id: str, ann_id: int) -> dict:
    """A class-agnostic COCO annotation (RLE segmentation, string counts) for one GT mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"id": ann_id, "image_id": image_id, "category_id": COCO_DUMMY_CATEGORY["id"], "segmentation": rle,
            "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0}


def write_coco_gt(path: str | Path, items: Sequence[tuple[str, np.ndarray]]) -> Path:
    """Write a class-agnostic COCO GT json from (string image id, bool mask [H, W]) pairs, one per image."""
    path = Path(path)
    images, annotations, seen = [], [], set()
    for image_id, mask in items:
        if image_id in seen:
            continue
        seen.add(image_id)
        images.append({"id": image_id, "height": int(mask.shape[0]), "width": int(mask.shape[1])})
        annotations.append(mask_to_coco_annotation(mask, image_id, len(annotations) + 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_json({"categories": [COCO_DUMMY_CATEGORY], "images": images,
                                "annotations": annotations}), encoding="utf-8")
    return path


__all__ = [
    "MAX_RESAMPLE", "COCO_DUMMY_CATEGORY", "read_json_rows",
    "missing_files", "drop_missing",
    "resolve_transform", "apply_transform", "BadSampleSkipper", "SeededSampling", "SampleListDataset",
    "centred_window", "mask_to_coco_annotation", "write_coco_gt",
]
