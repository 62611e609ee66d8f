"""Model presets: `full` (ModelScope T2V 1.7B + LAION CLIP-ViT-H-14 + RoBERTa-base, the paper's model),
`tiny` (the same architecture at toy widths, for tests; foundation folders built by `vdit.testing`).
The miniature world's preset `mini` lives with it (`vdit.mini.preset.MINI_PRESETS`); the CLI joins the two."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vdit.config.backbone import BackboneConfig, PromptConfig
from vdit.config.foundation import local_foundation
from vdit.config.head import HeadConfig
from vdit.config.model import ModelConfig
from vdit.errors import ConfigError


def full_config() -> ModelConfig:
    """The paper's model (all defaults)."""
    return ModelConfig().validate()



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


PRESETS: dict[str, Callable[..., ModelConfig]] = {"full": full_config, "tiny": tiny_config}


def preset(name: str, presets: Mapping[str, Callable[..., ModelConfig]] = PRESETS, **kwargs: Any) -> ModelConfig:
    """The model config of preset `name` from `presets` (`kwargs` go to its function); the CLI passes
    these presets and the miniature world's (`vdit.mini.preset.MINI_PRESETS`)."""
    if name not in presets:
        raise ConfigError(f"unknown model preset {name!r}; choose from {sorted(presets)}")
    return presets[name](**kwargs)
