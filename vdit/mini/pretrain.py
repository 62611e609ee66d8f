"""Training the miniature world's foundation models from scratch, one function per model.

- `train_clip`: a CLIPModel (text + vision towers), symmetric contrastive loss between one frame and a
  caption of its video (a referring expression or the motion-free scene caption).
- `train_vae`: an AutoencoderKL, MSE reconstruction + a small KL term on single frames; its
  `scaling_factor` is then measured so that scaled latents have unit standard deviation.
- `train_t2v_unet`: a UNet3DConditionModel as a text-to-video diffusion model: epsilon prediction under the
  DDPM schedule of ModelScope, on VAE latents of 2-8-frame clips, conditioned on the frozen CLIP text
  tower's last hidden state over the full padded 77 tokens (exactly what VD-IT feeds it), with caption
  dropout for classifier-free guidance. The saved weights are an exponential moving average.
- `train_roberta`: RobertaForMaskedLM trained to reconstruct BERT-corrupted captions (the masked-LM
  corruption, with the loss on every token); the base RobertaModel is what VD-IT's head uses.

Every function is deterministic given its seed: the model is initialised after `torch.manual_seed(seed)`
and all data sampling uses a `torch.Generator` seeded from it (same process settings -> same weights).
`plan_for_budget` turns a minute budget into step counts, so a budget always means the same models.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vdit.errors import ConfigError
from vdit.mini.data import CaptionCorpus
from vdit.models.foundation import ClipImageSpec
from vdit.models.foundation_arch import CLIP_MEAN, CLIP_STD, SCHEDULER, arch

LogFn = Callable[[dict[str, Any]], None]

LOG_EVERY = 10  # steps between loss records
MIN_STAGE_STEPS = 2
MIN_LR_FACTOR = 0.1  # cosine decay ends at this fraction of the peak learning rate
ADAM_BETAS = (0.9, 0.999)
PIXEL_MAX = 255.0

# CLIP: share of steps whose caption is the scene caption (else one of the video's expressions).
CLIP_SCENE_PROB = 0.5
# VAE: mean squared error, which penalises a wrongly coloured object more than L1 does relative to the
# background's pixel noise (unreproducible at this size either way), + the per-element KL at a small
# weight (the latents only need to stay tame; their scale is then fixed by the measured scaling factor).
VAE_KL_WEIGHT = 1e-6
VAE_INIT_LOGVAR = -6.0  # posterior std ~0.05 at the start of training
SCALING_SAMPLE_FRAMES = 1024  # frames encoded to measure the latent standard deviation
SCALING_DIGITS = 5
EVAL_VAE_FRAMES = 64
ENCODE_BATCH = 64
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
# RoBERTa masked-language modelling (BERT's recipe).
MLM_PROB = 0.15
MLM_MASK_SHARE, MLM_RANDOM_SHARE = 0.8, 0.1  # of the selected tokens; the rest stay unchanged


@dataclass
class StageConfig:
    """Optimisation of one model: AdamW, linear warm-up then cosine decay, gradient clipping."""

    steps: int
    batch_size: int  # T2V: frames per step (clips = batch_size // clip length)
    lr: float
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0


@dataclass
class PretrainPlan:
    clip: StageConfig = field(default_factory=lambda: StageConfig(steps=500, batch_size=64, lr=1e-3))
    vae: StageConfig = field(default_factory=lambda: StageConfig(steps=1000, batch_size=8, lr=1e-3))
    t2v: StageConfig = field(default_factory=lambda: StageConfig(steps=1750, batch_size=32, lr=1e-3,
                                                                 warmup_steps=50))
    roberta: StageConfig = field(default_factory=lambda: StageConfig(steps=300, batch_size=64, lr=1e-3))


# The default plan is sized for DEFAULT_MINUTES on the reference 2-core machine (docs/miniature.md).
DEFAULT_MINUTES = 20.0


def plan_for_budget(minutes: float = DEFAULT_MINUTES) -> PretrainPlan:
    """The default plan with every stage's step count scaled by minutes / DEFAULT_MINUTES."""
    if not minutes > 0:
        raise ConfigError(f"--minutes-budget must be > 0, got {minutes}")
    base = PretrainPlan()
    scale = minutes / DEFAULT_MINUTES

    def scaled(cfg: StageConfig) -> StageConfig:
        steps = max(MIN_STAGE_STEPS, int(round(cfg.steps * scale)))
        return replace(cfg, steps=steps, warmup_steps=min(cfg.warmup_steps, steps // 4))

    return PretrainPlan(clip=scaled(base.clip), vae=scaled(base.vae), t2v=scaled(base.t2v),
                        roberta=scaled(base.roberta))


# ---------------------------------------------------------------------------------------------------
# shared helpers


def _generator(seed: int, stage: str) -> torch.Generator:
    """A data-sampling generator per (seed, stage), independent of the global RNG."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + sum(ord(c) * 31 ** i for i, c in enumerate(stage)) % 1_000_003)
    return g


def _optimizer(model: nn.Module, cfg: StageConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=ADAM_BETAS, weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return MIN_LR_FACTOR + (1 - MIN_LR_FACTOR) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _step(loss: torch.Tensor, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, cfg: StageConfig) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()


class _Recorder:
    """Progress bar + periodic loss records (running mean since the last record)."""

    def __init__(self, stage: str, total: int, log: LogFn | None, progress: bool):
        self.stage, self.total, self.log = stage, total, log
        self.bar = tqdm(total=total, desc=f"mini {stage}", disable=not progress, dynamic_ncols=True)
        self.sums: dict[str, float] = {}
        self.count = 0
        self.last: dict[str, float] = {}
        self.start = time.perf_counter()

    def update(self, step: int, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1
        self.bar.update(1)
        if (step + 1) % LOG_EVERY == 0 or step + 1 == self.total:
            self.last = {k: v / self.count for k, v in self.sums.items()}
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in self.last.items()})
            self.emit({"step": step + 1, **{k: round(v, 6) for k, v in self.last.items()}})
            self.sums, self.count = {}, 0

    def emit(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log({"stage": self.stage, **record})

    def close(self) -> float:
        self.bar.close()
        return time.perf_counter() - self.start


def frames_to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [0, 1]."""
    return frames.movedim(-1, -3).float() / PIXEL_MAX


def clip_image_spec(arch_name: str) -> ClipImageSpec:
    size = int(arch(arch_name)["clip_vision"]["image_size"])
    return ClipImageSpec(size, size, size, CLIP_MEAN, CLIP_STD)


# ---------------------------------------------------------------------------------------------------
# CLIP


def build_clip(tokenizer: Any, arch_name: str = "mini"):
    """A randomly initialised CLIPModel of `arch_name` whose text tower fits `tokenizer`."""
    from transformers import CLIPConfig, CLIPModel

    a = arch(arch_name)
    text = {k: v for k, v in a["t2v_text"].items() if k != "projection_dim"}
    text.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = {k: v for k, v in a["clip_vision"].items() if k != "projection_dim"}
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision,
                                projection_dim=a["clip_vision"]["projection_dim"]))


