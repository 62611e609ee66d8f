"""Training recipes: the supplementary's schedules as named `RunConfig` presets (`vdit train --preset`).

Supplementary, "Additional Training Details":
- RefCOCO/+/g pre-training: single frames, 12 epochs, lr 2.5e-6 for the text encoder (trained in this
  stage) and 2.5e-5 for the rest, x0.1 at epochs 8 and 10;
- main training: text encoder frozen, lr 5e-5 for the whole model; 9 epochs (x0.1 at 6 and 8) from
  scratch, 6 epochs (x0.1 at 3 and 5) after pre-training.
Spec 5.2 supplies the rest: 5 frames per clip and 1 clip per GPU for video stages, 2 single-frame clips per
GPU for the image pre-training (SgMg recipe), 2 GPUs, and A2D fine-tuning from pre-trained weights with
`class_embed` dropped.

Learning rates are the *effective* values of those runs. The official `main.py` multiplies its `--lr`
by n_gpu/4 (n_gpu/8 with pre-trained weights); the supplementary and the model card report the result
(5e-5 on 2 GPUs). vdit uses `train.lr` as given, whatever the number of processes; set
`train.lr_scaling=linear` to scale it by global_batch / `train.lr_reference_batch` (the recipe's global
batch, 2 clips for video stages, 4 for pre-training) when training with a different global batch.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from vdit.config import FOUNDATION_PARTS, DataConfig, ModelConfig, RunConfig, TrainConfig, full_config, tiny_config
from vdit.errors import ConfigError

# Supplementary, pre-training on RefCOCO/+/g.
PRETRAIN_EPOCHS = 12
PRETRAIN_LR = 2.5e-5
PRETRAIN_LR_TEXT_ENCODER = 2.5e-6
PRETRAIN_LR_DROPS = (8, 10)
PRETRAIN_NUM_FRAMES = 1  # single-frame inputs
PRETRAIN_BATCH_SIZE = 2  # clips per GPU (spec 5.2, SgMg recipe)
# Supplementary, main training (text encoder frozen).
MAIN_LR = 5e-5
SCRATCH_EPOCHS = 9
SCRATCH_LR_DROPS = (6, 8)
FINETUNE_EPOCHS = 6  # after pre-training
FINETUNE_LR_DROPS = (3, 5)
LR_DROP_GAMMA = 0.1  # "reduction by a factor of 10"
# Spec 5.2 / 5.3.
VIDEO_NUM_FRAMES = 5
VIDEO_BATCH_SIZE = 1
RECIPE_NUM_GPUS = 2
NUM_WORKERS = 4
A2D_INIT_EXCLUDE = ("class_embed.",)  # deleted before loading pre-trained weights (official main.py)
# Table A prompt variants (attn = the `ytvos` preset) and Table B diffusion steps (1 = `ytvos`).
TABLE_A_VARIANTS = {"ytvos_vdi": "image", "ytvos_vdt": "text", "ytvos_concat": "concat"}
TABLE_B_STEPS = (5, 10, 50, 100)

# tiny_synthetic: the tiny model on a small generated benchmark (tests, CPU demos).
TINY_EPOCHS = 4
TINY_LR = 1e-4
TINY_LR_DROPS = (3,)
TINY_BATCH_SIZE = 2
TINY_NUM_FRAMES = 2
TINY_SYNTHETIC_VIDEOS = 8
TINY_SYNTHETIC_FRAMES = 6
TINY_SYNTHETIC_SIDE = 64  # 64x64 frames
TINY_LOG_EVERY = 1


def _video_train(epochs: int, drops: tuple[int, ...], **kwargs) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=MAIN_LR, lr_drops=drops, gamma=LR_DROP_GAMMA,
                       batch_size=VIDEO_BATCH_SIZE, num_frames=VIDEO_NUM_FRAMES, num_workers=NUM_WORKERS,
                       train_text_encoder=False, lr_reference_batch=RECIPE_NUM_GPUS * VIDEO_BATCH_SIZE, **kwargs)


def pretrain_refcoco() -> RunConfig:
    """RefCOCO + RefCOCO+ + RefCOCOg jointly, single frames, text encoder trained at its own lr."""
    train = TrainConfig(epochs=PRETRAIN_EPOCHS, lr=PRETRAIN_LR, lr_text_encoder=PRETRAIN_LR_TEXT_ENCODER,
                        train_text_encoder=True, lr_drops=PRETRAIN_LR_DROPS, gamma=LR_DROP_GAMMA,
                        batch_size=PRETRAIN_BATCH_SIZE, num_frames=PRETRAIN_NUM_FRAMES, num_workers=NUM_WORKERS,
                        lr_reference_batch=RECIPE_NUM_GPUS * PRETRAIN_BATCH_SIZE)
    return RunConfig(model=full_config(), train=train, data=DataConfig(name="refcoco"))


def ytvos() -> RunConfig:
    """Ref-YouTube-VOS from scratch: 9 epochs, lr 5e-5, x0.1 at 6 and 8 (the released script)."""
    return RunConfig(model=full_config(), train=_video_train(SCRATCH_EPOCHS, SCRATCH_LR_DROPS),
                     data=DataConfig(name="ytvos"))


def ytvos_from_pretrain() -> RunConfig:
    """Ref-YouTube-VOS after RefCOCO pre-training: 6 epochs, x0.1 at 3 and 5 (needs train.init_from)."""
    return RunConfig(model=full_config(),
                     train=_video_train(FINETUNE_EPOCHS, FINETUNE_LR_DROPS, init_required=True),
                     data=DataConfig(name="ytvos"))


def a2d() -> RunConfig:
    """A2D-Sentences from pre-trained weights without class_embed: 6 epochs, x0.1 at 3 and 5."""
    return RunConfig(model=full_config(),
                     train=_video_train(FINETUNE_EPOCHS, FINETUNE_LR_DROPS, init_required=True,
                                        init_exclude=A2D_INIT_EXCLUDE),
                     data=DataConfig(name="a2d"))


def _table_a(mode: str) -> Callable[[], RunConfig]:
    def make() -> RunConfig:
        cfg = ytvos()
        cfg.model.backbone.prompt.mode = mode
        return cfg
    make.__doc__ = f"Table A: the `ytvos` recipe with backbone.prompt.mode={mode!r}."
    return make


def _table_b(step: int) -> Callable[[], RunConfig]:
    def make() -> RunConfig:
        cfg = ytvos()
        cfg.model.backbone.noise.step = step
        return cfg
    make.__doc__ = f"Table B: the `ytvos` recipe with diffusion step {step} (timestep {step - 1})."
    return make


def tiny_synthetic() -> RunConfig:
    """The tiny model on a small generated benchmark (written to data.root when absent); CPU-sized."""
    train = TrainConfig(epochs=TINY_EPOCHS, lr=TINY_LR, lr_drops=TINY_LR_DROPS, gamma=LR_DROP_GAMMA,
                        batch_size=TINY_BATCH_SIZE, num_frames=TINY_NUM_FRAMES, num_workers=0,
                        log_every=TINY_LOG_EVERY, lr_reference_batch=TINY_BATCH_SIZE)
    data = DataConfig(name="synthetic", synthetic_videos=TINY_SYNTHETIC_VIDEOS, synthetic_frames=TINY_SYNTHETIC_FRAMES,
                      synthetic_height=TINY_SYNTHETIC_SIDE, synthetic_width=TINY_SYNTHETIC_SIDE)
    return RunConfig(model=tiny_config(), train=train, data=data)


RUN_PRESETS: dict[str, Callable[[], RunConfig]] = {
    "pretrain_refcoco": pretrain_refcoco,
    "ytvos": ytvos,
    "ytvos_from_pretrain": ytvos_from_pretrain,
    "a2d": a2d,
    **{name: _table_a(mode) for name, mode in TABLE_A_VARIANTS.items()},
    **{f"ytvos_step{s}": _table_b(s) for s in TABLE_B_STEPS},
    "tiny_synthetic": tiny_synthetic,
}


def point_foundation(model: ModelConfig, foundation_root: str | Path) -> ModelConfig:
    """Load the frozen foundation models from `<root>/t2v`, `<root>/clip_vision`, `<root>/text_encoder`."""
    root = Path(foundation_root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"foundation root {root} is not a folder (expected t2v/, clip_vision/, text_encoder/)")
    missing = [part for part in FOUNDATION_PARTS if not (root / part).is_dir()]
    if missing:
        raise ConfigError(f"foundation root {root} lacks {', '.join(p + '/' for p in missing)}")
    for part in FOUNDATION_PARTS:
        setattr(model.foundation, part, str(root / part))
    return model


def run_preset(name: str, foundation_root: str | Path | None = None,
               presets: Mapping[str, Callable[[], RunConfig]] = RUN_PRESETS) -> RunConfig:
    """A fresh RunConfig for preset `name` of `presets` (optionally with local foundation model folders).
    `vdit train` passes these presets and the miniature world's (`vdit.mini.recipe.MINI_RUN_PRESETS`)."""
    if name not in presets:
        import difflib

        close = difflib.get_close_matches(name, list(presets), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown training preset {name!r}{hint} (choose from {', '.join(presets)})")
    cfg = presets[name]()
    if foundation_root is not None:
        point_foundation(cfg.model, foundation_root)
    return cfg.validate()
