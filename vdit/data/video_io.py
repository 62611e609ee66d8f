"""Reading and writing videos and frame folders (PyAV; no OpenCV).

- `read_video_frames(path)`: decode every frame of a video file to RGB PIL images, plus its fps.
- `read_frames_dir(path)`: the image files of a folder, sorted by name, as RGB PIL images.
- `write_video(path, frames, fps)`: H.264 mp4 (yuv420p) from uint8 [T,H,W,3] frames.

Every failure on user files raises `DataError` (reading) or `InputError` (bad frames to write) with
the offending path in the message.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from vdit.errors import DataError, InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Used when a container does not declare a frame rate.
DEFAULT_FPS = 25.0
VIDEO_CODEC = "libx264"
VIDEO_PIX_FMT = "yuv420p"
# Constant rate factor of the H.264 encoder: visually lossless for overlays and demos.
VIDEO_CRF = "18"
# Frame rates are stored as fractions; this bounds the denominator (29.97 -> 2997/100).
FPS_MAX_DENOMINATOR = 1001
# PIL modes of 16-bit grey images (PNG bit depth 16); read_image scales them to 8 bits.
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
MAX_8BIT = 255
MAX_16BIT = 65535


def read_video_frames(path: str | Path) -> tuple[list[Image.Image], float]:
    """Decode all frames of a video file as RGB PIL images; returns (frames, fps)."""
    import av  # local: PyAV is only needed on the video path

    path = Path(path)
    if not path.is_file():
        raise DataError(f"video file not found: {path}")
    frames: list[Image.Image] = []
    fps = DEFAULT_FPS
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"no video stream in {path}")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if rate:
                fps = float(rate)
            for frame in container.decode(stream):
                frames.append(frame.to_image().convert("RGB"))
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode video {path}: {exc}") from exc
    if not frames:
        raise DataError(f"video {path} has no decodable frames")
    return frames, fps


def list_frame_files(path: str | Path) -> list[Path]:
    """Image files of a folder (extensions in IMAGE_EXTENSIONS), sorted by file name."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"frame folder not found: {path}")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
    return files


def read_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Open and fully decode one image file (DataError naming it when missing or corrupt).

    16-bit grey images (PNG) are scaled to 8 bits (v * 255 / 65535, rounded) before the conversion:
    PIL's own conversion clips them at 255, which turns almost every pixel white. 16-bit colour PNGs
    are already reduced to 8 bits by PIL. Floating-point and 32-bit integer images have no defined
    brightness range and are refused."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in WIDE_GREY_MODES or (img.mode == "I" and img.format == "PNG"):
                img = _grey16_to_8bit(img)
            elif img.mode in ("I", "F"):
                raise DataError(f"cannot read image {path}: its {'32-bit integer' if img.mode == 'I' else 'float'} "
                                "pixels have no defined brightness range; save it as an 8- or 16-bit image")
            return img.convert(mode) if mode and img.mode != mode else img.copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def _grey16_to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit grey image (0..65535) as an 8-bit "L" image with the same brightness."""
    arr = np.asarray(img, dtype=np.int64)
    scaled = (arr * MAX_8BIT + MAX_16BIT // 2) // MAX_16BIT  # round(v * 255 / 65535), in integers
    return Image.fromarray(np.clip(scaled, 0, MAX_8BIT).astype(np.uint8))


def read_frames_dir(path: str | Path) -> list[Image.Image]:
    """All image files of a folder, sorted by name, as RGB PIL images (all of the same size)."""
    files = list_frame_files(path)
    frames = [read_image(f) for f in files]
    sizes = {f.size for f in frames}
    if len(sizes) > 1:
        raise DataError(f"frames in {path} have different sizes: {sorted(sizes)}")
    return frames


def _even_pad(frames: np.ndarray) -> np.ndarray:
    """Pad H and W to even numbers by repeating the last row/column (yuv420p needs even sizes)."""
    _, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return frames


def write_video(path: str | Path, frames: np.ndarray | Sequence[np.ndarray], fps: float) -> Path:
    """Write uint8 RGB frames [T,H,W,3] as an H.264 mp4; odd sizes are padded to even by edge repeat."""
    import av

    path = Path(path)
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise InputError(f"write_video {path}: frames must be [T,H,W,3] with T >= 1, got {arr.shape}")
    if arr.dtype != np.uint8:
        raise InputError(f"write_video {path}: frames must be uint8, got {arr.dtype}")
    if not fps or fps <= 0:
        raise InputError(f"write_video {path}: fps must be positive, got {fps}")
    arr = _even_pad(arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(FPS_MAX_DENOMINATOR)
    try:
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(VIDEO_CODEC, rate=rate)
            stream.width, stream.height = int(arr.shape[2]), int(arr.shape[1])
            stream.pix_fmt = VIDEO_PIX_FMT
            stream.options = {"crf": VIDEO_CRF}
            for img in arr:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except av.FFmpegError as exc:
        raise DataError(f"cannot write video {path}: {exc}") from exc
    return path