def contrastive_loss(logits_per_image: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE where every item whose caption is the same string counts as a positive
    (short captions repeat within a batch: "the small circle")."""
    same = torch.tensor([[a == b for b in texts] for a in texts], dtype=logits_per_image.dtype)
    targets = same / same.sum(dim=1, keepdim=True)
    loss_i = -(targets * F.log_softmax(logits_per_image, dim=1)).sum(dim=1).mean()
    loss_t = -(targets * F.log_softmax(logits_per_image.t(), dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def _clip_batch(corpus: CaptionCorpus, batch: int, g: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    n, t = corpus.frames.shape[:2]
    videos = torch.randperm(n, generator=g)[: min(batch, n)]
    frame_idx = torch.randint(0, t, (len(videos),), generator=g)
    use_scene = torch.rand(len(videos), generator=g) < CLIP_SCENE_PROB
    texts = []
    for v, scene in zip(videos.tolist(), use_scene.tolist()):
        exps = corpus.expressions[v]
        pick = int(torch.randint(0, len(exps), (1,), generator=g)) if exps else 0
        texts.append(corpus.frame_captions[v] if scene or not exps else exps[pick])
    return corpus.frames[videos, frame_idx], texts


def train_clip(corpus: CaptionCorpus, tokenizer: Any, cfg: StageConfig, *, arch_name: str = "mini", seed: int = 0,
               log: LogFn | None = None, progress: bool = True):
    """Contrastive image-caption training of a CLIPModel from scratch; returns it in eval mode."""
    from vdit.models.backbone.clip_image import clip_preprocess_fast

    torch.manual_seed(seed)
    model = build_clip(tokenizer, arch_name)
    model.train()
    spec = clip_image_spec(arch_name)
    opt, sched = _optimizer(model, cfg)
    g = _generator(seed, "clip")
    rec = _Recorder("clip", cfg.steps, log, progress)
    for step in range(cfg.steps):
        frames, texts = _clip_batch(corpus, cfg.batch_size, g)
        # The shipped miniature CLIP was pre-trained on the tensor path; kept so that it rebuilds identically.
        pixels = clip_preprocess_fast(frames_to_unit(frames), spec)
        tok = tokenizer(texts, padding=True, return_tensors="pt")
        out = model(input_ids=tok.input_ids, attention_mask=tok.attention_mask, pixel_values=pixels)
        loss = contrastive_loss(out.logits_per_image, texts)
        _step(loss, model, opt, sched, cfg)
        with torch.no_grad():
            hit = [texts[j] == texts[i] for i, j in enumerate(out.logits_per_image.argmax(dim=1).tolist())]
        rec.update(step, loss=loss.item(), acc=sum(hit) / len(hit))
    rec.emit({"event": "done", "loop_s": round(rec.close(), 1), **rec.last})
    return model.eval()


def clip_text_tower(clip: Any):
    """The CLIPModel's text tower as a standalone CLIPTextModel (ModelScope's text_encoder/ class)."""
    from transformers import CLIPTextModel

    text = CLIPTextModel(clip.config.text_config)
    text.load_state_dict(clip.text_model.state_dict())
    return text.eval()


# ---------------------------------------------------------------------------------------------------
# VAE


def build_vae(arch_name: str = "mini"):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**arch(arch_name)["vae"])


@torch.no_grad()
def init_posterior_logvar(vae: Any, logvar: float) -> None:
    """Start the posterior narrow: at the default init its std is ~1, so the decoder first sees latents
    drowned in sampling noise and learns nothing but the mean colour for hundreds of steps."""
    half = vae.quant_conv.out_channels // 2
    vae.quant_conv.bias[half:] = logvar


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
    g = _generator(seed, "scaling")
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
    """MSE + KL training of an AutoencoderKL on single frames; sets config.scaling_factor; eval mode.
    With `eval_corpus`, the final record holds the reconstruction PSNR of unseen frames."""
    torch.manual_seed(seed)
    vae = build_vae(arch_name)
    init_posterior_logvar(vae, VAE_INIT_LOGVAR)
    vae.train()
    opt, sched = _optimizer(vae, cfg)
    g = _generator(seed, "vae")
    rec = _Recorder("vae", cfg.steps, log, progress)
    for step in range(cfg.steps):
        x = _vae_batch(corpus, cfg.batch_size, g)
        dist = vae.encode(x).latent_dist
        rec_x = vae.decode(dist.sample(generator=g)).sample
        mse = F.mse_loss(rec_x, x)
        kl = dist.kl().mean() / dist.mean[0].numel()
        loss = mse + VAE_KL_WEIGHT * kl
        _step(loss, vae, opt, sched, cfg)
        # PSNR on the [0, 1] scale, from the [-1, 1] reconstruction error.
        psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-12))
        rec.update(step, loss=loss.item(), kl=kl.item(), psnr=psnr)
    vae.eval()
    scale = measure_scaling_factor(vae, corpus, seed)
    vae.register_to_config(scaling_factor=scale)
    final = {"eval_psnr": round(reconstruction_psnr(vae, eval_corpus), 3)} if eval_corpus is not None else {}
    rec.emit({"event": "done", "loop_s": round(rec.close(), 1), "scaling_factor": scale, **rec.last, **final})
    return vae


# ---------------------------------------------------------------------------------------------------
# text-to-video UNet


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
    g = _generator(seed, "t2v-eval")
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
    opt, sched = _optimizer(unet, cfg)
    g = _generator(seed, "t2v")
    rec = _Recorder("t2v", cfg.steps, log, progress)
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
        _step(loss, unet, opt, sched, cfg)
        ema.update(unet, step)
        rec.update(step, loss=loss.item())
        if step + 1 in eval_at:
            final = evaluator.run(ema.model, scheduler)
            rec.emit({"step": step + 1, **final})
    rec.emit({"event": "done", "loop_s": round(rec.close(), 1), **rec.last, **final})
    return ema.model


# ---------------------------------------------------------------------------------------------------
# RoBERTa


def build_roberta_mlm(tokenizer: Any, arch_name: str = "mini"):
    from transformers import RobertaConfig, RobertaForMaskedLM

    cfg = dict(arch(arch_name)["text_encoder"])
    cfg["vocab_size"] = len(tokenizer)
    return RobertaForMaskedLM(RobertaConfig(**cfg))


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, tokenizer: Any,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: MLM_PROB of the maskable tokens (at least one per row) become targets; of those
    80% -> <mask>, 10% -> a random token, 10% unchanged. Returns (inputs, labels with -100 elsewhere)."""
    maskable = ~special
    chosen = (torch.rand(input_ids.shape, generator=g) < MLM_PROB) & maskable
    # Rows without a target get one, so every caption contributes to every step's loss.
    scores = torch.rand(input_ids.shape, generator=g).masked_fill(~maskable, -1.0)
    forced = F.one_hot(scores.argmax(dim=1), input_ids.shape[1]).bool() & maskable
    chosen |= forced & ~chosen.any(dim=1, keepdim=True)
    labels = input_ids.masked_fill(~chosen, -100)
    action = torch.rand(input_ids.shape, generator=g)
    inputs = input_ids.clone()
    inputs[chosen & (action < MLM_MASK_SHARE)] = tokenizer.mask_token_id
    rand_pos = chosen & (action >= MLM_MASK_SHARE) & (action < MLM_MASK_SHARE + MLM_RANDOM_SHARE)
    inputs[rand_pos] = torch.randint(0, len(tokenizer), (int(rand_pos.sum()),), generator=g)
    return inputs, labels


