"""Sine position encodings: exact values from the formula, padding awareness, errors."""

from __future__ import annotations

import math

import pytest
import torch

from vdit.errors import ConfigError
from vdit.models.head.position_encoding import PositionEmbeddingSine1D, PositionEmbeddingSine2D


def _expected_channel(position: float, channel: int, num_feats: int, temperature: float = 10000.0) -> float:
    """Channel 2k is sin(pos / T^(2k/F)), channel 2k+1 is cos of the same phase."""
    k = channel // 2
    phase = position / temperature ** (2 * k / num_feats)
    return math.sin(phase) if channel % 2 == 0 else math.cos(phase)


def test_2d_values_follow_the_formula_y_then_x():
    h, w = 3, 5
    pos = PositionEmbeddingSine2D()(torch.zeros(1, h, w, dtype=torch.bool))
    assert pos.shape == (1, 256, h, w) and pos.dtype == torch.float32
    for i, j in ((0, 0), (2, 4), (1, 3)):
        y = (i + 1 - 0.5) / (h + 1e-6) * 2 * math.pi
        x = (j + 1 - 0.5) / (w + 1e-6) * 2 * math.pi
        for c in (0, 1, 2, 3, 64, 65, 127):
            assert pos[0, c, i, j].item() == pytest.approx(_expected_channel(y, c, 128), abs=1e-5)
            assert pos[0, 128 + c, i, j].item() == pytest.approx(_expected_channel(x, c, 128), abs=1e-5)


def test_2d_valid_region_is_independent_of_padding():
    enc = PositionEmbeddingSine2D()
    mask = torch.zeros(2, 9, 12, dtype=torch.bool)
    mask[0, 6:, :] = True  # sample 0: 6x8 valid
    mask[0, :, 8:] = True
    padded = enc(mask)
    alone = enc(torch.zeros(1, 6, 8, dtype=torch.bool))
    torch.testing.assert_close(padded[0, :, :6, :8], alone[0])
    torch.testing.assert_close(padded[1], enc(torch.zeros(1, 9, 12, dtype=torch.bool))[0])


def test_2d_custom_size_and_temperature():
    enc = PositionEmbeddingSine2D(num_pos_feats=8, temperature=20.0)
    pos = enc(torch.zeros(1, 2, 2, dtype=torch.bool))
    assert pos.shape == (1, 16, 2, 2)
    y = 1.5 / (2 + 1e-6) * 2 * math.pi
    assert pos[0, 5, 1, 0].item() == pytest.approx(_expected_channel(y, 5, 8, 20.0), abs=1e-5)


def test_1d_values_and_padding():
    enc = PositionEmbeddingSine1D()
    mask = torch.tensor([[False, False, False, True, True], [False] * 5])
    pos = enc(mask)
    assert pos.shape == (2, 5, 256)
    for t in range(3):
        x = (t + 1) / (3 + 1e-6) * 2 * math.pi  # no -0.5 shift in the 1-D variant
        for c in (0, 1, 100, 255):
            assert pos[0, t, c].item() == pytest.approx(_expected_channel(x, c, 256), abs=1e-5)
    torch.testing.assert_close(pos[0, :3], enc(torch.zeros(1, 3, dtype=torch.bool))[0])


def test_errors():
    with pytest.raises(ConfigError):
        PositionEmbeddingSine2D(num_pos_feats=7)
    with pytest.raises(ConfigError):
        PositionEmbeddingSine1D(normalize=False, scale=1.0)
    with pytest.raises(ValueError):
        PositionEmbeddingSine2D()(torch.zeros(1, 3, 3))
    with pytest.raises(ValueError):
        PositionEmbeddingSine1D()(torch.zeros(1, 2, 3, dtype=torch.bool))
