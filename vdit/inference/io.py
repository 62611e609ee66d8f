"""Streaming frame input and video / mask output for `vdit segment`.

`vdit.data.video_io` reads a whole video into memory (`read_video_frames`) and writes a whole array
(`write_video`). Inference on long videos must hold at most one window of frames, so this module adds
the streaming counterparts on the same PyAV settings:

- `open_source(path)`: a video file, a folder of frames or a single image (a 1-frame video), probed up
  front (unreadable, empty or mixed-size inputs fail before any model work) and then iterated lazily
  as uint8 H x W x 3 RGB arrays.
- `VideoWriter`: an H.264 mp4 written frame by frame (same codec, pixel format and CRF as `write_video`).
- `write_mask_png`: a binary mask as an 8-bit grey PNG with values 0 / 255 (spec 6.1 output format).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from vdit.data.video_io import (DEFAULT_FPS, FPS_MAX_DENOMINATOR, IMAGE_EXTENSIONS, VIDEO_CODEC, VIDEO_CRF,
                                VIDEO_PIX_FMT, list_frame_files, read_image)
from vdit.errors import DataError, InputError

MASK_ON = 255  # foreground value of the written PNG masks (background 0)
# Smallest frame side accepted. The model input is at least 64 px (MIN_SIDE) and a 16 px frame already
# gets enlarged 4x to reach it; below that there is hardly anything to segment (a 1x1 "video" would
# still give a confident mask), so such inputs are refused instead.
MIN_FRAME_SIDE = 16


@dataclass
class FrameSource:
    """A probed input: kind is "video", "frames" (a folder of images) or "image"."""

    path: Path
    kind: str
    fps: float
    size: tuple[int, int]  # (H, W) of the first frame
    max_frames: int | None = None
    files: list[Path] = field(default_factory=list)  # frames / image
    declared_frames: int | None = None  # what the container says (videos; may be absent or approximate)

    def __iter__(self) -> Iterator[np.ndarray]:
        frames = self._iter_video() if self.kind == "video" else self._iter_files()
        return frames if self.max_frames is None else islice(frames, self.max_frames)

    def _iter_files(self) -> Iterator[np.ndarray]:
        for f in self.files:
            yield np.asarray(read_image(f))

    def _iter_video(self) -> Iterator[np.ndarray]:
        import av

        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(container.streams.video[0]):
                    yield frame.to_ndarray(format="rgb24")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise DataError(f"cannot decode video {self.path}: {exc}") from exc


def open_source(path: str | Path, fps: float | None = None, max_frames: int | None = None) -> FrameSource:
    """Probe a video file, a frames folder or an image. `fps` overrides the rate (required to be
    positive; folders and images default to DEFAULT_FPS); `max_frames` keeps only the first frames."""
    path = Path(path)
    if fps is not None and not fps > 0:
        raise InputError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be >= 1, got {max_frames}")
    if path.is_dir():
        files = list_frame_files(path)
        size = _check_same_size(files, path)
        source = FrameSource(path, "frames", fps or DEFAULT_FPS, size, max_frames, files)
    elif not path.exists():
        raise DataError(f"input not found: {path}")
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        img = read_image(path)
        source = FrameSource(path, "image", fps or DEFAULT_FPS, (img.height, img.width), max_frames, [path])
    else:
        source = _probe_video(path, fps, max_frames)
    h, w = source.size
    if min(h, w) < MIN_FRAME_SIDE:
        raise InputError(f"{path}: frames of {w}x{h} pixels are too small to segment "
                         f"(at least {MIN_FRAME_SIDE} pixels per side)")
    return source


def _check_same_size(files: list[Path], folder: Path) -> tuple[int, int]:
    """Read only the image headers; every frame of a folder must have the first frame's size."""
    first: tuple[int, int] | None = None
    for f in files:
        try:
            with Image.open(f) as img:
                w, h = img.size
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"cannot read image {f}: {exc}") from exc
        if first is None:
            first = (h, w)
        elif (h, w) != first:
            raise DataError(f"frames in {folder} have different sizes: {f.name} is {w}x{h}, "
                            f"{files[0].name} is {first[1]}x{first[0]}")
    assert first is not None  # list_frame_files never returns an empty list
    return first


def _probe_video(path: Path, fps: float | None, max_frames: int | None) -> FrameSource:
    import av

    if path.stat().st_size == 0:
        raise DataError(f"video {path} is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"no video stream (no frames) in {path}")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            declared = int(stream.frames) or None
            try:
                first = next(iter(container.decode(stream)), None)
            except av.EOFError:  # a stream header without a single frame
                first = None
    except DataError:
        raise
    except av.EOFError as exc:  # the container ends before its first frame
        raise DataError(f"video {path} has no decodable frames (empty or truncated file)") from exc
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"cannot read video {path}: {exc}") from exc
    if first is None:
        raise DataError(f"video {path} has no decodable frames")
    return FrameSource(path, "video", fps or (float(rate) if rate else DEFAULT_FPS), (first.height, first.width),
                       max_frames, declared_frames=declared)


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad H and W to even sizes by repeating the last row / column (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


class VideoWriter:
    """Write uint8 RGB frames one at a time to an H.264 mp4 (use as a context manager)."""

    def __init__(self, path: str | Path, fps: float):
        if not fps or fps <= 0:
            raise InputError(f"VideoWriter {path}: fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = fps
        self.frames_written = 0
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, frame: np.ndarray) -> None:
        import av

        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise InputError(f"VideoWriter {self.path}: frames must be uint8 H x W x 3, got {frame.shape} {frame.dtype}")
        frame = _even(frame)
        try:
            if self._container is None:
                self._open(frame.shape[:2])
            elif frame.shape[:2] != self._size:
                raise InputError(f"VideoWriter {self.path}: frame {self.frames_written} is {frame.shape[1]}x"
                                 f"{frame.shape[0]}, the video is {self._size[1]}x{self._size[0]}")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
        except av.FFmpegError as exc:
            raise DataError(f"cannot write video {self.path}: {exc}") from exc
        self.frames_written += 1

    def _open(self, size: tuple[int, int]) -> None:
        import av

        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream(VIDEO_CODEC, rate=Fraction(self.fps).limit_denominator(FPS_MAX_DENOMINATOR))
        self._stream.height, self._stream.width = int(size[0]), int(size[1])
        self._stream.pix_fmt = VIDEO_PIX_FMT
        self._stream.options = {"crf": VIDEO_CRF}
        self._size = size

    def close(self) -> None:
        import av

        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        except av.FFmpegError as exc:
            raise DataError(f"cannot write video {self.path}: {exc}") from exc
        finally:
            self._container.close()
            self._container = None


def write_mask_png(path: str | Path, mask: np.ndarray) -> Path:
    """A boolean mask [H, W] as an 8-bit grey ("L") PNG with values 0 / 255."""
    path = Path(path)
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"write_mask_png {path}: mask must be [H, W], got {arr.shape}")
    Image.fromarray((arr > 0).astype(np.uint8) * MASK_ON).save(path)  # uint8 2-D -> mode "L"
    return path
