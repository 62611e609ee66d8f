"""JHMDB-Sentences (evaluation only): reader, dataset and writers for the layout of spec 7.4.

```
<root>/jhmdb_sentences_samples_metadata.json
<root>/jhmdb_sentences_gt_annotations_in_coco_format.json
<data_root>/<relative frame dir>/<idx:05d>.png      # 1-based, e.g. ./jhmdb_sentences/Rename_Images/<action>/<video>/
<data_root>/<relative mask path>                    # .../puppet_mask/<action>/<video>/puppet_mask.mat
```

Metadata entries are `[video_id, chosen_frame_path, video_masks_path, video_total_frames, text_query]`; the
paths are relative to a data root that the official code hard-codes. MTTR's published metadata starts them
with `./jhmdb_sentences/`, i.e. they are relative to the *parent* of the JHMDB-Sentences folder, which is
the default `data_root` here (pass another one when your tree differs).

`puppet_mask.mat` (MATLAB v5) holds `part_mask` [H, W, T] (MATLAB drops a trailing T of 1, giving [H, W]).
The clip is the window of spec 6.3: T frames centred on the chosen frame, clamped to [1, total frames].
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from vdit.data.common import (
    BadSampleSkipper, SampleListDataset, apply_transform, centred_window, drop_missing, read_json_rows,
    resolve_transform, write_coco_gt,
)
from vdit.data.transforms import normalize_text
from vdit.data.types import ClipSample
from vdit.data.video_io import read_image
from vdit.errors import ConfigError, DataError
from vdit.fileio import dumps_json

log = logging.getLogger(__name__)

JHMDB_METADATA_JSON = "jhmdb_sentences_samples_metadata.json"
JHMDB_GT_JSON = "jhmdb_sentences_gt_annotations_in_coco_format.json"
JHMDB_MASK_KEY = "part_mask"
JHMDB_NUM_FRAMES = 5  # window length T of spec 6.3
JHMDB_FRAME_DIR = "Rename_Images"  # sub-folders of the JHMDB-Sentences tree (writer / path helper)
JHMDB_MASK_DIR = "puppet_mask"
JHMDB_MASK_FILE = "puppet_mask.mat"
JHMDB_METADATA_ROW = "[video_id, frame_path (…/<idx>.png), masks_path, total_frames, text]"


@dataclass(frozen=True)
class JHMDBSample:
    """One metadata entry. Paths are relative to the data root, with '/' separators."""

    video_id: str
    frame_path: str
    masks_path: str
    total_frames: int
    text: str

    @property
    def frame_idx(self) -> int:
        """The chosen (annotated) frame, 1-based, parsed from the frame file name."""
        return int(PurePosixPath(self.frame_path).stem)

    def frame_rel_path(self, idx: int) -> str:
        """Relative path of frame `idx` (1-based) of the same video."""
        return str(PurePosixPath(self.frame_path).parent / f"{idx:05d}.png")


def jhmdb_image_id(video_id: str, frame_idx: int) -> str:
    """The COCO image id of spec 6.3: `v_<video>_f_<frame>`."""
    return f"v_{video_id}_f_{frame_idx}"


def jhmdb_sample(video_id: str, action: str, frame_idx: int, total_frames: int, text: str,
                 prefix: str = "./jhmdb_sentences") -> JHMDBSample:
    """A metadata entry with the real relative paths (`<prefix>/Rename_Images/<action>/<video>/...`)."""
    frames = f"{prefix}/{JHMDB_FRAME_DIR}/{action}/{video_id}/{frame_idx:05d}.png"
    masks = f"{prefix}/{JHMDB_MASK_DIR}/{action}/{video_id}/{JHMDB_MASK_FILE}"
    return JHMDBSample(video_id, frames, masks, total_frames, text)


# ---------------------------------------------------------------------------------------------------
# readers


def _parse_jhmdb_sample(entry: Any) -> JHMDBSample:
    video_id, frame_path, masks_path, total, text = entry
    sample = JHMDBSample(str(video_id), str(frame_path), str(masks_path), int(total), str(text))
    frame_idx = sample.frame_idx
    if not 1 <= frame_idx <= sample.total_frames:
        raise DataError(f"frame {frame_idx} outside 1..{sample.total_frames}")
    return sample


def read_jhmdb_metadata(path: str | Path) -> list[JHMDBSample]:
    """Parse `jhmdb_sentences_samples_metadata.json`; DataError naming the file if malformed."""
    return read_json_rows(path, JHMDB_METADATA_ROW, _parse_jhmdb_sample)


def read_puppet_masks(path: str | Path) -> np.ndarray:
    """Read `puppet_mask.mat` -> bool [T, H, W] (from `part_mask` [H, W, T])."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mask file not found")
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError/TypeError/OSError/... on bad files
        raise DataError(f"{path}: cannot read MATLAB file ({type(exc).__name__}: {exc})") from None
    if JHMDB_MASK_KEY not in content:
        raise DataError(f"{path}: no '{JHMDB_MASK_KEY}' variable (found {sorted(k for k in content if not k.startswith('__'))})")
    masks = np.asarray(content[JHMDB_MASK_KEY])
    if masks.ndim == 2:
        masks = masks[:, :, np.newaxis]
    if masks.ndim != 3:
        raise DataError(f"{path}: '{JHMDB_MASK_KEY}' has shape {masks.shape}, expected [H, W, T]")
    return np.ascontiguousarray(masks.transpose(2, 0, 1) > 0)


