"""VD-IT at a preset's widths with random foundation weights, and the inputs of a profiled step (no
checkpoint or dataset needed: compute and memory depend on shapes only)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from vdit.config import ModelConfig
    from vdit.data.types import ClipBatch
    from vdit.models.vdit import VDIT
    from vdit.training import TrainingWrapper

# Sentences of a profiled step. Tokenizers are the test kit's stand-ins (`vdit.testing`): token ids differ
# from the real tokenizers' but sequence shapes, hence compute and memory, do not.
TEXTS = ("the person on the left riding a horse", "a small dog running on the grass",
         "the red car parked behind the fence", "a man in a white shirt", "the ball")


def model_config(preset: str, grad_ckpt: bool = False) -> "ModelConfig":
    """The preset's model configuration, with activation checkpointing through the UNet if asked."""
    from vdit.config import apply_overrides, preset as make_preset

    cfg = make_preset(preset)
    return apply_overrides(cfg, [f"backbone.grad_ckpt={str(grad_ckpt).lower()}"])


def build_model(preset: str, device: str | torch.device, frozen_dtype: torch.dtype | None = None,
                grad_ckpt: bool = False, seed: int = 0) -> "VDIT":
    """VD-IT with random foundation weights (`frozen_dtype`, default fp32) and fp32 trainable parts."""
    from vdit.models.foundation import build_foundation_random
    from vdit.models.vdit import VDIT

    cfg = model_config(preset, grad_ckpt)
    foundation = build_foundation_random(cfg.foundation.arch, dtype=frozen_dtype, device=device, seed=seed)
    with torch.device(device):
        return VDIT(cfg, foundation)


class FixedMatcher(nn.Module):
    """Matching stand-in for meta runs (the Hungarian matcher reads cost values on the CPU): query 0.
    The matcher runs without gradients and costs a negligible share of a step."""

    def forward(self, logits: Tensor, *_: Any) -> Tensor:
        return torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)


def make_batch(frames: Tensor, text: str = TEXTS[0]) -> "ClipBatch":
    """A training batch of `frames` [B,T,3,H,W] (on their device): one box-shaped object per clip, valid
    in every frame, no padding."""
    from vdit.data.types import ClipBatch

    b, t, _, h, w = frames.shape
    device = frames.device
    masks = torch.zeros(b, t, h, w)
    masks[:, :, h // 4: h // 2, w // 3: w // 2] = 1
    boxes = torch.tensor([(w // 3 + w // 2) / 2 / w, (h // 4 + h // 2) / 2 / h, (w // 2 - w // 3) / w,
                          (h // 2 - h // 4) / h]).expand(b, t, 4).clone()
    sizes = torch.tensor([[h, w]] * b).to(device)
    return ClipBatch(frames=frames, pad_mask=torch.zeros(b, t, h, w, dtype=torch.bool).to(device),
                     masks=masks.to(device), boxes=boxes.to(device),
                     valid=torch.ones(b, t, dtype=torch.bool).to(device), sizes=sizes, orig_sizes=sizes,
                     texts=[text] * b)


def meta_training_step(model: nn.Module) -> "TrainingWrapper":
    """The training step of `model` with FixedMatcher (meta tensors hold no values to match on)."""
    from vdit.losses import build_criterion
    from vdit.training import TrainingWrapper

    return TrainingWrapper(model, FixedMatcher(), build_criterion(model.cfg.loss, model.cfg.head.dec_layers))
