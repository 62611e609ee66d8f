"""Training run mechanics (the engine: vdit/engine, `vdit train`): optimisation, schedule, precision,
checkpoints. Presets: vdit.engine.recipes."""
from __future__ import annotations

from dataclasses import dataclass

from vdit.errors import ConfigError

AMP_MODES = ("none", "bf16", "fp16")
LR_SCALING_MODES = ("none", "linear")  # "linear": lr x global_batch / lr_reference_batch
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("none", "head")  # train.compile: "head" = torch.compile of the head, matcher and loss


@dataclass
class TrainConfig:
    """Optimisation, schedule and run mechanics (spec 5.1-5.3, supplementary "Additional Training Details").

    `lr` / `lr_text_encoder` are the *effective* learning rates (no scaling by the GPU count unless
    `lr_scaling="linear"`); `batch_size` is per process, so the global batch is
    batch_size x world_size x grad_accum. `lr_drops` are epoch numbers (MultiStepLR, stepped per epoch), `lr_drop_steps` optimizer
    steps (x gamma after that step; the optimiser's state carries the lowered rate into checkpoints).
    """

    epochs: int = 9
    lr: float = 5e-5
    lr_text_encoder: float = 1e-5  # official default; used only when train_text_encoder is true
    train_text_encoder: bool = False  # the head's RoBERTa (trainable in RefCOCO pre-training)
    weight_decay: float = 5e-4
    clip_max_norm: float = 0.1  # 0 disables clipping
    lr_drops: tuple[int, ...] = (6, 8)
    # x gamma after these optimizer steps: for recipes a step budget ends (train.max_steps) before any epoch
    # drop could happen, e.g. the miniature world's (vdit.mini.recipe); the paper's recipes use lr_drops only
    lr_drop_steps: tuple[int, ...] = ()
    gamma: float = 0.1
    batch_size: int = 1  # clips per process and micro-step
    num_frames: int = 5  # T
    num_workers: int = 4
    amp: str = "none"
    grad_accum: int = 1
    seed: int = 42  # the model RNG of rank r is seeded with seed + r (official)
    lr_scaling: str = "none"
    lr_reference_batch: int = 2  # global batch the recipe's lr was tuned for (2 GPUs x 1 clip)
    max_consecutive_nonfinite: int = 5  # stop the run after this many skipped steps in a row
    log_every: int = 10  # optimizer steps between metric records
    ckpt_every: int = 0  # optimizer steps between checkpoints (0: only at epoch ends)
    keep_checkpoints: int = 2  # most recent checkpoints kept (0: keep all)
    max_steps: int = 0  # stop (with a checkpoint) after this many optimizer steps; 0 = full schedule
    init_from: str = ""  # save_pretrained folder or checkpoint to initialise from (not a resume)
    init_required: bool = False  # the recipe starts from pre-trained weights: init_from must be set
    init_exclude: tuple[str, ...] = ()  # parameter-name prefixes not loaded from init_from
    device: str = "auto"
    find_unused_parameters: bool = False  # DDP option, for variants with unused trainable modules
    # Speed levers (issue 17, docs/training.md "Speed"): sentences whose frozen text-encoder outputs are
    # kept (LRU; 0 = off; never used with dropout on or a trained encoder); opt-in torch.compile.
    text_cache: int = 16384
    compile: str = "none"
    compile_backend: str = "inductor"

    def validate(self) -> "TrainConfig":
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "num_frames": self.num_frames,
                    "grad_accum": self.grad_accum, "log_every": self.log_every,
                    "lr_reference_batch": self.lr_reference_batch,
                    "max_consecutive_nonfinite": self.max_consecutive_nonfinite}
        for name, value in positive.items():
            if int(value) < 1:
                raise ConfigError(f"train.{name}={value}: must be >= 1")
        for name in ("num_workers", "ckpt_every", "keep_checkpoints", "max_steps", "text_cache"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"train.{name}={getattr(self, name)}: must be >= 0")
        for name in ("lr", "lr_text_encoder", "weight_decay", "clip_max_norm", "gamma"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"train.{name}={getattr(self, name)}: must be >= 0")
        if list(self.lr_drops) != sorted(self.lr_drops) or any(int(d) < 1 for d in self.lr_drops):
            raise ConfigError(f"train.lr_drops={list(self.lr_drops)}: epochs >= 1 in increasing order")
        steps = list(self.lr_drop_steps)
        if steps != sorted(set(steps)) or any(int(d) < 1 for d in steps):
            raise ConfigError(f"train.lr_drop_steps={steps}: optimizer steps >= 1 in increasing order")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"train.amp={self.amp!r}: expected one of {AMP_MODES}")
        if self.lr_scaling not in LR_SCALING_MODES:
            raise ConfigError(f"train.lr_scaling={self.lr_scaling!r}: expected one of {LR_SCALING_MODES}")
        if self.device not in DEVICES:
            raise ConfigError(f"train.device={self.device!r}: expected one of {DEVICES}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"train.compile={self.compile!r}: expected one of {COMPILE_MODES}")
        return self
