"""Typed configuration of the VD-IT model: one dataclass per component, presets, YAML round trip.

Every number of the spec lives here, named (spec = ../shared/design/vdit-spec.md; the supplementary is
the paper's appendix). Presets: `full` (ModelScope T2V 1.7B + LAION CLIP-ViT-H-14 + RoBERTa-base, the
paper's model) and `tiny` (the same architecture at toy widths, for tests; foundation folders built by
`vdit.testing`).
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vdit.errors import ConfigError

PROMPT_MODES = ("image", "text", "concat", "attn")  # Table A: VD-I, VD-T, VD-IT concat, VD-IT attn
NOISE_KINDS = ("predicted", "gaussian", "none")  # video-specific predicted noise (paper) / N(0,1) / no noise
VAE_LATENT_MODES = ("sample_train_mean_eval", "sample", "mean")
# backbone.clip_preprocess: the official uint8 + PIL CLIPImageProcessor path (spec 2.1 step 3, 2.3) or the
# on-device tensor approximation (torch antialiased bicubic, no integer truncation; docs/model.md).
CLIP_PREPROCESS_MODES = ("official", "fast")
UNET_INITS = ("pretrained", "random")  # foundation.unet_init: the random-UNet control


# The three model folders a foundation consists of (FoundationConfig's path fields).
FOUNDATION_PARTS = ("t2v", "clip_vision", "text_encoder")


@dataclass
class FoundationConfig:
    """The frozen foundation models: local folders or hub ids, in their owners' published layouts."""

    # diffusers folder with unet/ vae/ text_encoder/ tokenizer/ scheduler/
    t2v: str = "damo-vilab/text-to-video-ms-1.7b"
    # CLIPVisionModel(WithProjection) + CLIPImageProcessor
    clip_vision: str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    # RobertaModel + RobertaTokenizerFast (the head's text encoder)
    text_encoder: str = "roberta-base"
    # Architecture name used to build the models on the meta device without any file (model-info);
    # see vdit.models.foundation_arch.
    arch: str = "modelscope-1.7b"
    # Control experiment (docs/miniature.md): "random" replaces the loaded UNet's weights by a fresh
    # random initialisation from its own config, seeded with `unet_init_seed`; the rest stays pretrained.
    unet_init: str = "pretrained"
    unet_init_seed: int = 0


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


@dataclass
class HeadConfig:
    """DETR-style head (spec 3)."""

    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 4
    dec_layers: int = 4
    dim_feedforward: int = 2048
    dropout: float = 0.1
    num_feature_levels: int = 4
    enc_n_points: int = 4
    dec_n_points: int = 4
    num_queries: int = 5  # Q = 5 instance queries
    controller_layers: int = 2
    dynamic_mask_channels: int = 16
    rel_coord: bool = True
    mask_feat_stride: int = 8
    mask_out_stride: int = 4  # pixel_shuffle factor giving M_o at s2 and M at s1
    group_norm_groups: int = 32
    text_proj_dropout: float = 0.1
    text_proj_ln_eps: float = 1e-12
    fusion_nheads: int = 8
    class_prior_prob: float = 0.01  # class bias init -log((1-p)/p) = -log(99)
    box_wh_bias_init: float = -2.0  # bbox_embed[0] last-layer bias for (w,h)


@dataclass
class LossConfig:
    """Loss weights and matching costs of the supplementary (spec 4.1)."""

    cls: float = 2.0
    bbox: float = 5.0
    giou: float = 2.0
    mask: float = 2.0  # focal on masks
    dice: float = 5.0
    cost_class: float = 2.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    cost_mask: float = 2.0
    cost_dice: float = 5.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    aux_loss: bool = True