def train_roberta(corpus: CaptionCorpus, tokenizer: Any, cfg: StageConfig, *, arch_name: str = "mini", seed: int = 0,
                  log: LogFn | None = None, progress: bool = True):
    """Denoising language-model training on every caption of the corpus; returns the base RobertaModel.

    The inputs are corrupted as in BERT's masked-language modelling (`mask_tokens`), but the loss covers
    every (non-special) token, not only the corrupted ones: the model reconstructs the whole caption.
    Plain MLM is degenerate on this corpus: the attribute words are exchangeable in every context (any
    colour fits "the small ___ circle"), so predicting masked words never separates "red" from "blue",
    and with the LM head tied to the word embeddings a plain-MLM model ended with "red"/"blue" input
    embeddings at cosine 0.92 and output features at 0.98, too alike for VD-IT's head to tell the
    referred object apart. Reconstructing the unmasked words too makes every word's output feature
    identify that word, as a large pre-trained RoBERTa's do."""
    texts = corpus.all_texts()
    torch.manual_seed(seed)
    model = build_roberta_mlm(tokenizer, arch_name)
    model.train()
    opt, sched = _optimizer(model, cfg)
    g = _generator(seed, "roberta")
    rec = _Recorder("roberta", cfg.steps, log, progress)
    for step in range(cfg.steps):
        pick = torch.randint(0, len(texts), (cfg.batch_size,), generator=g).tolist()
        tok = tokenizer([texts[i] for i in pick], padding=True, return_special_tokens_mask=True, return_tensors="pt")
        special = tok.special_tokens_mask.bool() | ~tok.attention_mask.bool()
        inputs, masked_labels = mask_tokens(tok.input_ids, special, tokenizer, g)
        labels = tok.input_ids.masked_fill(special, -100)
        logits = model(input_ids=inputs, attention_mask=tok.attention_mask).logits
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        _step(loss, model, opt, sched, cfg)
        with torch.no_grad():
            hit = logits.argmax(-1) == tok.input_ids
            masked = masked_labels != -100
            acc = hit[masked].float().mean().item()
            acc_all = hit[~special].float().mean().item()
        rec.update(step, loss=loss.item(), acc=acc, acc_all=acc_all)
    rec.emit({"event": "done", "loop_s": round(rec.close(), 1), **rec.last})
    return model.roberta.eval()
