"""What `VDIT.encode_video` and `VDIT.segment` exchange: one clip's sentence-independent features, and
the head's answer for several sentences on them.

    video = model.encode_video(frames)            # frames [T,3,h,w] ImageNet-normalised, one clip
    out = model.segment(video, ["a dog", "the ball"])
    out.mask_logits                               # [S,T,1,Hp,Wp]: the best query's mask of each sentence

A clip's visual work (CLIP image tokens, VAE tap and latents) does not depend on the sentence, so it is
computed once (`encode_video`) and every sentence's head runs on it (`segment`, sentences as a batch).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from vdit.models.backbone.diffusion_backbone import VisualFeatures

# `VDIT.segment(queries=...)`: the mask of the best query per sentence, or of every query.
QUERY_MODES = ("best", "all")


@dataclass
class EncodedVideo:
    """One clip as the head reads it: padded to the model's divisibility and its visual features.

    visual:   the backbone's text-independent features of the padded clip (batch 1)
    frames:   [1,T,3,Hp,Wp] the padded frames (their shape and device; the values are in `visual`)
    pad_mask: [1,T,Hp,Wp] bool, True on padding
    sizes:    [1,2] long, the unpadded (h, w), on the frames' device
    size:     the unpadded (h, w) as Python ints (cropping needs no device read)
    """

    visual: VisualFeatures
    frames: torch.Tensor
    pad_mask: torch.Tensor
    sizes: torch.Tensor
    size: tuple[int, int]


@dataclass
class SegmentOutput:
    """The head's answer for S sentences on one clip (T frames; t = T, or the number of `valid_indices`).

    mask_logits:  [S,t,K,Hp,Wp] refined mask logits at the padded input size: K = 1 (queries="best")
                  or Q (queries="all")
    mask_queries: [S,K] long, the query each of the K masks belongs to
    query_logits: [S,t,Q] every query's score logit in each frame
    scores:       [S,Q] mean over the frames of sigmoid(query_logits): what picks the best query
    best_query:   [S] long, argmax of `scores`
    size:         the unpadded (h, w) of the input: the region of `mask_logits` that is the clip
    """

    mask_logits: torch.Tensor
    mask_queries: torch.Tensor
    query_logits: torch.Tensor
    scores: torch.Tensor
    best_query: torch.Tensor
    size: tuple[int, int]

    @staticmethod
    def cat(outputs: "list[SegmentOutput]") -> "SegmentOutput":
        """Several outputs on the same clip (sentences run in chunks) as one, sentences in order."""
        if len({o.size for o in outputs}) != 1:
            raise ValueError("SegmentOutput.cat: the outputs are of clips of different sizes")
        if len(outputs) == 1:
            return outputs[0]
        fields = ("mask_logits", "mask_queries", "query_logits", "scores", "best_query")
        return SegmentOutput(**{f: torch.cat([getattr(o, f) for o in outputs]) for f in fields},
                             size=outputs[0].size)


def expand_visual(vis: VisualFeatures, n: int) -> VisualFeatures:
    """The features of one clip repeated for `n` sentences (batch-major, as the backbone expects)."""
    if vis.batch != 1:
        raise ValueError(f"expand_visual expects the features of one clip, got batch {vis.batch}")
    if n == 1:
        return vis
    tokens = vis.clip_tokens
    return dataclasses.replace(
        vis,
        clip_tokens=None if tokens is None else tokens.repeat(n, *([1] * (tokens.dim() - 1))),
        vae_tap=vis.vae_tap.repeat(n, 1, 1, 1),
        latent_mean=vis.latent_mean.expand(n, *vis.latent_mean.shape[1:]),
        latent_std=vis.latent_std.expand(n, *vis.latent_std.shape[1:]),
        batch=n,
    )


__all__ = ["EncodedVideo", "SegmentOutput", "expand_visual", "QUERY_MODES"]
