"""Typed configuration: one dataclass per component, presets, YAML round trip, dotted overrides.

Every number of the spec lives here, named (spec = ../shared/design/vdit-spec.md; the supplementary is
the paper's appendix).

    foundation  FoundationConfig: the frozen foundation models (folders / hub ids)
    backbone    BackboneConfig (PromptConfig, NoiseConfig): the diffusion backbone's options (spec 2)
    head        HeadConfig: the DETR-style head (spec 3)
    loss        LossConfig: loss weights and matching costs (spec 4.1)
    model       ModelConfig: the four above, validated together
    presets     full / tiny model presets; preset(name) (the miniature world's: vdit.mini.preset)
    train       TrainConfig: optimisation and run mechanics of `vdit train`
    data        DataConfig: the training set
    run         RunConfig: model + train + data (a run's run.yaml)
    loading     to_dict / from_dict, save_yaml / load_yaml, apply_overrides (`--set key=value`)

Import the names from `vdit.config`.
"""
from vdit.config.backbone import (
    CLIP_PREPROCESS_MODES, NOISE_KINDS, PROMPT_MODES, VAE_LATENT_MODES, BackboneConfig, NoiseConfig, PromptConfig,
)
from vdit.config.data import TRAIN_DATASETS, DataConfig
from vdit.config.foundation import FOUNDATION_PARTS, UNET_INITS, FoundationConfig, local_foundation
from vdit.config.head import HeadConfig
from vdit.config.loading import apply_overrides, from_dict, load_yaml, save_yaml, to_dict
from vdit.config.loss import LossConfig
from vdit.config.model import ModelConfig
from vdit.config.presets import PRESETS, full_config, preset, tiny_config
from vdit.config.run import RunConfig
from vdit.config.train import AMP_MODES, COMPILE_MODES, DEVICES, LR_SCALING_MODES, TrainConfig

__all__ = [
    "AMP_MODES", "CLIP_PREPROCESS_MODES", "COMPILE_MODES", "DEVICES", "FOUNDATION_PARTS", "LR_SCALING_MODES",
    "NOISE_KINDS", "PRESETS", "PROMPT_MODES", "TRAIN_DATASETS",
    "UNET_INITS", "VAE_LATENT_MODES", "BackboneConfig", "DataConfig", "FoundationConfig", "HeadConfig",
    "LossConfig", "ModelConfig", "NoiseConfig", "PromptConfig", "RunConfig", "TrainConfig", "apply_overrides",
    "from_dict", "full_config", "load_yaml", "local_foundation", "preset", "save_yaml",
    "tiny_config", "to_dict",
]
