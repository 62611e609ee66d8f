"""Stage 2: an AutoencoderKL trained on single frames (chroma-weighted MSE reconstruction + a small KL
term); its `scaling_factor` is then measured so that scaled latents have unit standard deviation."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from vdit.mini.data import CaptionCorpus
from vdit.mini.pretrain.common import (
    ENCODE_BATCH, LogFn, StageConfig, StageRecorder, adamw_with_schedule, frames_to_unit, optimizer_step,
    stage_generator,
)
from vdit.models.foundation_arch import arch

# VAE: mean squared error, which penalises a wrongly coloured object more than L1 does relative to the
# background's pixel noise (unreproducible at this size either way), + the per-element KL at a small
# weight (the latents only need to stay tame; their scale is then fixed by the measured scaling factor).
VAE_KL_WEIGHT = 1e-6
# Each pixel's squared error is weighted by 1 + VAE_CHROMA_WEIGHT * chroma (max - min of its RGB on the
# [0, 1] scale), normalised by the batch's mean weight. The benchmark's backgrounds are low-saturation
# textures (chroma <~ 0.12) and its objects saturated colours (0.6-0.8), so the weight moves the
# reconstruction's capacity from background texture to objects: with plain MSE the latent merged blue and
# cyan objects (a linear probe told them apart in 56 % of valid objects, 73 % with this weight; the UNet's
# finest tap 60 -> 95 %; docs/miniature.md, "Where blue is lost"). It needs no labels: chroma is read off
# the input frame.
VAE_CHROMA_WEIGHT = 30.0
VAE_INIT_LOGVAR = -6.0  # posterior std ~0.05 at the start of training
SCALING_SAMPLE_FRAMES = 1024  # frames encoded to measure the latent standard deviation
SCALING_DIGITS = 5
EVAL_VAE_FRAMES = 64


def build_vae(arch_name: str = "mini"):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**arch(arch_name)["vae"])


@torch.no_grad()
def init_posterior_logvar(vae: Any, logvar: float) -> None:
    """Start the posterior narrow: at the default init its std is ~1, so the decoder first sees latents
    drowned in sampling noise and learns nothing but the mean colour for hundreds of steps."""
    half = vae.quant_conv.out_channels // 2
    vae.quant_conv.bias[half:] = logvar


def chroma_weighted_mse(rec: torch.Tensor, x: torch.Tensor, weight: float = VAE_CHROMA_WEIGHT) -> torch.Tensor:
    """sum_i w_i (rec_i - x_i)^2 / sum_i w_i over every element, w = 1 + weight * chroma(x) per pixel
    (shared by its three channels); x, rec [N, 3, H, W] in [-1, 1]. weight 0 is the plain MSE."""
    chroma = (x.amax(1, keepdim=True) - x.amin(1, keepdim=True)) / 2  # [-1, 1] range -> [0, 1] scale
    w = 1 + weight * chroma
    return (w * (rec - x) ** 2).mean() / w.mean()


def _vae_batch(corpus: CaptionCorpus, batch: int, g: torch.Generator) -> torch.Tensor:
    """[batch, 3, H, W] in [-1, 1]: random frames, randomly mirrored."""
    n, t = corpus.frames.shape[:2]
    vid = torch.randint(0, n, (batch,), generator=g)
    idx = torch.randint(0, t, (batch,), generator=g)
    x = frames_to_unit(corpus.frames[vid, idx]) * 2 - 1
    flip = torch.rand(batch, generator=g) < 0.5  # no text here: mirroring is a free augmentation
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@torch.no_grad()
def measure_scaling_factor(vae: Any, corpus: CaptionCorpus, seed: int = 0) -> float:
    """1 / std of sampled latents over up to SCALING_SAMPLE_FRAMES frames (Stable Diffusion's rule)."""
    frames = corpus.frames.flatten(0, 1)
    g = stage_generator(seed, "scaling")
    pick = torch.randperm(len(frames), generator=g)[:SCALING_SAMPLE_FRAMES]
    latents = []
    for chunk in pick.split(ENCODE_BATCH):
        dist = vae.encode(frames_to_unit(frames[chunk]) * 2 - 1).latent_dist
        latents.append(dist.sample(generator=g))
    std = torch.cat(latents).std().item()
    return float(f"{1.0 / std:.{SCALING_DIGITS}g}")


@torch.no_grad()
def reconstruction_psnr(vae: Any, corpus: CaptionCorpus, count: int = EVAL_VAE_FRAMES) -> float:
    """PSNR (dB, [0,1] scale) of posterior-mean reconstructions of the first `count` frames (one per video
    first, then the next frame of each video...)."""
    frames = corpus.frames.transpose(0, 1).flatten(0, 1)[:count]
    x = frames_to_unit(frames) * 2 - 1
    rec = torch.cat([vae.decode(vae.encode(c).latent_dist.mean).sample for c in x.split(ENCODE_BATCH)])
    return 10 * math.log10(4.0 / max(F.mse_loss(rec.clamp(-1, 1), x).item(), 1e-12))


def train_vae(corpus: CaptionCorpus, cfg: StageConfig, *, arch_name: str = "mini", seed: int = 0,
              eval_corpus: CaptionCorpus | None = None, log: LogFn | None = None, progress: bool = True):
    """Chroma-weighted MSE + KL training of an AutoencoderKL on single frames; sets config.scaling_factor;
    eval mode.
    With `eval_corpus`, the final record holds the reconstruction PSNR of unseen frames."""
    torch.manual_seed(seed)
    vae = build_vae(arch_name)
    init_posterior_logvar(vae, VAE_INIT_LOGVAR)
    vae.train()
    opt, sched = adamw_with_schedule(vae, cfg)
    g = stage_generator(seed, "vae")
    rec = StageRecorder("vae", cfg.steps, log, progress)
    for step in range(cfg.steps):
        x = _vae_batch(corpus, cfg.batch_size, g)
        dist = vae.encode(x).latent_dist
        rec_x = vae.decode(dist.sample(generator=g)).sample
        weighted = chroma_weighted_mse(rec_x, x)
        kl = dist.kl().mean() / dist.mean[0].numel()
        loss = weighted + VAE_KL_WEIGHT * kl
        optimizer_step(loss, vae, opt, sched, cfg)
        # PSNR on the [0, 1] scale, from the plain [-1, 1] reconstruction error.
        psnr = 10 * math.log10(4.0 / max(F.mse_loss(rec_x.detach(), x).item(), 1e-12))
        rec.update(step, loss=loss.item(), kl=kl.item(), psnr=psnr)
    vae.eval()
    scale = measure_scaling_factor(vae, corpus, seed)
    vae.register_to_config(scaling_factor=scale)
    final = {"eval_psnr": round(reconstruction_psnr(vae, eval_corpus), 3)} if eval_corpus is not None else {}
    rec.emit({"event": "done", "loop_s": round(rec.close(), 1), "scaling_factor": scale, **rec.last, **final})
    return vae