# ---------------------------------------------------------------------------------------------------
# dataset


class JHMDBSentencesDataset(SampleListDataset):
    """JHMDB-Sentences evaluation samples as `ClipSample`s (T-frame window, the chosen frame annotated).

    root: folder holding the metadata json. data_root: what the metadata paths are relative to (default:
    the parent of `root`, see module doc). transform: default `build_transforms("jhmdb", train=False)`.
    skip_bad: skip samples with missing / corrupt files (warning with a count) instead of raising.
    seed: base of the per-sample random streams (only used by a random `transform`).
    """

    dataset_name = "jhmdb"
    train = False  # evaluation only: every sample is kept, visible target or not

    def __init__(self, root: str | Path, data_root: str | Path | None = None, num_frames: int = JHMDB_NUM_FRAMES,
                 transform: Any = None, skip_bad: bool = False, *, seed: int = 0) -> None:
        if num_frames < 1:
            raise ConfigError(f"JHMDB-Sentences: num_frames must be >= 1, got {num_frames}")
        self.root = Path(root)
        self.seed = int(seed)
        self.data_root = Path(data_root) if data_root is not None else self.root.resolve().parent
        self.num_frames = num_frames
        self.metadata_path = self.root / JHMDB_METADATA_JSON
        self.transform = resolve_transform(transform, "jhmdb", False)
        self._skipper = BadSampleSkipper("JHMDB-Sentences", skip_bad)
        self.samples: list[JHMDBSample] = drop_missing(
            read_jhmdb_metadata(self.metadata_path),
            lambda s: (self.data_root / s.frame_path, self.data_root / s.masks_path),
            "JHMDB-Sentences", skip_bad)
        log.info("JHMDB-Sentences: %d samples", len(self.samples))

    def _load_once(self, idx: int, rng: random.Random) -> ClipSample:
        sample = self.samples[idx]
        chosen = sample.frame_idx
        indices = [i + 1 for i in centred_window(chosen - 1, self.num_frames, sample.total_frames)]
        position = indices.index(chosen)
        cache: dict[int, Any] = {}
        for i in indices:
            if i not in cache:
                cache[i] = read_image(self.data_root / sample.frame_rel_path(i))
        frames = [cache[i] for i in indices]

        masks_path = self.data_root / sample.masks_path
        all_masks = read_puppet_masks(masks_path)
        if chosen > all_masks.shape[0]:
            raise DataError(f"{masks_path}: has {all_masks.shape[0]} mask frames, the sample needs frame {chosen}")
        mask = all_masks[chosen - 1]
        width, height = frames[position].size
        if mask.shape != (height, width):
            raise DataError(f"{masks_path}: masks are {mask.shape[1]}x{mask.shape[0]} (WxH) but frame "
                            f"{self.data_root / sample.frame_path} is {width}x{height}")
        if any(f.size != (width, height) for f in frames):
            raise DataError(f"{self.data_root / sample.frame_path}: the frames of video {sample.video_id} differ in size")

        masks = np.zeros((len(indices), height, width), dtype=bool)
        valid = np.zeros(len(indices), dtype=bool)
        masks[position] = mask
        valid[position] = bool(mask.any())
        out = apply_transform(self.transform, frames, masks, valid, normalize_text(sample.text), rng)
        return ClipSample(
            frames=out[0], masks=out[1], boxes=out[2], valid=out[3], text=out[4],
            orig_size=(height, width), valid_indices=[position],
            meta={"dataset": "jhmdb", "video_id": sample.video_id, "frame_idx": chosen,
                  "image_id": jhmdb_image_id(sample.video_id, chosen), "frame_ids": [f"{i:05d}" for i in indices]},
        )


