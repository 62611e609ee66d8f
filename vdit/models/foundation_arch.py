"""Architecture hyper-parameters of the frozen foundation models, as their owners publish them.

These let vdit build the models with random (or no) weights: on the `meta` device for `vdit model-info`
(no files, no memory), and at toy widths for the tiny-model test kit. Loading real weights never uses
them: it reads the config.json files of the folders named in `FoundationConfig`.

`modelscope-1.7b` = damo-vilab/text-to-video-ms-1.7b (unet/, vae/, text_encoder/ = OpenCLIP-H text tower,
scheduler/), laion/CLIP-ViT-H-14-laion2B-s32B-b79K (vision tower) and roberta-base.
"""
from __future__ import annotations

from typing import Any

from vdit.errors import ConfigError

_UNET_DOWN = ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"]
_UNET_UP = ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"]
_VAE_DOWN = ["DownEncoderBlock2D"] * 4
_VAE_UP = ["UpDecoderBlock2D"] * 4

# DDPM/DDIM schedule of the ModelScope checkpoint (spec 1): scaled-linear betas 0.00085 -> 0.012, 1000 steps.
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
}

ARCHS: dict[str, dict[str, dict[str, Any]]] = {
    "modelscope-1.7b": {
        "unet": {
            "sample_size": 32,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": _UNET_DOWN,
            "up_block_types": _UNET_UP,
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
            "norm_num_groups": 32,
            "cross_attention_dim": 1024,
            "attention_head_dim": 64,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": _VAE_DOWN,
            "up_block_types": _VAE_UP,
            "block_out_channels": [128, 256, 512, 512],
            "layers_per_block": 2,
            "latent_channels": 4,
            "norm_num_groups": 32,
            "sample_size": 256,
            "scaling_factor": 0.18215,
        },
        "t2v_text": {  # CLIPTextConfig of the OpenCLIP ViT-H text tower (HF conversion keeps 23 layers)
            "vocab_size": 49408,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 23,
            "num_attention_heads": 16,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
            "projection_dim": 512,
        },
        "clip_vision": {  # CLIPVisionConfig of CLIP-ViT-H-14
            "hidden_size": 1280,
            "intermediate_size": 5120,
            "num_hidden_layers": 32,
            "num_attention_heads": 16,
            "patch_size": 14,
            "image_size": 224,
            "projection_dim": 1024,
            "hidden_act": "gelu",
        },
        "text_encoder": {  # roberta-base
            "vocab_size": 50265,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "layer_norm_eps": 1e-5,
        },
    },
    "tiny": {
        "unet": {
            "sample_size": 8,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": _UNET_DOWN,
            "up_block_types": _UNET_UP,
            "block_out_channels": [32, 32, 64, 64],
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": _VAE_DOWN,
            "up_block_types": _VAE_UP,
            "block_out_channels": [16, 32, 32, 32],
            "layers_per_block": 2,  # tap B is down_blocks[2].resnets[1]: needs 2 resnets per block
            "latent_channels": 4,
            "norm_num_groups": 8,
            "sample_size": 64,
            "scaling_factor": 0.18215,
        },
        "t2v_text": {
            "vocab_size": None,  # = the tiny tokenizer's vocabulary size
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
            "projection_dim": 32,
        },
        "clip_vision": {
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "patch_size": 8,
            "image_size": 32,
            "projection_dim": 32,
            "hidden_act": "gelu",
        },
        "text_encoder": {
            "vocab_size": None,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": 130,
            "type_vocab_size": 1,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "layer_norm_eps": 1e-5,
        },
    },
    # The miniature world (vdit.mini): models trained from scratch on the generated benchmark (64x64 frames)
    # and shipped in vdit/assets/mini/foundation. Widths: the whole foundation stays ~17 MB in fp32 and
    # `vdit mini pretrain` trains it on 2 CPU cores in ~20 minutes. Same block structure as ModelScope
    # (4 UNet down/up blocks, 3 with cross-attention; 4-block VAE with 2 resnets per block for tap B).
    "mini": {
        "unet": {
            "sample_size": 8,  # 64x64 frames -> 8x8 latents
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": _UNET_DOWN,
            "up_block_types": _UNET_UP,
            "block_out_channels": [32, 32, 48, 64],
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "cross_attention_dim": 64,  # = t2v_text hidden_size (the text tokens feed cross-attention)
            "attention_head_dim": 8,  # as in ModelScope this is the per-head width of the spatial attention
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": _VAE_DOWN,
            "up_block_types": _VAE_UP,
            "block_out_channels": [16, 32, 64, 64],
            "layers_per_block": 2,  # tap B is down_blocks[2].resnets[1]: needs 2 resnets per block
            "latent_channels": 4,
            "norm_num_groups": 8,
            "sample_size": 64,
            # Measured by `vdit mini pretrain` (1 / std of the trained VAE's latents) and written to the
            # saved vae/config.json; this is the value of the shipped models.
            "scaling_factor": 0.75811,
        },
        "t2v_text": {
            "vocab_size": None,  # = the benchmark-vocabulary tokenizer's size
            "hidden_size": 64,
            "intermediate_size": 256,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "hidden_act": "gelu",
            "projection_dim": 64,
        },
        "clip_vision": {
            "hidden_size": 64,
            "intermediate_size": 256,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "patch_size": 8,
            "image_size": 64,
            "projection_dim": 64,
            "hidden_act": "gelu",
        },
        "text_encoder": {
            "vocab_size": None,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 256,
            "max_position_embeddings": 130,
            "type_vocab_size": 1,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "layer_norm_eps": 1e-5,
        },
    },
}

# CLIP image preprocessing constants (CLIPImageProcessor defaults of the LAION model).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def arch(name: str) -> dict[str, dict[str, Any]]:
    if name not in ARCHS:
        raise ConfigError(f"unknown foundation architecture {name!r}; known: {sorted(ARCHS)}")
    return ARCHS[name]
