"""Splitting a video (a sequence or a stream of frames) into consecutive inference windows.

Spec 6.1 (Ref-YouTube-VOS) runs the whole video as one clip; spec 6.2 (Ref-DAVIS17) runs consecutive
clips of 36 frames, the last one shorter, and picks the best query in each clip independently. Both
are `iter_windows(frames, window)` with `window=None` or `window=36`.
"""
from __future__ import annotations

from itertools import islice
from typing import Any, Iterable, Iterator

import torch

from vdit.errors import InputError

# Ref-DAVIS17 clip length (spec 6.2: `crop_len = 36`, because MSDeformAttn's im2col_step is 64).
DAVIS_WINDOW = 36


def window_bounds(num_frames: int, window: int | None) -> list[tuple[int, int]]:
    """[start, end) frame ranges of consecutive windows covering `num_frames` frames."""
    check_window(window)
    if num_frames <= 0:
        return []
    step = num_frames if window is None else window
    return [(s, min(s + step, num_frames)) for s in range(0, num_frames, step)]


def check_window(window: int | None) -> None:
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise InputError(f"window must be a positive number of frames or None (whole video), got {window!r}")


def as_frame_iterable(frames: Any) -> Iterable[Any]:
    """Frames as an iterable of single frames: a [T,3,H,W] tensor is split along T; a single [3,H,W]
    tensor, H x W x 3 array or PIL image is refused (wrap it in a list: a 1-frame video)."""
    if isinstance(frames, torch.Tensor):
        if frames.dim() != 4:
            raise InputError(f"a frames tensor must be [T,3,H,W], got shape {tuple(frames.shape)} "
                             "(for one image pass [1,3,H,W] or a list)")
        return frames.unbind(0)
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise InputError(f"frames must be a list of RGB frames or a [T,3,H,W] tensor, got {type(frames).__name__}")
    if hasattr(frames, "ndim") and getattr(frames, "ndim") == 3:  # one numpy image, not a video
        raise InputError("frames is a single H x W x 3 image; pass [image] for a 1-frame video")
    return frames


def iter_windows(frames: Iterable[Any], window: int | None) -> Iterator[tuple[int, list[Any]]]:
    """Yield (start index, frames of the window) lazily: at most `window` frames are held at a time,
    so a generator of frames (e.g. a video decoder) is never read ahead by more than one window.
    `window=None` collects the whole stream into a single window."""
    check_window(window)
    it = iter(frames)
    start = 0
    while True:
        chunk = list(it) if window is None else list(islice(it, window))
        if not chunk:
            return
        yield start, chunk
        start += len(chunk)
        if window is None:
            return
