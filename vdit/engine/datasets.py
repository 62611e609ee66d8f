"""Training datasets by name (`DataConfig.name`), built from the dataset classes of `vdit.data`.

    ytvos      RefYTVOSDataset(root, split)           Ref-YouTube-VOS layout (spec 7.1)
    a2d        A2DSentencesDataset(root, split)       A2D-Sentences (spec 7.3)
    refcoco    RefCOCODataset(root, ds, split) for ds in data.refcoco_sets, concatenated (joint pre-training)
    synthetic  SyntheticRefDataset(root, split)       the generated benchmark (Ref-YTVOS layout); written to
                                                      `root` first when absent and data.synthetic_videos > 0

Each uses its spec 5.5 training transform (`build_transforms(name, train=True)`) and per-sample random
streams seeded by (seed, epoch, index): call `set_epoch(dataset, epoch)` at the start of every epoch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

from vdit.config import DataConfig
from vdit.errors import ConfigError, DataError


def _root(data: DataConfig) -> Path:
    if not data.root:
        raise ConfigError(f"data.root is empty: pass --data-root DIR (the {data.name} dataset folder)")
    return Path(data.root).expanduser()


def ensure_synthetic(data: DataConfig) -> bool:
    """Write the synthetic benchmark to data.root when it holds none and data.synthetic_videos > 0.
    Returns True when it was written. Call on one process only."""
    from vdit.data.synthetic import INFO_FILE, make_synthetic_benchmark

    root = _root(data)
    if (root / INFO_FILE).is_file() or data.synthetic_videos == 0:
        return False
    make_synthetic_benchmark(root, num_train_videos=data.synthetic_videos, num_valid_videos=0,
                             num_heldout_videos=0, num_frames=data.synthetic_frames, height=data.synthetic_height,
                             width=data.synthetic_width, seed=data.synthetic_seed)
    return True


def build_train_dataset(data: DataConfig, num_frames: int, seed: int) -> Dataset:
    """The training dataset named by `data`, with T = `num_frames` and per-sample seeds from `seed`."""
    from vdit.data.transforms import build_transforms

    data.validate()
    root = _root(data)
    if not root.is_dir():
        raise DataError(f"{data.name} root not found: {root}")
    max_size = data.max_size or None
    transform = build_transforms(data.name, True, max_size=max_size)
    dataset: Dataset
    if data.name == "ytvos":
        from vdit.data.ytvos import RefYTVOSDataset

        dataset = RefYTVOSDataset(root, data.split, num_frames, transform, train=True, seed=seed,
                                  skip_bad=data.skip_bad)
    elif data.name == "synthetic":
        from vdit.data.synthetic import SyntheticRefDataset

        dataset = SyntheticRefDataset(root, data.split, num_frames, transform, train=True, seed=seed,
                                      skip_bad=data.skip_bad)
    elif data.name == "a2d":
        from vdit.data.a2d import A2DSentencesDataset

        dataset = A2DSentencesDataset(root, data.split, num_frames, transform, skip_bad=data.skip_bad, seed=seed)
    else:  # refcoco: the official "all" = refcoco + refcoco+ + refcocog
        from vdit.data.refcoco import RefCOCODataset

        parts = [RefCOCODataset(root, name, data.split, transform, num_frames=num_frames, skip_bad=data.skip_bad,
                                seed=seed) for name in data.refcoco_sets]
        dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    if len(dataset) == 0:
        raise DataError(f"{data.name} {data.split} under {root}: no training samples")
    if data.max_samples:
        dataset = Subset(dataset, range(min(data.max_samples, len(dataset))))
    return dataset


def set_epoch(dataset: Any, epoch: int) -> None:
    """Select the epoch's random stream in a dataset and in every dataset it wraps."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    for child in getattr(dataset, "datasets", ()):  # ConcatDataset
        set_epoch(child, epoch)
    inner = getattr(dataset, "dataset", None)  # Subset
    if inner is not None:
        set_epoch(inner, epoch)
