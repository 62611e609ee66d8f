"""What every pretraining stage shares: the plan (step counts per model, scaled to a minute budget),
AdamW with linear warm-up then cosine decay, per-stage data generators, the progress recorder, and the
corpus frames as float pixels."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from vdit.errors import ConfigError
from vdit.models.inputs import PIXEL_MAX

LogFn = Callable[[dict[str, Any]], None]

LOG_EVERY = 10  # steps between loss records
MIN_STAGE_STEPS = 2
MIN_LR_FACTOR = 0.1  # cosine decay ends at this fraction of the peak learning rate
ADAM_BETAS = (0.9, 0.999)
ENCODE_BATCH = 64  # frames or captions per encoder call outside training steps


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
    # CLIP: 4000 steps (500 -> 2000 -> 4000) so that the colour words separate: at 2000 the probe's
    # blue-cyan cosine was 0.91 and the head picked the wrong-coloured shape (docs/miniature.md).
    clip: StageConfig = field(default_factory=lambda: StageConfig(steps=4000, batch_size=64, lr=1e-3))
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


def stage_generator(seed: int, stage: str) -> torch.Generator:
    """A data-sampling generator per (seed, stage), independent of the global RNG."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + sum(ord(c) * 31 ** i for i, c in enumerate(stage)) % 1_000_003)
    return g


def adamw_with_schedule(model: nn.Module,
                        cfg: StageConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters, with linear warm-up then cosine decay to MIN_LR_FACTOR."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=ADAM_BETAS, weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return MIN_LR_FACTOR + (1 - MIN_LR_FACTOR) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def optimizer_step(loss: torch.Tensor, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                   cfg: StageConfig) -> None:
    """Backward, gradient clipping, optimizer and schedule step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()


class StageRecorder:
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
