"""The training set of a run."""
from __future__ import annotations

from dataclasses import dataclass

from vdit.errors import ConfigError

TRAIN_DATASETS = ("ytvos", "a2d", "refcoco", "synthetic")


@dataclass
class DataConfig:
    """Which training set, where it lives, and (synthetic only) how to generate it when absent."""

    name: str = "ytvos"
    root: str = ""  # dataset root (the COCO root, holding train2014/ and refcoco*/, for refcoco)
    split: str = "train"
    refcoco_sets: tuple[str, ...] = ("refcoco", "refcoco+", "refcocog")  # joint pre-training (concatenated)
    skip_bad: bool = False  # replace missing/corrupt samples (counted, warned) instead of stopping
    max_samples: int = 0  # train on the first N samples only (smoke runs); 0 = all
    max_size: int = 0  # long-side cap of the train resize; 0 = the recipe's (640, or 800 for refcoco)
    # synthetic: when `root` holds no benchmark and synthetic_videos > 0, write one there first
    synthetic_videos: int = 0
    synthetic_frames: int = 6
    synthetic_height: int = 64
    synthetic_width: int = 64
    synthetic_seed: int = 0

    def validate(self) -> "DataConfig":
        if self.name not in TRAIN_DATASETS:
            raise ConfigError(f"data.name={self.name!r}: expected one of {TRAIN_DATASETS}")
        for name in ("max_samples", "max_size", "synthetic_videos"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"data.{name}={getattr(self, name)}: must be >= 0")
        if self.name == "refcoco" and not self.refcoco_sets:
            raise ConfigError("data.refcoco_sets is empty: name at least one of refcoco, refcoco+, refcocog")
        return self
