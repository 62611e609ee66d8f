"""The frozen foundation models VD-IT reads (model folders or hub ids) and how a folder holds them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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



def local_foundation(root: str | Path, arch: str) -> FoundationConfig:
    """The foundation models in one folder's t2v/, clip_vision/ and text_encoder/ subfolders."""
    root = Path(root)
    return FoundationConfig(**{part: str(root / part) for part in FOUNDATION_PARTS}, arch=arch)
