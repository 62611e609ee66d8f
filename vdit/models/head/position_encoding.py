"""Sinusoidal position encodings of the VD-IT head (DETR lineage).

* :class:`PositionEmbeddingSine2D` encodes the (y, x) position of every non-padded pixel of a feature
  map (spec 2.8): coordinates are the cumulative count of valid pixels along each axis, normalised as
  ``(cumsum - 0.5) / (last + 1e-6) * 2*pi`` (the Deformable-DETR variant, so a map's valid region is
  encoded the same way whatever the padding), then ``num_pos_feats`` interleaved sin/cos channels per
  axis; the output is ``[pos_y, pos_x]``.
* :class:`PositionEmbeddingSine1D` does the same along a token sequence for the text (spec 3.1), with
  the DETR normalisation ``cumsum / (last + 1e-6) * 2*pi`` (no -0.5 shift, as the official 1-D code).

Both take the padding mask (True = padded) and return float32 encodings.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vdit.errors import ConfigError

DEFAULT_NUM_POS_FEATS_2D = 128  # per axis; [pos_y, pos_x] gives 256 channels = head width
DEFAULT_NUM_POS_FEATS_1D = 256
DEFAULT_TEMPERATURE = 10000.0
DEFAULT_SCALE = 2.0 * math.pi
NORMALIZE_EPS = 1e-6
# The 2-D variant measures positions at pixel centres: (cumsum - 0.5).
PIXEL_CENTRE_SHIFT = 0.5


def _frequencies(num_pos_feats: int, temperature: float, device: torch.device) -> Tensor:
    """Per-channel divisors temperature^(2*floor(i/2)/num_pos_feats): channels 2k and 2k+1 share one."""
    index = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    return temperature ** (2.0 * torch.div(index, 2, rounding_mode="floor") / num_pos_feats)


def _interleaved_sin_cos(position: Tensor, num_pos_feats: int, temperature: float) -> Tensor:
    """[..., ] positions -> [..., num_pos_feats] as sin(even channels), cos(odd channels) interleaved."""
    phase = position.unsqueeze(-1) / _frequencies(num_pos_feats, temperature, position.device)
    return torch.stack((phase[..., 0::2].sin(), phase[..., 1::2].cos()), dim=-1).flatten(-2)


def _check_config(name: str, num_pos_feats: int, normalize: bool, scale: float | None) -> float:
    if num_pos_feats <= 0 or num_pos_feats % 2 != 0:
        raise ConfigError(f"{name}: num_pos_feats must be a positive even number, got {num_pos_feats}")
    if scale is not None and not normalize:
        raise ConfigError(f"{name}: scale={scale} is only meaningful with normalize=True")
    return DEFAULT_SCALE if scale is None else float(scale)


class _SineEmbedding(nn.Module):
    """Shared settings of the sine encodings (channels per axis, temperature, normalisation)."""

    def __init__(self, num_pos_feats: int, temperature: float, normalize: bool, scale: float | None) -> None:
        super().__init__()
        self.scale = _check_config(type(self).__name__, num_pos_feats, normalize, scale)
        self.num_pos_feats, self.temperature, self.normalize = num_pos_feats, float(temperature), normalize


class PositionEmbeddingSine2D(_SineEmbedding):
    """Padding-aware 2-D sine encoding: mask [N, H, W] (True = pad) -> [N, 2*num_pos_feats, H, W]."""

    def __init__(
        self,
        num_pos_feats: int = DEFAULT_NUM_POS_FEATS_2D,
        temperature: float = DEFAULT_TEMPERATURE,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__(num_pos_feats, temperature, normalize, scale)

    def forward(self, mask: Tensor) -> Tensor:
        if mask.dim() != 3 or mask.dtype != torch.bool:
            raise ValueError(
                f"PositionEmbeddingSine2D: mask must be a bool [N, H, W] tensor, got {mask.dtype} {tuple(mask.shape)}"
            )
        valid = ~mask
        y = valid.cumsum(1, dtype=torch.float32)
        x = valid.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y = (y - PIXEL_CENTRE_SHIFT) / (y[:, -1:, :] + NORMALIZE_EPS) * self.scale
            x = (x - PIXEL_CENTRE_SHIFT) / (x[:, :, -1:] + NORMALIZE_EPS) * self.scale
        pos_y = _interleaved_sin_cos(y, self.num_pos_feats, self.temperature)
        pos_x = _interleaved_sin_cos(x, self.num_pos_feats, self.temperature)
        return torch.cat((pos_y, pos_x), dim=-1).permute(0, 3, 1, 2).contiguous()


class PositionEmbeddingSine1D(_SineEmbedding):
    """Padding-aware 1-D sine encoding: mask [B, L] (True = pad) -> [B, L, num_pos_feats] (batch first).

    The official code returns [B, C, L] and its caller permutes to [L, B, C]; here the caller permutes
    as its attention layout needs.
    """

    def __init__(
        self,
        num_pos_feats: int = DEFAULT_NUM_POS_FEATS_1D,
        temperature: float = DEFAULT_TEMPERATURE,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__(num_pos_feats, temperature, normalize, scale)

    def forward(self, mask: Tensor) -> Tensor:
        if mask.dim() != 2 or mask.dtype != torch.bool:
            raise ValueError(
                f"PositionEmbeddingSine1D: mask must be a bool [B, L] tensor, got {mask.dtype} {tuple(mask.shape)}"
            )
        position = (~mask).cumsum(1, dtype=torch.float32)
        if self.normalize:
            position = position / (position[:, -1:] + NORMALIZE_EPS) * self.scale
        return _interleaved_sin_cos(position, self.num_pos_feats, self.temperature)
