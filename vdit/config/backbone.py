"""The diffusion backbone's trainable parts and options: text-guided prompt projection, video noise, level
projections (spec 2)."""
from __future__ import annotations

from dataclasses import dataclass, field

PROMPT_MODES = ("image", "text", "concat", "attn")  # Table A: VD-I, VD-T, VD-IT concat, VD-IT attn
NOISE_KINDS = ("predicted", "gaussian", "none")  # video-specific predicted noise (paper) / N(0,1) / no noise
VAE_LATENT_MODES = ("sample_train_mean_eval", "sample", "mean")
# backbone.clip_preprocess: the official uint8 + PIL CLIPImageProcessor path (spec 2.1 step 3, 2.3) or the
# on-device tensor approximation (torch antialiased bicubic, no integer truncation; docs/model.md).
CLIP_PREPROCESS_MODES = ("official", "fast")


@dataclass
class PromptConfig:
    """Text-guided image projection (spec 2.4, Table A)."""

    mode: str = "attn"
    num_heads: int = 16  # d_k = d_v = 64 at width 1024
    ffn_dim: int = 512  # W1: 1024->512, W2: 512->1024
    layer_norm_eps: float = 1e-6


@dataclass
class NoiseConfig:
    """Video-specific noise (spec 2.6) and the diffusion step of Table B."""

    kind: str = "predicted"
    # Table B "steps": step k <-> diffusers timestep k-1 (step 1 = timestep 0, the official setting).
    step: int = 1
    std_eps: float = 1e-5  # epsilon of the global standardisation of the predicted noise


@dataclass
class BackboneConfig:
    prompt: PromptConfig = field(default_factory=PromptConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    # Level projections (spec 2.8): in = [vae tapB, cat(U0,U5), cat(U1,U4), cat(U2,U3)], two 1x1 convs.
    level_hidden_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    level_channels: tuple[int, ...] = (128, 256, 512, 1024)  # mimic Video-Swin-B
    level_strides: tuple[int, ...] = (4, 8, 16, 32)
    vae_latent: str = "sample_train_mean_eval"
    # CLIP image input (spec 2.1 step 3, 2.3): "official" = truncated uint8 pixels through the stock PIL
    # CLIPImageProcessor (CPU round trip, as VD-IT); "fast" = on-device tensor resize (opt-in, differs by
    # a few /255 per pixel, measured in docs/model.md).
    clip_preprocess: str = "official"
    # Reproduce the official `model.train()` side effect: dropout active in the frozen UNet (and RoBERTa).
    official_frozen_dropout: bool = False
    # Activation checkpointing of the frozen UNet blocks (numerically identical, less memory).
    grad_ckpt: bool = False