@dataclass
class ModelConfig:
    foundation: FoundationConfig = field(default_factory=FoundationConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    # Control experiment (docs/miniature.md): the model ignores its input texts and reads the empty
    # caption everywhere (UNet prompt and head text encoder), in training and inference alike.
    text_blind: bool = False
    # Short side of the frames the model was trained at: VDITPredictor and `vdit segment` resize inputs
    # to it unless told otherwise. None = the benchmarks' evaluation size (EVAL_SHORT_SIDE, 360).
    input_short_side: int | None = None

    def validate(self) -> "ModelConfig":
        bb, hd = self.backbone, self.head
        if self.foundation.unet_init not in UNET_INITS:
            raise ConfigError(f"foundation.unet_init={self.foundation.unet_init!r}: expected one of {UNET_INITS}")
        if bb.prompt.mode not in PROMPT_MODES:
            raise ConfigError(f"backbone.prompt.mode={bb.prompt.mode!r}: expected one of {PROMPT_MODES}")
        if bb.noise.kind not in NOISE_KINDS:
            raise ConfigError(f"backbone.noise.kind={bb.noise.kind!r}: expected one of {NOISE_KINDS}")
        if self.input_short_side is not None and self.input_short_side < 1:
            raise ConfigError(f"input_short_side={self.input_short_side}: expected a positive size or None")
        if bb.noise.step < 1:
            raise ConfigError(f"backbone.noise.step={bb.noise.step}: steps count from 1 (step 1 = timestep 0)")
        if bb.vae_latent not in VAE_LATENT_MODES:
            raise ConfigError(f"backbone.vae_latent={bb.vae_latent!r}: expected one of {VAE_LATENT_MODES}")
        if bb.clip_preprocess not in CLIP_PREPROCESS_MODES:
            raise ConfigError(
                f"backbone.clip_preprocess={bb.clip_preprocess!r}: expected one of {CLIP_PREPROCESS_MODES}")
        if not (len(bb.level_channels) == len(bb.level_hidden_channels) == len(bb.level_strides) == 4):
            raise ConfigError("backbone: exactly 4 feature levels (channels, hidden channels, strides)")
        if hd.num_feature_levels != 4:
            raise ConfigError("head.num_feature_levels must be 4 (3 backbone levels + 1 extra stride-64 level)")
        if hd.hidden_dim % hd.group_norm_groups or hd.hidden_dim % hd.nheads:
            raise ConfigError("head.hidden_dim must be divisible by head.group_norm_groups and head.nheads")
        if hd.dec_layers < 1 or hd.enc_layers < 1 or hd.num_queries < 1:
            raise ConfigError("head: need at least one encoder layer, one decoder layer and one query")
        if hd.dynamic_mask_channels != hd.mask_out_stride ** 2:
            raise ConfigError(
                f"head.dynamic_mask_channels={hd.dynamic_mask_channels} must equal head.mask_out_stride**2 = "
                f"{hd.mask_out_stride ** 2}: the mask channels pixel-shuffle into one channel")
        if hd.controller_layers != 2:
            raise ConfigError("head.controller_layers: only the official 2 dynamic conv layers are implemented")
        return self


def full_config() -> ModelConfig:
    """The paper's model (all defaults)."""
    return ModelConfig().validate()


def local_foundation(root: str | Path, arch: str) -> FoundationConfig:
    """The foundation models in one folder's t2v/, clip_vision/ and text_encoder/ subfolders."""
    root = Path(root)
    return FoundationConfig(**{part: str(root / part) for part in FOUNDATION_PARTS}, arch=arch)


def tiny_config(foundation_root: str | Path | None = None) -> ModelConfig:
    """The same architecture at toy widths. `foundation_root` = a folder made by
    `vdit.testing.build_tiny_foundation` (subfolders t2v/, clip_vision/, text_encoder/)."""
    root = Path(foundation_root) if foundation_root is not None else Path("tiny-foundation")
    cfg = ModelConfig(
        foundation=local_foundation(root, "tiny"),
        backbone=BackboneConfig(
            prompt=PromptConfig(num_heads=4, ffn_dim=32),
            level_hidden_channels=(32, 32, 48, 64),
            level_channels=(16, 32, 48, 64),
        ),
        head=HeadConfig(
            hidden_dim=32,
            nheads=4,
            enc_layers=2,
            dec_layers=2,
            dim_feedforward=64,
            group_norm_groups=8,
            fusion_nheads=4,
        ),
    )
    return cfg.validate()


# The trained miniature-world foundation models shipped with the package (`vdit mini pretrain`).
# Frames of the miniature world (vdit.mini.data.MINI_BENCHMARK) are MINI_FRAME_SIZE x MINI_FRAME_SIZE.
MINI_FRAME_SIZE = 64
MINI_FOUNDATION_DIR = Path(__file__).resolve().parent / "assets" / "mini" / "foundation"


def mini_config(foundation_root: str | Path | None = None) -> ModelConfig:
    """VD-IT on the miniature world's foundation models (docs/miniature.md), head widths for CPU training.
    `foundation_root` defaults to the shipped folder (`MINI_FOUNDATION_DIR`); a folder written by
    `vdit mini pretrain --out` works the same."""
    root = Path(foundation_root) if foundation_root is not None else MINI_FOUNDATION_DIR
    cfg = ModelConfig(
        foundation=local_foundation(root, "mini"),
        backbone=BackboneConfig(
            prompt=PromptConfig(num_heads=4, ffn_dim=64),  # prompt width = the UNet's cross-attention 64
            level_hidden_channels=(32, 64, 64, 64),
            level_channels=(32, 64, 64, 64),
            # The miniature CLIP tower was pre-trained on the tensor path's pixels (vdit.mini.pretrain), so
            # its VD-IT reads the same; at 64x64 the two paths differ only by the uint8 truncation.
            clip_preprocess="fast",
        ),
        head=HeadConfig(
            hidden_dim=64,
            nheads=4,
            enc_layers=2,
            dec_layers=2,
            dim_feedforward=128,
            group_norm_groups=8,
            fusion_nheads=4,
        ),
        input_short_side=MINI_FRAME_SIZE,
    )
    return cfg.validate()


PRESETS = {"full": full_config, "tiny": tiny_config, "mini": mini_config}


def preset(name: str, **kwargs: Any) -> ModelConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name](**kwargs)