# ---------------------------------------------------------------------------------------------------
# writers


def write_jhmdb_frames(frame_dir: str | Path, frames: Sequence[np.ndarray]) -> Path:
    """Write RGB uint8 frames as `00001.png`, `00002.png`, ... (1-based) into `frame_dir`."""
    from PIL import Image

    frame_dir = Path(frame_dir)
    frame_dir.mkdir(parents=True, exist_ok=True)
    for i, array in enumerate(frames, start=1):
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(frame_dir / f"{i:05d}.png")
    return frame_dir


def write_puppet_masks(path: str | Path, masks: np.ndarray) -> Path:
    """Write bool masks [T, H, W] as a MATLAB v5 `puppet_mask.mat` holding `part_mask` [H, W, T]."""
    import scipy.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {JHMDB_MASK_KEY: np.asarray(masks, dtype=np.uint8).transpose(1, 2, 0)})
    return path


def write_jhmdb_metadata(path: str | Path, samples: Sequence[JHMDBSample]) -> Path:
    """Write the metadata json (list of `[video_id, frame_path, masks_path, total_frames, text]`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [[s.video_id, s.frame_path, s.masks_path, s.total_frames, s.text] for s in samples]
    path.write_text(dumps_json(rows), encoding="utf-8")
    return path


def write_jhmdb_coco_gt(data_root: str | Path, samples: Sequence[JHMDBSample], path: str | Path) -> Path:
    """Build the class-agnostic COCO GT json (one RLE per chosen frame) from the puppet masks."""
    data_root = Path(data_root)
    items = []
    for s in samples:
        items.append((jhmdb_image_id(s.video_id, s.frame_idx), read_puppet_masks(data_root / s.masks_path)[s.frame_idx - 1]))
    return write_coco_gt(path, items)


def write_jhmdb_dataset(root: str | Path, videos: dict[tuple[str, str], tuple[Sequence[np.ndarray], np.ndarray]],
                        samples: Sequence[JHMDBSample], data_root: str | Path | None = None) -> Path:
    """Write a JHMDB-Sentences tree: frames, puppet masks, metadata json and COCO GT json.

    videos: (action, video_id) -> (RGB frames, masks bool [T, H, W]); they go under
    `<data_root>/<root name>/{Rename_Images,puppet_mask}/<action>/<video>/`, matching `jhmdb_sample`
    paths built with prefix `./<root name>`.
    """
    root = Path(root)
    data_root = Path(data_root) if data_root is not None else root.parent
    for (action, video_id), (frames, masks) in videos.items():
        write_jhmdb_frames(root / JHMDB_FRAME_DIR / action / video_id, frames)
        write_puppet_masks(root / JHMDB_MASK_DIR / action / video_id / JHMDB_MASK_FILE, masks)
    write_jhmdb_metadata(root / JHMDB_METADATA_JSON, samples)
    write_jhmdb_coco_gt(data_root, samples, root / JHMDB_GT_JSON)
    return root


__all__ = [
    "JHMDBSample", "JHMDBSentencesDataset", "jhmdb_image_id", "jhmdb_sample", "read_jhmdb_metadata",
    "read_puppet_masks", "write_jhmdb_frames", "write_puppet_masks", "write_jhmdb_metadata",
    "write_jhmdb_coco_gt", "write_jhmdb_dataset",
]
