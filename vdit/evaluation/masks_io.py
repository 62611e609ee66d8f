"""Reading masks and small text files for the evaluators (json: `vdit.fileio.read_json`), with errors that name the file.

Label PNGs are read as the official DAVIS tools read them (``np.array(Image.open(path))``): the pixel value
of a palette ('P') or 8-bit grey ('L') image is the object id. Anything that is not a single-channel 8-bit
image (RGB, RGBA, 16-bit grey...) is rejected: the official code would either crash on it or silently
treat colours as ids.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vdit.errors import DataError, EvaluationError

# PIL modes whose np.array is a 2-D map of 8-bit ids ('1' is a 1-bit mask, read as 0/1).
LABEL_PNG_MODES = ("P", "L", "1")


def _open_png(source: Path | bytes, name: str, error_cls: type[Exception]):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    except FileNotFoundError:
        raise error_cls(f"missing mask file: {name}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise error_cls(f"cannot read image {name}: {exc}") from None
    return image


def read_label_png(path: Path | str, error_cls: type[Exception] = EvaluationError,
                   what: str = "mask") -> np.ndarray:
    """Read a palette/grey PNG as a uint8 (H, W) label map; `error_cls` is raised naming the file."""
    path = Path(path)
    image = _open_png(path, str(path), error_cls)
    return label_array(image, str(path), error_cls, what)


def label_array(image, name: str, error_cls: type[Exception] = EvaluationError, what: str = "mask") -> np.ndarray:
    """np.uint8 label map of an opened PIL image, rejecting multi-channel or wide images."""
    if image.mode not in LABEL_PNG_MODES:
        raise error_cls(f"{what} {name} is a {image.mode!r} image; expected an 8-bit palette ('P') or grey ('L') "
                        f"PNG whose pixel values are object ids")
    array = np.array(image)
    if array.ndim != 2:
        raise error_cls(f"{what} {name} is not a single-channel image (shape {array.shape})")
    return array.astype(np.uint8, copy=False)


def png_stems(folder: Path) -> list[str]:
    """Sorted file stems of the *.png files of `folder` (empty when the folder does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".png")] for p in folder.iterdir() if p.name.endswith(".png"))
