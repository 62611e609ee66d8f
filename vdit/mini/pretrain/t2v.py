"""Stage 3: a UNet3DConditionModel trained as a text-to-video diffusion model: epsilon prediction under
ModelScope's DDPM schedule, on the frozen VAE's latents of 2-8-frame clips, conditioned on the frozen CLIP
text tower's last hidden state over the full padded 77 tokens (exactly what VD-IT feeds it), with caption
dropout for classifier-free guidance. The saved weights are an exponential moving average."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vdit.mini.data import CaptionCorpus
from vdit.mini.pretrain.common import (
    ENCODE_BATCH, LogFn, StageConfig, StageRecorder, adamw_with_schedule, frames_to_unit, optimizer_step,
    stage_generator,
)
from vdit.models.foundation_arch import SCHEDULER, arch

# T2V: caption mix and clip lengths.
T2V_UNCOND_PROB = 0.1  # empty caption (classifier-free guidance)
T2V_SCENE_PROB = 0.4  # scene caption with motion; the rest: one referring expression
T2V_MIN_FRAMES, T2V_MAX_FRAMES = 2, 8  # VD-IT runs 1-8-frame clips; generation uses 8
EMA_DECAY = 0.999
EMA_WARMUP = 10  # decay ramps as (1 + step) / (EMA_WARMUP + step)
EVAL_TIMESTEPS = (25, 250, 500, 750)
EVAL_CLIPS = 16
EVAL_FRAMES = 8
EVAL_POINTS = 5  # evaluations over a run (start and end included)
EMPTY_PROMPT = ""


def build_unet(arch_name: str = "mini"):
    from diffusers import UNet3DConditionModel

    return UNet3DConditionModel(**arch(arch_name)["unet"])


@torch.no_grad()
def encode_latent_stats(vae: Any, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N,T,H,W,3] -> posterior mean and std [N,T,C,h,w] (unscaled)."""
    n, t = frames.shape[:2]
    flat = frames.flatten(0, 1)
    means, stds = [], []
    for chunk in torch.arange(len(flat)).split(ENCODE_BATCH):
        dist = vae.encode(frames_to_unit(flat[chunk]) * 2 - 1).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    mean, std = torch.cat(means), torch.cat(stds)
    return mean.reshape(n, t, *mean.shape[1:]), std.reshape(n, t, *std.shape[1:])


