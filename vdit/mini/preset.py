"""The miniature world's model preset `mini`: VD-IT on the shipped tiny foundation models
(vdit/assets/mini/foundation, `vdit mini pretrain`) with head widths for CPU training.

`vdit.config.PRESETS` holds the full-scale presets only; the CLI (`vdit model-info --preset mini`,
`vdit convert-official --preset mini`) joins them with `MINI_PRESETS`, as it joins the training recipes.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vdit.config import BackboneConfig, HeadConfig, ModelConfig, PromptConfig, local_foundation

# Frames of the miniature world (vdit.mini.data.MINI_BENCHMARK) are MINI_FRAME_SIZE x MINI_FRAME_SIZE.
MINI_FRAME_SIZE = 64
# The trained miniature-world foundation models shipped with the package (`vdit mini pretrain`).
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


MINI_PRESETS: dict[str, Callable[..., ModelConfig]] = {"mini": mini_config}
