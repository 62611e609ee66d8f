"""The synthetic benchmark read back for training and evaluation."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vdit.data.transforms import ClipTransform
from vdit.data.ytvos import RefYTVOSDataset


class SyntheticRefDataset(RefYTVOSDataset):
    """The synthetic benchmark through the Ref-YTVOS reader, with its own defaults.

    Transforms: `build_transforms("synthetic")` (native-size scale jitter, flip with left/right swap,
    photometric without channel permutation). Clips are never reversed in time (`reverse_prob=0`):
    reversal would turn "moving left" into a false statement.
    """

    dataset_name = "synthetic"
    default_reverse_prob = 0.0

    def __init__(self, root: str | Path, split: str = "train", num_frames: int = 5,
                 transform: ClipTransform | None = None, **kwargs: Any):
        kwargs.setdefault("exclude_test", False)
        super().__init__(root, split, num_frames, transform, **kwargs)