@torch.no_grad()
def encode_prompts(text_encoder: Any, tokenizer: Any, texts: list[str]) -> torch.Tensor:
    """[K, 77, D]: last hidden state over the full max-length padding, as ModelScope and VD-IT use it."""
    out = []
    for i in range(0, len(texts), ENCODE_BATCH):
        ids = tokenizer(texts[i:i + ENCODE_BATCH], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        out.append(text_encoder(ids)[0])
    return torch.cat(out)


class _Ema:
    """Exponential moving average of a model's floating-point state (the weights that get saved)."""

    def __init__(self, model: nn.Module):
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(EMA_DECAY, (1 + step) / (EMA_WARMUP + step))
        for ema, cur in zip(self.model.state_dict().values(), model.state_dict().values()):
            if ema.dtype.is_floating_point:
                ema.mul_(decay).add_(cur.detach(), alpha=1 - decay)


@dataclass
class _T2VEval:
    """A fixed denoising test on clips the UNet never trains on: same latents, noise and timesteps
    every time, with the clip's own scene caption, an empty caption and another clip's caption."""

    latents: torch.Tensor  # [E, C, T, h, w], scaled
    noise: torch.Tensor  # [len(EVAL_TIMESTEPS), E, C, T, h, w]
    prompts: dict[str, torch.Tensor]  # condition -> [E, 77, D]

    @torch.no_grad()
    def run(self, unet: Any, scheduler: Any) -> dict[str, float]:
        out = {}
        for name, emb in self.prompts.items():
            per_t = {}
            for k, t in enumerate(EVAL_TIMESTEPS):
                ts = torch.full((len(self.latents),), t, dtype=torch.long)
                noisy = scheduler.add_noise(self.latents, self.noise[k], ts)
                pred = unet(noisy, ts, encoder_hidden_states=emb).sample
                per_t[f"eval_{name}_t{t}"] = round(F.mse_loss(pred, self.noise[k]).item(), 6)
            out[f"eval_{name}"] = round(sum(per_t.values()) / len(per_t), 6)
            out.update(per_t)
        return out


def _build_t2v_eval(corpus: CaptionCorpus, vae: Any, text_encoder: Any, tokenizer: Any, scale: float,
                    seed: int) -> _T2VEval:
    count = min(EVAL_CLIPS, len(corpus))
    frames = corpus.frames[:count, :min(EVAL_FRAMES, corpus.frames.shape[1])]
    mean, _ = encode_latent_stats(vae, frames)
    latents = (mean * scale).permute(0, 2, 1, 3, 4).contiguous()
    g = stage_generator(seed, "t2v-eval")
    noise = torch.randn((len(EVAL_TIMESTEPS), *latents.shape), generator=g)
    captions = corpus.scene_captions[:count]
    own = encode_prompts(text_encoder, tokenizer, captions)
    prompts = {
        "caption": own,
        "empty": encode_prompts(text_encoder, tokenizer, [EMPTY_PROMPT]).expand(count, -1, -1),
        "other_caption": own.roll(1, dims=0),
    }
    return _T2VEval(latents, noise, prompts)


def train_t2v_unet(corpus: CaptionCorpus, vae: Any, text_encoder: Any, tokenizer: Any, cfg: StageConfig, *,
                   arch_name: str = "mini", seed: int = 0, eval_corpus: CaptionCorpus | None = None,
                   log: LogFn | None = None, progress: bool = True):
    """Text-to-video diffusion training (epsilon prediction, DDPM schedule) of a UNet3DConditionModel on
    the frozen VAE's latents; returns the EMA weights in eval mode."""
    from diffusers import DDPMScheduler

    scale = float(vae.config.scaling_factor)
    mean, std = encode_latent_stats(vae, corpus.frames)
    texts = sorted({t for exps in corpus.expressions for t in exps} | set(corpus.scene_captions) | {EMPTY_PROMPT})
    text_index = {t: i for i, t in enumerate(texts)}
    prompt_table = encode_prompts(text_encoder, tokenizer, texts)
    scheduler = DDPMScheduler(**SCHEDULER)
    evaluator = (_build_t2v_eval(eval_corpus, vae, text_encoder, tokenizer, scale, seed)
                 if eval_corpus is not None else None)

    torch.manual_seed(seed)
    unet = build_unet(arch_name)
    unet.train()
    ema = _Ema(unet)
    opt, sched = adamw_with_schedule(unet, cfg)
    g = stage_generator(seed, "t2v")
    rec = StageRecorder("t2v", cfg.steps, log, progress)
    n, num_frames = corpus.frames.shape[:2]
    max_t = min(T2V_MAX_FRAMES, num_frames)
    eval_at = {round(i * cfg.steps / (EVAL_POINTS - 1)) for i in range(EVAL_POINTS)} if evaluator else set()
    final: dict[str, float] = {}
    if 0 in eval_at:
        final = evaluator.run(ema.model, scheduler)
        rec.emit({"step": 0, **final})
    for step in range(cfg.steps):
        t_len = int(torch.randint(min(T2V_MIN_FRAMES, max_t), max_t + 1, (1,), generator=g))
        b = max(1, cfg.batch_size // t_len)
        vid = torch.randint(0, n, (b,), generator=g)
        start = torch.randint(0, num_frames - t_len + 1, (b,), generator=g)
        idx = start[:, None] + torch.arange(t_len)[None]
        mu, sigma = mean[vid[:, None], idx], std[vid[:, None], idx]  # [b, T, C, h, w]
        z = (mu + sigma * torch.randn(mu.shape, generator=g)) * scale
        z = z.permute(0, 2, 1, 3, 4)
        u = torch.rand(b, generator=g)
        picks = []
        for i, v in enumerate(vid.tolist()):
            exps = corpus.expressions[v]
            if u[i] < T2V_UNCOND_PROB:
                picks.append(EMPTY_PROMPT)
            elif u[i] < T2V_UNCOND_PROB + T2V_SCENE_PROB or not exps:
                picks.append(corpus.scene_captions[v])
            else:
                picks.append(exps[int(torch.randint(0, len(exps), (1,), generator=g))])
        emb = prompt_table[[text_index[p] for p in picks]]
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=g)
        noise = torch.randn(z.shape, generator=g)
        noisy = scheduler.add_noise(z, noise, timesteps)
        pred = unet(noisy, timesteps, encoder_hidden_states=emb).sample
        loss = F.mse_loss(pred, noise)
        optimizer_step(loss, unet, opt, sched, cfg)
        ema.update(unet, step)
        rec.update(step, loss=loss.item())
        if step + 1 in eval_at:
            final = evaluator.run(ema.model, scheduler)
            rec.emit({"step": step + 1, **final})
    rec.emit({"event": "done", "loop_s": round(rec.close(), 1), **rec.last, **final})
    return ema.model
