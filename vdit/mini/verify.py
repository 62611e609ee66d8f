"""Checks that a miniature foundation folder works as VD-IT's foundation: the stock loaders read it and
a VD-IT model built on it runs a forward pass on a benchmark clip (`verify_foundation`); and a probe of
VD-IT's text route through the frozen UNet (`text_localisation`): does changing the sentence change the
UNet's features where the referred objects are, or everywhere alike?"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vdit.errors import ConfigError, ModelLoadError
from vdit.mini.data import CaptionCorpus
from vdit.models.inputs import frames_to_tensor

VERIFY_FRAMES = 4
# text_localisation: the UNet taps of VD-IT's levels 1-3 (U0 = transformer_in output is text-free).
PROBE_TAPS = ("U1", "U2", "U3", "U4", "U5")
PROBE_PAIRS_PER_VIDEO = 3


@torch.no_grad()
def verify_foundation(root: str | Path, corpus: CaptionCorpus, seed: int = 0) -> dict[str, Any]:
    """Load `root` with `load_foundation` (arch "mini"), build VD-IT with `mini_config(root)` and run it
    on the first clip of `corpus` with its first expression. Returns the output shapes; raises
    ModelLoadError when anything is missing or the outputs are not finite."""
    from vdit.mini.preset import mini_config
    from vdit.models.vdit import VDIT

    torch.manual_seed(seed)
    model = VDIT.from_config(mini_config(Path(root))).eval()
    t = min(VERIFY_FRAMES, corpus.frames.shape[1])
    frames = frames_to_tensor(list(corpus.frames[0, :t]))[None]
    text = corpus.expressions[0][0] if corpus.expressions[0] else corpus.scene_captions[0]
    out = model.predict(frames, [text])
    masks = out.pred_masks
    if masks.shape[:2] != (1, t) or not torch.isfinite(masks).all() or not torch.isfinite(out.pred_logits).all():
        raise ModelLoadError(f"VD-IT on {root} gave unusable outputs: masks {tuple(masks.shape)}")
    trainable = sum(p.numel() for p in model.trainable_named_parameters().values())
    return {"text": text, "pred_masks": list(masks.shape), "pred_logits": list(out.pred_logits.shape),
            "trainable_parameters": trainable}


@torch.no_grad()
def text_localisation(model: Any, data_root: str | Path, split: str = "valid", videos: int = 20,
                      frames: int = VERIFY_FRAMES, through_prompt: bool = False) -> dict[str, dict[str, float]]:
    """How VD-IT's UNet features respond to the sentence, per UNet tap. For up to 3 pairs of expressions
    (A, B) about different objects in each of the first `videos` videos of `split`, the taps are computed
    on the same clip (first `frames` frames, posterior-mean latents, VD-IT's timestep) with prompt A and
    with prompt B; D = per-pixel L2 norm of their difference. Returns, per tap, means over pairs of:

    - `in_referred`: mean D inside A's and B's objects / mean D on the background (pooled to the tap's
      size by area): ~1 means the sentence shifts the features everywhere alike, not on the objects;
    - `relative_change`: mean D / mean feature norm.

    `model` is a VDIT; `through_prompt=False` feeds the T2V text encoder's tokens straight to the UNet (the
    frozen foundation alone), True passes them through the model's trainable prompt module first."""
    from vdit.data.video_dataset import parse_meta_expressions
    from vdit.data.ytvos import FRAME_EXT, meta_expressions_path
    from vdit.data.video_io import read_image
    from vdit.evaluation.masks_io import read_label_png
    from vdit.models.backbone.unet_features import unet_taps

    root = Path(data_root)
    bb = model.backbone
    table, records = parse_meta_expressions(meta_expressions_path(root, split))
    by_video: dict[str, list[Any]] = {}
    for rec in records:
        by_video.setdefault(rec.video_id, []).append(rec)
    sums = {name: np.zeros(2) for name in PROBE_TAPS}
    count = 0
    for vid in list(table)[:videos]:
        names = table[vid].frames[:frames]
        clip = [np.asarray(read_image(root / split / "JPEGImages" / vid / f"{n}{FRAME_EXT}")) for n in names]
        labels = torch.from_numpy(np.stack([read_label_png(root / split / "Annotations" / vid / f"{n}.png")
                                            for n in names]))
        visual = bb.encode_visual(frames_to_tensor(clip)[None].to(bb.pixel_mean.device))
        latents = visual.latent_mean

        cache: dict[str, list[torch.Tensor]] = {}  # one sentence often appears in several pairs

        def taps(text: str) -> list[torch.Tensor]:
            if text not in cache:
                prompt = bb.encode_prompt_text([text]).repeat_interleave(len(names), dim=0)
                if through_prompt:
                    prompt = bb.prompt(prompt, visual.clip_tokens)
                cache[text] = unet_taps(bb.unet, latents, bb.timestep, prompt)[1:]
            return cache[text]

        recs = by_video.get(vid, [])
        pairs = [(a, b) for a in recs for b in recs if a.obj_ids[0] != b.obj_ids[0]][:PROBE_PAIRS_PER_VIDEO]
        for a, b in pairs:
            objects = ((labels == a.obj_ids[0]) | (labels == b.obj_ids[0])).float()[:, None]
            background = (labels == 0).float()[:, None]
            for name, fa, fb in zip(PROBE_TAPS, taps(a.text), taps(b.text)):
                d = (fa - fb).float().norm(dim=1)
                size = d.shape[-2:]
                w_obj = F.interpolate(objects, size, mode="area")[:, 0]
                w_bg = F.interpolate(background, size, mode="area")[:, 0]
                on_obj = (d * w_obj).sum() / w_obj.sum().clamp_min(1e-6)
                on_bg = (d * w_bg).sum() / w_bg.sum().clamp_min(1e-6)
                sums[name] += [(on_obj / on_bg.clamp_min(1e-12)).item(),
                               (d.mean() / fa.float().norm(dim=1).mean()).item()]
            count += 1
    if not count:
        raise ConfigError(f"split {split!r} of {root}: no video has expressions about two different objects")
    return {name: {"in_referred": float(v[0] / count), "relative_change": float(v[1] / count)}
            for name, v in sums.items()}