# ---------------------------------------------------------------------------------------------------
# dict / YAML round trip and dotted overrides


def to_dict(cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def _unknown_key(path: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {path}{close[0]!r}?" if close else f"; known keys: {sorted(known)}"
    return ConfigError(f"unknown config key {path}{key!r}{hint}")


def from_dict(cls: type, data: dict[str, Any], _path: str = "") -> Any:
    """Build dataclass `cls` from a (possibly partial) dict; unknown keys are an error naming the
    closest known key."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {_path or '<root>'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(_path, key, list(fields))
        ftype = _field_type(cls, key)
        if dataclasses.is_dataclass(ftype):
            kwargs[key] = from_dict(ftype, value, f"{_path}{key}.")
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _field_type(cls: type, name: str) -> Any:
    import typing

    return typing.get_type_hints(cls)[name]


def save_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_yaml(cls: type, path: str | Path) -> Any:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    return from_dict(cls, data or {})


def _parse_value(text: str, current: Any) -> Any:
    value = yaml.safe_load(text)
    if isinstance(value, str) and isinstance(current, (int, float)) and not isinstance(current, bool):
        try:  # YAML 1.1 reads "5e-5" (no dot) as a string; users mean the number
            value = float(text)
        except ValueError:
            pass
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"expected true/false, got {text!r}")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if current is not None and not isinstance(value, type(current)) and not (
        isinstance(current, float) and isinstance(value, (int, float))
    ):
        raise ConfigError(f"expected a {type(current).__name__}, got {text!r}")
    return value


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply `a.b.c=value` strings (values parsed as YAML) to a config, in place; returns it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        node, path = cfg, ""
        for part in parts[:-1]:
            names = [f.name for f in dataclasses.fields(node)]
            if part not in names or not dataclasses.is_dataclass(getattr(node, part)):
                raise _unknown_key(path, part, names)
            node, path = getattr(node, part), f"{path}{part}."
        names = [f.name for f in dataclasses.fields(node)]
        leaf = parts[-1]
        if leaf not in names or dataclasses.is_dataclass(getattr(node, leaf)):
            raise _unknown_key(path, leaf, names)
        try:
            setattr(node, leaf, _parse_value(text, getattr(node, leaf)))
        except ConfigError as exc:
            raise ConfigError(f"override {dotted}: {exc}") from None
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


# ---------------------------------------------------------------------------------------------------
# Training run configuration (the engine: vdit/engine, `vdit train`). Presets: vdit.engine.recipes.

AMP_MODES = ("none", "bf16", "fp16")
LR_SCALING_MODES = ("none", "linear")  # "linear": lr x global_batch / lr_reference_batch
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("none", "head")  # train.compile: "head" = torch.compile of the head, matcher and loss
TRAIN_DATASETS = ("ytvos", "a2d", "refcoco", "synthetic")


@dataclass
class TrainConfig:
    """Optimisation, schedule and run mechanics (spec 5.1-5.3, supplementary "Additional Training Details").

    `lr` / `lr_text_encoder` are the *effective* learning rates (no scaling by the GPU count unless
    `lr_scaling="linear"`); `batch_size` is per process, so the global batch is
    batch_size x world_size x grad_accum. `lr_drops` are epoch numbers (MultiStepLR, stepped per epoch).
    """

    epochs: int = 9
    lr: float = 5e-5
    lr_text_encoder: float = 1e-5  # official default; used only when train_text_encoder is true
    train_text_encoder: bool = False  # the head's RoBERTa (trainable in RefCOCO pre-training)
    weight_decay: float = 5e-4
    clip_max_norm: float = 0.1  # 0 disables clipping
    lr_drops: tuple[int, ...] = (6, 8)
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
        if self.amp not in AMP_MODES:
            raise ConfigError(f"train.amp={self.amp!r}: expected one of {AMP_MODES}")
        if self.lr_scaling not in LR_SCALING_MODES:
            raise ConfigError(f"train.lr_scaling={self.lr_scaling!r}: expected one of {LR_SCALING_MODES}")
        if self.device not in DEVICES:
            raise ConfigError(f"train.device={self.device!r}: expected one of {DEVICES}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"train.compile={self.compile!r}: expected one of {COMPILE_MODES}")
        return self


@dataclass
class DataConfig:
    """Which training set, where it lives, and (synthetic only) how to generate it when absent."""

    name: str = "ytvos"
    root: str = ""  # dataset root (the COCO root, holding train2014/ and refcoco*/, for refcoco)
    split: str = "train"
    refcoco_sets: tuple[str, ...] = ("refcoco", "refcoco+", "refcocog")  # joint pre-training (concatenated)
    skip_bad: bool = False  # replace missing/corrupt samples (counted, warned) instead of stopping
    max_samples: int = 0  # train on the first N samples only (smoke runs); 0 = all
    max_size: int = 0  # long-side cap of the train resize; 0 = the recipe's (640, or 800 for refcoco)
    # synthetic: when `root` holds no benchmark and synthetic_videos > 0, write one there first
    synthetic_videos: int = 0
    synthetic_frames: int = 6
    synthetic_height: int = 64
    synthetic_width: int = 64
    synthetic_seed: int = 0

    def validate(self) -> "DataConfig":
        if self.name not in TRAIN_DATASETS:
            raise ConfigError(f"data.name={self.name!r}: expected one of {TRAIN_DATASETS}")
        for name in ("max_samples", "max_size", "synthetic_videos"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"data.{name}={getattr(self, name)}: must be >= 0")
        if self.name == "refcoco" and not self.refcoco_sets:
            raise ConfigError("data.refcoco_sets is empty: name at least one of refcoco, refcoco+, refcocog")
        return self


@dataclass
class RunConfig:
    """Everything a training run needs: the model, the optimisation and the data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def validate(self) -> "RunConfig":
        self.model.validate()
        self.train.validate()
        self.data.validate()
        return self
