"""The tiny random VD-IT (tests/conftest.py's `tiny_weights`) loaded once per session, and synthetic videos."""
import numpy as np
import pytest

# Frames of the synthetic test videos: not a multiple of 16 (exercises padding and crop) and small
# enough that the short side stays at the model minimum (64) after the resize.
SYNTH_H, SYNTH_W = 72, 100


@pytest.fixture(scope="session")
def tiny_model(tiny_weights):
    from vdit.models.vdit import VDIT

    return VDIT.from_pretrained(tiny_weights).eval()


@pytest.fixture(scope="session")
def make_frames():
    """make_frames(t, h, w, seed) -> list of uint8 RGB frames (see synthetic_frames)."""
    return synthetic_frames


def synthetic_frames(t: int, h: int = SYNTH_H, w: int = SYNTH_W, seed: int = 0) -> list[np.ndarray]:
    """A moving bright square on a noisy background (uint8 RGB), so frames differ from each other."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(t):
        f = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        top, left = (5 + 3 * i) % (h - 20), (7 + 5 * i) % (w - 20)
        f[top:top + 20, left:left + 20] = (220, 40, 40)
        frames.append(f)
    return frames
