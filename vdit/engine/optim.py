"""Optimiser, parameter groups and LR schedule (spec 5.1).

AdamW (default betas, weight decay 5e-4 on every trainable parameter) over parameter groups split by
component; MultiStepLR x gamma at the `lr_drops` epochs, stepped once per epoch. The official code has
four name-matched groups, three of which end up at `lr` (its `lr_backbone` group is commented out and its
`lr_linear_proj_mult` is 1.0): only two remain distinct here, the head's text encoder (RoBERTa, when it
is trained) at `lr_text_encoder` and everything else at `lr`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import MultiStepLR

from vdit.config import TrainConfig
from vdit.errors import ConfigError

TEXT_ENCODER_PREFIX = "text_encoder."  # the head's RoBERTa: text_encoder.text_backbone.*
GROUP_DEFAULT = "default"
GROUP_TEXT_ENCODER = "text_encoder"


def set_text_encoder_trainable(model: nn.Module, trainable: bool) -> int:
    """Switch the head's text encoder weights to trainable (or back to frozen); returns their count.
    Empties the encoder's per-sentence feature cache, if any: its weights may change from here on."""
    cache = getattr(getattr(model, "text_encoder", None), "feature_cache", None)
    if cache is not None:
        cache.clear()
    count = 0
    for name, param in model.named_parameters():
        if name.startswith(TEXT_ENCODER_PREFIX):
            param.requires_grad_(trainable)
            count += param.numel()
    if trainable and count == 0:
        raise ConfigError("train.train_text_encoder=true but the model has no text_encoder.* parameters")
    return count


def lr_scale(train: TrainConfig, world_size: int) -> float:
    """Factor applied to the configured learning rates ("linear": global batch / reference batch)."""
    if train.lr_scaling == "none":
        return 1.0
    global_batch = train.batch_size * world_size * train.grad_accum
    return global_batch / train.lr_reference_batch


def component_of(name: str) -> str:
    """The parameter group a (trainable) parameter belongs to."""
    return GROUP_TEXT_ENCODER if name.startswith(TEXT_ENCODER_PREFIX) else GROUP_DEFAULT


def param_groups(model: nn.Module, train: TrainConfig, scale: float = 1.0) -> list[dict]:
    """Non-empty groups of trainable parameters, each with its component name and parameter names."""
    lrs = {GROUP_DEFAULT: train.lr * scale, GROUP_TEXT_ENCODER: train.lr_text_encoder * scale}
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        comp = component_of(name)
        group = groups.setdefault(comp, {"params": [], "param_names": [], "lr": lrs[comp], "component": comp})
        group["params"].append(param)
        group["param_names"].append(name)
    if not groups:
        raise ConfigError("the model has no trainable parameter")
    return [groups[c] for c in (GROUP_DEFAULT, GROUP_TEXT_ENCODER) if c in groups]


def build_optimizer(model: nn.Module, train: TrainConfig, scale: float = 1.0,
                    device: torch.device | str | None = None) -> AdamW:
    """AdamW over `param_groups` with the configured weight decay (default betas and eps). On CUDA the
    fused kernel (`fused=True`: one launch for every parameter instead of a few per tensor group; the
    same update up to float rounding); elsewhere torch's default implementation."""
    fused = {"fused": True} if device is not None and torch.device(device).type == "cuda" else {}
    return AdamW(param_groups(model, train, scale), lr=train.lr * scale, weight_decay=train.weight_decay, **fused)


def build_scheduler(optimizer: Optimizer, train: TrainConfig) -> MultiStepLR:
    """x gamma at each epoch of `lr_drops`; the trainer steps it once per finished epoch."""
    return MultiStepLR(optimizer, milestones=list(train.lr_drops), gamma=train.gamma)


def group_lrs(optimizer: Optimizer) -> dict[str, float]:
    """Current lr per component, for logging."""
    return {str(g.get("component", i)): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
