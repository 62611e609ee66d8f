"""Video-specific noise (spec 2.6) and the forward-diffusion step (Table B)."""
from __future__ import annotations

import torch
from torch import nn

from vdit.models import precision


class VideoNoise(nn.Module):
    """Predicts a per-video noise from the clean latents: conv 3x3 -> per-pixel channel MLP -> sigmoid,
    then one global standardisation over the whole tensor (unbiased std, as the official code; this makes
    the noise of a clip depend on the other clips of the batch: at eval B = 1)."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.eps = eps
        self.noise_pred = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.noise_fc = nn.Sequential(
            nn.Linear(channels, channels, bias=False),
            nn.ReLU(),
            nn.Linear(channels, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B,C,T,h,w] -> standardised noise of the same shape.

        Runs in the parameters' dtype (fp32) with autocast off: the sigmoid outputs of a whole clip can
        sit within a few bf16 steps of each other, and the standardisation would then turn rounding into
        the noise (measured at full width with random weights: the bf16 levels moved by ~16% instead of
        ~1.5%). The module has 180 parameters; fp32 costs nothing."""
        with precision.autocast_off(latents.device.type):
            return self._forward(latents.to(self.noise_pred.weight.dtype))

    def _forward(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = latents.shape
        x = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = self.noise_pred(x)
        x = self.noise_fc(x.permute(0, 2, 3, 1))  # channels last: the MLP mixes channels per pixel
        x = x.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        return (x - x.mean()) / (x.std() + self.eps)


def step_to_timestep(step: int) -> int:
    """Table B's "step k" is the k-th forward-diffusion step: diffusers timestep k-1 (step 1 -> t=0)."""
    return step - 1


def add_noise(latents: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor, timestep: int) -> torch.Tensor:
    """q(z_t | z_0): sqrt(abar_t) z + sqrt(1 - abar_t) eps (what DDPMScheduler.add_noise computes)."""
    abar = alphas_cumprod[timestep].to(latents.dtype)
    return abar.sqrt() * latents + (1 - abar).sqrt() * noise


def make_noise(kind: str, latents: torch.Tensor, module: VideoNoise | None, generator: torch.Generator | None = None) -> torch.Tensor | None:
    """The noise added to the latents for `noise.kind` (None = no noise at all)."""
    if kind == "predicted":
        assert module is not None
        return module(latents)
    if kind == "gaussian":
        return torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    if kind == "none":
        return None
    raise ValueError(f"unknown noise kind {kind!r}")
