"""Checks that a miniature foundation folder works as VD-IT's foundation: the stock loaders read it and
a VD-IT model built on it runs a forward pass on a benchmark clip."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vdit.errors import ModelLoadError
from vdit.mini.data import CaptionCorpus
from vdit.models.inputs import frames_to_tensor

VERIFY_FRAMES = 4


@torch.no_grad()
def verify_foundation(root: str | Path, corpus: CaptionCorpus, seed: int = 0) -> dict[str, Any]:
    """Load `root` with `load_foundation` (arch "mini"), build VD-IT with `mini_config(root)` and run it
    on the first clip of `corpus` with its first expression. Returns the output shapes; raises
    ModelLoadError when anything is missing or the outputs are not finite."""
    from vdit.config import mini_config
    from vdit.models.vdit import VDIT

    torch.manual_seed(seed)
    model = VDIT.from_config(mini_config(Path(root))).eval()
    t = min(VERIFY_FRAMES, corpus.frames.shape[1])
    frames = frames_to_tensor(list(corpus.frames[0, :t]))[None]
    text = corpus.expressions[0][0] if corpus.expressions[0] else corpus.scene_captions[0]
    out = model(frames, [text])
    masks = out["pred_masks"]
    if masks.shape[:2] != (1, t) or not torch.isfinite(masks).all() or not torch.isfinite(out["pred_logits"]).all():
        raise ModelLoadError(f"VD-IT on {root} gave unusable outputs: masks {tuple(masks.shape)}")
    trainable = sum(p.numel() for p in model.trainable_named_parameters().values())
    return {"text": text, "pred_masks": list(masks.shape), "pred_logits": list(out["pred_logits"].shape),
            "trainable_parameters": trainable}
