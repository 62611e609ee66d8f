"""Builders for small DAVIS layouts and label PNGs used by the evaluation tests."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_png(path: Path, labels: np.ndarray, mode: str = "P") -> Path:
    """Write a uint8 label map as a palette ('P'), grey ('L') or colour ('RGB') PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, dtype=np.uint8)
    if mode == "RGB":
        image = Image.fromarray(np.stack([labels] * 3, axis=-1))
    else:
        image = Image.frombytes("L" if mode == "L" else "P", labels.shape[::-1], labels.tobytes())
        if mode == "P":
            image.putpalette([v for i in range(256) for v in (i, (37 * i) % 256, (91 * i) % 256)])
    image.save(path)
    return path


def make_davis(root: Path, task: str, gt: dict, sequences_file: bool = True) -> Path:
    """DAVIS root with `gt` = {sequence: [label map per frame]} for `task`, dummy JPEGs, ImageSets/2017/val.txt."""
    folder = "Annotations" if task == "semi-supervised" else "Annotations_unsupervised"
    for seq, frames in gt.items():
        for t, labels in enumerate(frames):
            write_png(root / folder / "480p" / seq / f"{t:05d}.png", labels)
            jpg = root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg"
            jpg.parent.mkdir(parents=True, exist_ok=True)
            jpg.write_bytes(b"")
    if sequences_file:
        (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(gt) + "\n")
    return root


def write_results(folder: Path, results: dict, mode: str = "P") -> Path:
    """results = {sequence: [label map per frame]} written as <folder>/<seq>/<frame:05d>.png."""
    for seq, frames in results.items():
        for t, labels in enumerate(frames):
            if labels is not None:
                write_png(folder / seq / f"{t:05d}.png", labels, mode)
    return folder


def blob_sequence(rng, n_frames: int, shape, n_objects: int, void: bool = False) -> list:
    """Moving rectangles labelled 1..n_objects (later objects drawn on top), optional 255 void bands."""
    h, w = shape
    frames = []
    starts = [(int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))) for _ in range(n_objects)]
    sizes = [(int(rng.integers(h // 6, h // 2)), int(rng.integers(w // 6, w // 2))) for _ in range(n_objects)]
    for t in range(n_frames):
        labels = np.zeros(shape, np.uint8)
        for k, ((y, x), (bh, bw)) in enumerate(zip(starts, sizes)):
            yy, xx = (y + 2 * t) % (h - bh), (x + 3 * t) % (w - bw)
            labels[yy: yy + bh, xx: xx + bw] = k + 1
        if void:
            labels[:, (5 * t) % w: (5 * t) % w + 3] = 255
        frames.append(labels)
    return frames


@pytest.fixture
def davis_tools():
    """The builder functions, for tests that lay out their own DAVIS folders."""
    class Tools:
        pass

    tools = Tools()
    tools.write_png = write_png
    tools.make_davis = make_davis
    tools.write_results = write_results
    tools.blob_sequence = blob_sequence
    return tools
