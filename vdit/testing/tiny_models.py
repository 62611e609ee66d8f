"""Random tiny foundation models saved in exactly the layouts their owners publish.

`build_tiny_foundation(root)` writes

    root/t2v/{unet,vae,text_encoder,tokenizer,scheduler}/   diffusers text-to-video folder (ModelScope layout)
    root/clip_vision/                                        CLIPModel (as LAION publishes it) + CLIPImageProcessor
    root/text_encoder/                                       RobertaModel + RobertaTokenizer

with `save_pretrained`, so every test goes through the real `from_pretrained` loading path offline.
Nothing is downloaded: the tokenizers are byte-level BPE vocabularies built here (every byte is a token,
plus merges for the words of `DEFAULT_WORDS`, so common words become single tokens).
"""
from __future__ import annotations

from pathlib import Path

import torch

from vdit.models.foundation_arch import CLIP_MEAN, CLIP_STD, SCHEDULER, arch

# Words the tiny tokenizers know as whole tokens (the generated benchmark's vocabulary and a few more).
DEFAULT_WORDS = (
    "a the of and is in on to with left right up down moving small large big red green blue yellow "
    "purple orange white black circle square triangle star diamond cross shape object person dog "
    "above below near far next top bottom fast slow that which one"
).split()


def _word_merges(words: list[str], suffix: str) -> list[tuple[str, str]]:
    """Left-to-right merges that assemble each word into one token (`suffix` marks a word end)."""
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in words:
        pieces = list(word)
        pieces[-1] = pieces[-1] + suffix
        current = pieces[0]
        for piece in pieces[1:]:
            pair = (current, piece)
            current = current + piece
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
    return merges


def build_clip_tokenizer(words: list[str] | tuple[str, ...] = DEFAULT_WORDS, max_length: int = 77):
    from vdit.mini.tokenizers import CLIP_WORD_END, clip_tokenizer_from_merges

    merges = _word_merges(list(words), CLIP_WORD_END)
    return clip_tokenizer_from_merges(merges, max_length)


def build_roberta_tokenizer(words: list[str] | tuple[str, ...] = DEFAULT_WORDS, max_length: int = 128):
    from vdit.mini.tokenizers import ROBERTA_SPACE, roberta_tokenizer_from_merges

    # RoBERTa marks a leading space with "Ġ" (byte 0x20 mapped); words after the first carry it.
    merges = _word_merges([ROBERTA_SPACE + w for w in words] + list(words), "")
    return roberta_tokenizer_from_merges(merges, max_length)


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
