"""Inference on a user's own video: `VDITPredictor` (build once, segment many videos) and the
`vdit segment` export (PNG masks, overlay video, summary). See docs/inference.md.

The names below are imported lazily, so importing a light submodule of this package (or another
helper's module here) does not pull in torch and the model."""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {name: "vdit.inference.predictor" for name in
         ("VDITPredictor", "SegmentationResult", "TextSegmentation", "WindowResult", "collect_windows")}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
