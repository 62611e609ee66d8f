"""The VD-IT video backbone (spec 2): a frozen text-to-video diffusion model read as a feature extractor.

frames (ImageNet-normalised) -> [0,1] and [-1,1]
  -> CLIP vision tokens (frozen) -> text-guided image projection (trainable) -> per-frame prompts
  -> VAE encoder (frozen): tap B (s4) and latents
  -> video-specific noise (trainable), forward diffusion to timestep `noise.step - 1`
  -> UNet (frozen weights, gradients flow through it) -> taps U0..U5
  -> four levels [tapB, cat(U0,U5), cat(U1,U4), cat(U2,U3)] -> 1x1 projections (trainable)

The text-independent part (CLIP image tokens, VAE tap and latent distribution) is available separately
(`encode_visual`) so inference can compute it once per video and reuse it for every sentence.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vdit.config import BackboneConfig
from vdit.errors import InputError
from vdit.models.backbone.clip_image import clip_preprocess_fast, clip_preprocess_official
from vdit.models.backbone.noise import VideoNoise, add_noise, make_noise, step_to_timestep
from vdit.models.backbone.text_guided_projection import TextGuidedProjection
from vdit.models.backbone.unet_features import unet_taps
from vdit.models.ops.cpu_kernels import cpu_inference_kernels
from vdit.models.foundation import Foundation
from vdit.models.inputs import IMAGENET_MEAN, IMAGENET_STD
from vdit.models import precision
from vdit.models.text_cache import TextFeatureCache, autocast_key, usable

VAE_TAP_BLOCK, VAE_TAP_RESNET = 2, 1  # tap B: encoder.down_blocks[2].resnets[1], before the downsampler
VAE_DOWNSCALE = 8
UNET_DOWNSCALE = 8  # three stride-2 down blocks after the VAE: latent s8 -> s64
MIN_SIDE = VAE_DOWNSCALE * UNET_DOWNSCALE  # smallest H, W with a non-empty stride-64 map


@dataclass
class VisualFeatures:
    """Text-independent backbone work for a clip (computed without gradients)."""

    clip_tokens: torch.Tensor | None  # [BT, N_img, D_vis] (None for VD-T)
    vae_tap: torch.Tensor  # [BT, C, H/4, W/4]
    latent_mean: torch.Tensor  # [B, C, T, H/8, W/8], scaled
    latent_std: torch.Tensor  # same shape, scaled
    batch: int
    frames: int


class DiffusionBackbone(nn.Module):
    def __init__(self, cfg: BackboneConfig, foundation: Foundation):
        super().__init__()
        self.cfg = cfg
        self.unet = foundation.unet
        self.vae = foundation.vae
        self.t2v_text_encoder = foundation.t2v_text_encoder
        self.clip_vision = foundation.clip_vision if cfg.prompt.mode != "text" else None
        self.tokenizer = foundation.t2v_tokenizer
        self.clip_image = foundation.clip_image
        self.vae_scaling_factor = foundation.vae_scaling_factor
        self.register_buffer("alphas_cumprod", foundation.alphas_cumprod.clone(), persistent=False)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)
        for module in self.frozen_modules():
            module.requires_grad_(False)
            module.eval()

        unet_cfg = self.unet.config
        prompt_dim = int(unet_cfg.cross_attention_dim)
        vis_dim = int(foundation.clip_vision.config.hidden_size)
        self.prompt = TextGuidedProjection(vis_dim, prompt_dim, cfg.prompt)
        latent_ch = int(self.vae.config.latent_channels)
        self.noise = VideoNoise(latent_ch, cfg.noise.std_eps) if cfg.noise.kind == "predicted" else None
        self.timestep = step_to_timestep(cfg.noise.step)
        if not 0 <= self.timestep < len(self.alphas_cumprod):
            raise InputError(f"noise.step={cfg.noise.step} is outside the {len(self.alphas_cumprod)}-step schedule")

        c = list(unet_cfg.block_out_channels)
        vae_tap_ch = int(self.vae.config.block_out_channels[VAE_TAP_BLOCK])
        # U0,U1: c0; U2: c1; U3,U4,U5 (up blocks 0,1,2): c3, c2, c1
        self.level_in_channels = (vae_tap_ch, c[0] + c[1], c[0] + c[2], c[1] + c[3])
        self.level_projections = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, hid, kernel_size=1), nn.Conv2d(hid, cout, kernel_size=1))
            for cin, hid, cout in zip(self.level_in_channels, cfg.level_hidden_channels, cfg.level_channels)
        )
        self._warned_truncation = False
        # Per-sentence T2V text tokens of the frozen tower (None = off; the trainer sets one,
        # `train.text_cache`; used only while the tower is in eval mode, see vdit.models.text_cache).
        self.prompt_cache: TextFeatureCache | None = None

    # ------------------------------------------------------------------ frozen parts

    def frozen_modules(self) -> list[nn.Module]:
        mods = [self.unet, self.vae, self.t2v_text_encoder]
        if self.clip_vision is not None:
            mods.append(self.clip_vision)
        return mods

    def train(self, mode: bool = True) -> "DiffusionBackbone":
        super().train(mode)
        # Frozen modules stay in eval mode (no dropout) unless the official side effect is requested.
        for module in self.frozen_modules():
            module.train(mode and self.cfg.official_frozen_dropout)
        return self

    # ------------------------------------------------------------------ pieces

    @torch.no_grad()
    def encode_prompt_text(self, texts: list[str]) -> torch.Tensor:
        """T2V text encoder tokens [B, 77, D] (last hidden state after the final LayerNorm); from
        `prompt_cache` when one is set and usable (each sentence encoded alone, then kept)."""
        if usable(self.prompt_cache, self.t2v_text_encoder):
            device = self.pixel_mean.device
            entries = self.prompt_cache.get_or_compute(  # type: ignore[union-attr]
                texts, lambda text: (self._encode_prompt_batch([text])[0],), device, (autocast_key(device.type),))
            return torch.stack([e[0] for e in entries])
        return self._encode_prompt_batch(texts)

    def _encode_prompt_batch(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer
        max_len = int(tok.model_max_length)
        lengths = [len(ids) for ids in tok(texts, truncation=False)["input_ids"]]
        if any(n > max_len for n in lengths) and not self._warned_truncation:
            warnings.warn(f"a text is longer than the T2V tokenizer's {max_len} tokens; it is truncated", stacklevel=3)
            self._warned_truncation = True
        ids = tok(texts, padding="max_length", max_length=max_len, truncation=True, return_tensors="pt").input_ids
        ids = ids.to(self.pixel_mean.device)
        with self._native(self.t2v_text_encoder):
            return self.t2v_text_encoder(ids)[0]

    @torch.no_grad()
    def encode_visual(self, frames: torch.Tensor, sample_latent: bool | None = None) -> VisualFeatures:
        """frames [B,T,3,H,W] ImageNet-normalised -> the text-independent features."""
        with cpu_inference_kernels(frames.device, self):
            return self._encode_visual(frames)

    def _encode_visual(self, frames: torch.Tensor) -> VisualFeatures:
        b, t = frames.shape[:2]
        x01 = (frames.flatten(0, 1) * self.pixel_std + self.pixel_mean).clamp(0, 1)
        x = 2 * x01 - 1
        clip_tokens = None
        if self.clip_vision is not None:
            pixels = self.clip_pixels(x01, x).to(self._dtype(self.clip_vision))
            with self._native(self.clip_vision):
                clip_tokens = self.clip_vision(pixel_values=pixels).last_hidden_state
        captured: list[torch.Tensor] = []
        tap = self.vae.encoder.down_blocks[VAE_TAP_BLOCK].resnets[VAE_TAP_RESNET]
        handle = tap.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            with self._native(self.vae):
                dist = self.vae.encode(x.to(self._dtype(self.vae))).latent_dist
        finally:
            handle.remove()
        s = self.vae_scaling_factor

        def to_video(z: torch.Tensor) -> torch.Tensor:  # [BT,C,h,w] -> [B,C,T,h,w]
            return z.reshape(b, t, *z.shape[1:]).permute(0, 2, 1, 3, 4)

        return VisualFeatures(
            clip_tokens=clip_tokens,
            vae_tap=captured[0],
            latent_mean=to_video(dist.mean * s),
            latent_std=to_video(dist.std * s),
            batch=b,
            frames=t,
        )

    def clip_pixels(self, x01: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """CLIP pixel_values of frames given in [0,1] (`x01`) and in the diffusion range (`x = 2*x01 - 1`),
        by `backbone.clip_preprocess`: "official" starts, as VD-IT does, from the [-1,1] frames (spec 2.1
        step 3, 2.3); "fast" resizes `x01` on the device."""
        if self.cfg.clip_preprocess == "fast":
            return clip_preprocess_fast(x01, self.clip_image)
        return clip_preprocess_official(x, self.clip_image)

    def _sample_latent(self, vis: VisualFeatures) -> torch.Tensor:
        mode = self.cfg.vae_latent
        sample = mode == "sample" or (mode == "sample_train_mean_eval" and self.training)
        if sample:
            return vis.latent_mean + vis.latent_std * torch.randn_like(vis.latent_std)
        return vis.latent_mean

    @staticmethod
    def _dtype(module: nn.Module) -> torch.dtype:
        return next(module.parameters()).dtype

    def _native(self, module: nn.Module):
        """Run a frozen module in its weights' own precision. With bf16/fp16 weights, autocast is switched
        off around it: its inputs are already cast to that dtype, and autocast would otherwise upcast every
        GroupNorm/LayerNorm/softmax to fp32 and cast back before the next convolution, i.e. two extra
        passes over each activation (measured on an H200: 1/4 of the UNet's time). The norms' statistics
        still accumulate in fp32 inside the kernels. fp32 weights keep whatever autocast the caller set."""
        dtype = self._dtype(module)
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return precision.autocast_off(self.pixel_mean.device.type)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        frames: torch.Tensor | None,
        texts: list[str],
        visual: VisualFeatures | None = None,
        prompt_text: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """frames [B,T,3,H,W] (or precomputed `visual`), one text per clip -> 4 levels [B*T, C_l, h_l, w_l]."""
        if visual is None:
            visual = self.encode_visual(frames)
        t = visual.frames
        if prompt_text is None:
            prompt_text = self.encode_prompt_text(texts)
        unet_dtype = self._dtype(self.unet)
        text = prompt_text.repeat_interleave(t, dim=0)  # per-frame prompts, batch-major (b0f0, b0f1, ...)
        image = visual.clip_tokens
        prompt = self.prompt(text.to(self._param_dtype()), None if image is None else image.to(self._param_dtype()))

        # The latents come in the VAE's dtype; the trainable noise module (and the forward diffusion)
        # work in the trainable parameters' dtype, so bf16 frozen weights can sit beside an fp32 head.
        z = self._sample_latent(visual).to(self._param_dtype())
        noise = make_noise(self.cfg.noise.kind, z, self.noise)
        z_noisy = z if noise is None else add_noise(z, noise, self.alphas_cumprod, self.timestep)
        with self._native(self.unet):
            taps = unet_taps(self.unet, z_noisy.to(unet_dtype), self.timestep, prompt.to(unet_dtype),
                             grad_ckpt=self.cfg.grad_ckpt)
        u0, u1, u2, u3, u4, u5 = taps
        pairs = [(u0, u5), (u1, u4), (u2, u3)]
        for i, (a, c) in enumerate(pairs):
            if a.shape[-2:] != c.shape[-2:]:  # the official code silently cropped; this must not happen
                raise RuntimeError(f"UNet taps of level {i + 1} disagree in size: {tuple(a.shape)} vs {tuple(c.shape)}")
        sources = [visual.vae_tap] + [torch.cat(p, dim=1) for p in pairs]
        dtype = self._param_dtype()
        return [proj(src.to(dtype)) for proj, src in zip(self.level_projections, sources)]

    def _param_dtype(self) -> torch.dtype:
        return self.level_projections[0][0].weight.dtype

    def unet_blocks(self) -> list[nn.Module]:
        """The UNet blocks VD-IT runs (the tail, up_blocks[3:] / conv_norm_out / conv_out, never runs)."""
        blocks = [self.unet.transformer_in, *self.unet.down_blocks]
        if self.unet.mid_block is not None:
            blocks.append(self.unet.mid_block)
        return blocks + list(self.unet.up_blocks[:3])

    def compile_unet(self, **compile_kwargs) -> None:
        """Optional fast path (off unless called): `torch.compile` every UNet block VD-IT runs, in place
        (`nn.Module.compile`), so parameter names, state dicts and checkpoints are unchanged. Blocks are
        compiled one by one (not the whole backbone) because the taps and the per-frame prompt plumbing
        between them are plain Python; `compile_kwargs` go to `torch.compile` (e.g. mode, backend).
        The first call per input shape pays the compilation."""
        for block in self.unet_blocks():
            block.compile(**compile_kwargs)

    def compile_vae_encoder(self, **compile_kwargs) -> None:
        """Optional fast path (off unless called): `torch.compile` of the VAE encoder in place (names
        unchanged). At full resolution its GroupNorm/SiLU passes over 128-channel maps are memory-bound and
        inductor fuses them into the neighbouring kernels: on an H200 (20 frames 368x640, bf16) the
        inference call went 524 -> 448 ms, after 14 s of compilation per new input shape (2026-12-04)."""
        self.vae.encoder.compile(**compile_kwargs)


def level_masks(pad_mask: torch.Tensor, features: list[torch.Tensor]) -> list[torch.Tensor]:
    """pad_mask [N,H,W] (True = padding) nearest-resized to each level's size."""
    m = pad_mask[:, None].float()
    return [F.interpolate(m, size=f.shape[-2:], mode="nearest")[:, 0].bool() for f in features]
