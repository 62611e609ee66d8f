"""Sampling clips from a text-to-video folder (ModelScope layout) and writing them as an image grid.

`load_t2v(folder)` reads unet/, vae/, text_encoder/, tokenizer/ with the stock classes and the scheduler
config into the stock `DDIMScheduler`; `sample_clips` runs deterministic DDIM (eta = 0) with
classifier-free guidance against the empty prompt, then decodes every frame with the VAE;
`save_grid` writes rows = prompts, columns = frames, each row under its prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from vdit.errors import ConfigError
from vdit.mini.pretrain import EMPTY_PROMPT, PIXEL_MAX, encode_prompts
from vdit.models.foundation import quiet_libraries

DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 4.0
DEFAULT_FRAMES = 8
GRID_SCALE = 2  # frames are tiny; nearest-neighbour upscaling keeps their pixels honest
LABEL_HEIGHT = 14
GAP = 2
LABEL_COLOUR = (20, 20, 20)
BACKGROUND = (255, 255, 255)


@dataclass
class T2VModels:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any


def load_t2v(folder: str | Path) -> T2VModels:
    """The text-to-video models of a diffusers folder (unet, vae, text_encoder, tokenizer, scheduler)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = str(Path(folder).expanduser())
    with quiet_libraries():
        return T2VModels(
            unet=UNet3DConditionModel.from_pretrained(folder, subfolder="unet").eval(),
            vae=AutoencoderKL.from_pretrained(folder, subfolder="vae").eval(),
            text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval(),
            tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
            scheduler=DDIMScheduler.from_pretrained(folder, subfolder="scheduler"),
        )


@torch.no_grad()
def sample_clips(models: T2VModels, prompts: Sequence[str], *, num_frames: int = DEFAULT_FRAMES,
                 height: int = 64, width: int = 64, steps: int = DEFAULT_STEPS,
                 guidance_scale: float = DEFAULT_GUIDANCE, seed: int = 0) -> torch.Tensor:
    """uint8 [P, T, H, W, 3]: one clip per prompt (DDIM, eta = 0, classifier-free guidance)."""
    if not prompts:
        raise ConfigError("sample_clips needs at least one prompt")
    factor = 2 ** (len(models.vae.config.block_out_channels) - 1)
    if height % factor or width % factor:
        raise ConfigError(f"height and width must be multiples of {factor}, got {height}x{width}")
    cond = encode_prompts(models.text_encoder, models.tokenizer, list(prompts))
    uncond = encode_prompts(models.text_encoder, models.tokenizer, [EMPTY_PROMPT]).expand_as(cond)
    g = torch.Generator().manual_seed(seed)
    shape = (len(prompts), models.unet.config.in_channels, num_frames, height // factor, width // factor)
    latents = torch.randn(shape, generator=g) * models.scheduler.init_noise_sigma
    sched = models.scheduler
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        inp = sched.scale_model_input(torch.cat([latents, latents]), t)
        eps = models.unet(inp, t, encoder_hidden_states=torch.cat([uncond, cond])).sample
        eps_u, eps_c = eps.chunk(2)
        eps = eps_u + guidance_scale * (eps_c - eps_u)
        latents = sched.step(eps, t, latents).prev_sample
    z = latents.permute(0, 2, 1, 3, 4).flatten(0, 1) / models.vae.config.scaling_factor
    frames = torch.cat([models.vae.decode(chunk).sample for chunk in z.split(num_frames)])
    frames = ((frames.clamp(-1, 1) + 1) / 2 * PIXEL_MAX).round().to(torch.uint8)
    return frames.permute(0, 2, 3, 1).reshape(len(prompts), num_frames, height, width, 3)


def grid_image(clips: torch.Tensor | np.ndarray, prompts: Sequence[str], scale: int = GRID_SCALE) -> Image.Image:
    """Rows = clips (each under its prompt), columns = frames."""
    clips = np.asarray(clips)
    if clips.ndim != 5 or clips.shape[-1] != 3 or len(clips) != len(prompts):
        raise ConfigError(f"grid_image: expected [P,T,H,W,3] clips for {len(prompts)} prompts, got {clips.shape}")
    p, t, h, w, _ = clips.shape
    fh, fw = h * scale, w * scale
    row_h = LABEL_HEIGHT + fh + GAP
    canvas = Image.new("RGB", (t * (fw + GAP) - GAP, p * row_h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for r in range(p):
        top = r * row_h
        draw.text((2, top + 1), prompts[r], fill=LABEL_COLOUR)
        for c in range(t):
            frame = Image.fromarray(clips[r, c]).resize((fw, fh), Image.NEAREST)
            canvas.paste(frame, (c * (fw + GAP), top + LABEL_HEIGHT))
    return canvas


def save_grid(clips: torch.Tensor | np.ndarray, prompts: Sequence[str], path: str | Path,
              scale: int = GRID_SCALE) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_image(clips, prompts, scale).save(path)
    return path
