"""Model presets: `full` (ModelScope T2V 1.7B + LAION CLIP-ViT-H-14 + RoBERTa-base, the paper's model),
`tiny` (the same architecture at toy widths, for tests; foundation folders built by `vdit.testing`) and
`mini` (the miniature world's trained foundation models, docs/miniature.md)."""
from __future__ import annotations

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


# The trained miniature-world foundation models shipped with the package (`vdit mini pretrain`).
# Frames of the miniature world (vdit.mini.data.MINI_BENCHMARK) are MINI_FRAME_SIZE x MINI_FRAME_SIZE.
MINI_FRAME_SIZE = 64
MINI_FOUNDATION_DIR = Path(__file__).resolve().parents[1] / "assets" / "mini" / "foundation"


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
