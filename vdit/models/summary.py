"""Parameter accounting of a VD-IT network per component (used by `vdit model-info`)."""
from __future__ import annotations

from typing import Any

from torch import nn

# component name -> attribute path(s) inside VDIT. Frozen foundation models first, then trainable parts.
COMPONENTS: dict[str, tuple[str, ...]] = {
    "unet": ("backbone.unet",),
    "vae": ("backbone.vae",),
    "t2v_text_encoder": ("backbone.t2v_text_encoder",),
    "clip_vision": ("backbone.clip_vision",),
    "text_encoder": ("text_encoder",),
    "image_projection": ("backbone.prompt.projection",),
    "prompt_fusion": ("backbone.prompt.cross_attn",),
    "noise": ("backbone.noise",),
    "level_projections": ("backbone.level_projections",),
    "text_proj": ("text_proj",),
    "queries": ("queries", "query_embed"),
    "input_proj": ("input_proj",),
    "transformer": ("transformer",),
    "class_embed": ("class_embed",),
    "bbox_embed": ("bbox_embed",),
    "mask_head": ("mask_head",),
    "mask_optimiser": ("mask_optimiser",),
}


def _get(model: nn.Module, path: str) -> nn.Module | None:
    obj: Any = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def parameter_summary(model: nn.Module) -> dict[str, Any]:
    """{'trainable_total', 'frozen_total', 'components': {name: {trainable, frozen}}, 'levels': [...]}.

    Each parameter is counted once, in the first component that holds it (the box MLPs are shared with
    the decoder for box refinement and counted under bbox_embed, not transformer)."""
    seen: set[int] = set()
    components: dict[str, dict[str, int]] = {}
    for name, paths in reversed(list(COMPONENTS.items())):  # specific parts before their containers
        trainable = frozen = 0
        for path in paths:
            module = _get(model, path)
            if module is None:
                continue
            params = [module] if isinstance(module, nn.Parameter) else module.parameters()
            for p in params:
                if id(p) in seen:
                    continue
                seen.add(id(p))
                if p.requires_grad:
                    trainable += p.numel()
                else:
                    frozen += p.numel()
        components[name] = {"trainable": trainable, "frozen": frozen}
    rest_t = rest_f = 0
    for p in model.parameters():
        if id(p) not in seen:
            if p.requires_grad:
                rest_t += p.numel()
            else:
                rest_f += p.numel()
    ordered = {k: components[k] for k in COMPONENTS}
    if rest_t or rest_f:
        ordered["other"] = {"trainable": rest_t, "frozen": rest_f}
    return {
        "trainable_total": sum(c["trainable"] for c in ordered.values()),
        "frozen_total": sum(c["frozen"] for c in ordered.values()),
        "components": ordered,
    }
