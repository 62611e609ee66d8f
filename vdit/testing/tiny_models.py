"""Random tiny foundation models saved in exactly the layouts their owners publish.

`build_tiny_foundation(root)` writes

    root/t2v/{unet,vae,text_encoder,tokenizer,scheduler}/   diffusers text-to-video folder (ModelScope layout)
    root/clip_vision/                                        CLIPModel (as LAION publishes it) + CLIPImageProcessor
    root/text_encoder/                                       RobertaModel + RobertaTokenizer

with `save_pretrained`, so every test goes through the real `from_pretrained` loading path offline.
Nothing is downloaded: the tokenizers are byte-level BPE vocabularies (`vdit.models.tokenizers`: every
byte is a token, plus merges for the words of `DEFAULT_WORDS`, so common words become single tokens).
"""
from __future__ import annotations

from pathlib import Path

import torch

from vdit.models.foundation_arch import CLIP_MEAN, CLIP_STD, SCHEDULER, arch
from vdit.models.tokenizers import build_clip_tokenizer, build_roberta_tokenizer


def build_tiny_foundation(root: str | Path, seed: int = 0, arch_name: str = "tiny") -> Path:
    """Create random tiny foundation models under `root` (see module doc); returns `root`."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPConfig,
        CLIPModel,
        RobertaConfig,
        RobertaModel,
    )

    root = Path(root)
    a = arch(arch_name)
    torch.manual_seed(seed)

    t2v = root / "t2v"
    UNet3DConditionModel(**a["unet"]).save_pretrained(t2v / "unet")
    AutoencoderKL(**a["vae"]).save_pretrained(t2v / "vae")
    clip_tok = build_clip_tokenizer()
    clip_tok.save_pretrained(t2v / "tokenizer")
    text_cfg = dict(a["t2v_text"])
    text_cfg["vocab_size"] = text_cfg["vocab_size"] or len(clip_tok)
    CLIPTextModel(
        CLIPTextConfig(**text_cfg, bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id)
    ).save_pretrained(t2v / "text_encoder")
    # The ModelScope repo ships a DDIM config; VD-IT reads it into a DDPMScheduler.
    DDIMScheduler(**SCHEDULER).save_pretrained(t2v / "scheduler")

    # The LAION repo holds a whole CLIPModel (text + vision towers); vdit loads only the vision tower.
    vis = dict(a["clip_vision"])
    projection_dim = vis.pop("projection_dim")
    clip_text = {k: v for k, v in a["t2v_text"].items() if k not in ("projection_dim", "vocab_size")}
    clip_text.update(vocab_size=len(clip_tok), bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id)
    CLIPModel(
        CLIPConfig(text_config=clip_text, vision_config=vis, projection_dim=projection_dim)
    ).save_pretrained(root / "clip_vision")
    CLIPImageProcessor(
        size={"shortest_edge": vis["image_size"]},
        crop_size={"height": vis["image_size"], "width": vis["image_size"]},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    ).save_pretrained(root / "clip_vision")

    rob_tok = build_roberta_tokenizer()
    rob_cfg = dict(a["text_encoder"])
    rob_cfg["vocab_size"] = rob_cfg["vocab_size"] or len(rob_tok)
    RobertaModel(RobertaConfig(**rob_cfg), add_pooling_layer=True).save_pretrained(root / "text_encoder")
    rob_tok.save_pretrained(root / "text_encoder")
    return root
