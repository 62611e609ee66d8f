"""FLOPs of VD-IT's components and of a training step, counted on the meta device
(`torch.utils.flop_counter.FlopCounterMode`: exact shapes, no weights, no compute)."""
from __future__ import annotations

from typing import Any, Callable

import torch

from vdit.profiling.accounting import meta_accounting
from vdit.profiling.random_model import TEXTS, build_model, make_batch, meta_training_step


def count_inference_flops(preset: str, frames: int, size: tuple[int, int]) -> dict[str, float]:
    """FLOPs of one clip of `frames` frames at `size`, per component, on the meta device.

    Returns totals per clip: vae_encoder, clip_vision, unet (stock forward, tail included),
    unet_no_tail (our taps), t2v_text and roberta (one sentence), rest (prompt projection, noise,
    level projections and the DETR head, one sentence), and per_sentence_ours = unet_no_tail + rest
    + text encoders (what each extra sentence costs when the visual work is shared)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vdit.models.backbone.unet_features import unet_taps

    model = build_model(preset, "meta").eval()
    bb = model.backbone
    h, w = size
    text = [TEXTS[0]]
    out: dict[str, float] = {}

    def count(name: str, fn: Callable[[], Any]) -> Any:
        with FlopCounterMode(display=False) as counter:
            result = fn()
        out[name] = float(counter.get_total_flops())
        return result

    # Grad mode stays on (free on meta): FlopCounterMode's module tracker fails on no-grad views of
    # parameters (the instance queries' expand).
    with meta_accounting(count_flops=False):
        x = torch.zeros(1, frames, 3, h, w, device="meta")
        image = bb.clip_image.crop_height, bb.clip_image.crop_width
        count("clip_vision", lambda: bb.clip_vision(pixel_values=torch.zeros(frames, 3, *image, device="meta")))
        count("vae_encoder", lambda: bb.vae.encode(torch.zeros(frames, 3, h, w, device="meta")))
        vis = bb.encode_visual(x)
        prompt = count("t2v_text", lambda: bb.encode_prompt_text(text))
        count("roberta", lambda: model.text_encoder(text, torch.device("meta")))
        z = vis.latent_mean
        count("unet", lambda: bb.unet(z, bb.timestep, encoder_hidden_states=prompt))
        count("unet_no_tail", lambda: unet_taps(bb.unet, z, bb.timestep, prompt.repeat_interleave(frames, dim=0)))
        count("model_with_visual", lambda: model.predict(x, text, visual=vis))
    out["rest"] = out.pop("model_with_visual") - out["unet_no_tail"] - out["t2v_text"] - out["roberta"]
    out["per_sentence_ours"] = out["unet_no_tail"] + out["rest"] + out["t2v_text"] + out["roberta"]
    out["visual"] = out["vae_encoder"] + out["clip_vision"]
    out["official_per_sentence"] = out["visual"] + out["unet"] + out["rest"] + out["t2v_text"] + out["roberta"]
    del model
    return out


def count_training_flops(preset: str, frames: int, size: tuple[int, int], grad_ckpt: bool) -> float:
    """FLOPs of one training step (forward with matching, loss, backward) on the meta device."""
    model = build_model(preset, "meta", grad_ckpt=grad_ckpt).train()
    step = meta_training_step(model)
    h, w = size
    with meta_accounting(count_flops=True) as acc:
        step(make_batch(torch.zeros(1, frames, 3, h, w, device="meta")))["loss"].backward()
    return float(acc.flops.get_total_flops())


_FLOP_CACHE: dict[tuple, Any] = {}


def inference_flops(preset: str, frames: int, size: tuple[int, int]) -> dict[str, float]:
    """`count_inference_flops` in TFLOP, per clip and per frame (cached per setting)."""
    key = ("infer", preset, frames, tuple(size))
    if key not in _FLOP_CACHE:
        f = count_inference_flops(preset, frames, tuple(size))
        _FLOP_CACHE[key] = {"clip": {k: v / 1e12 for k, v in f.items()},
                            "per_frame": {k: v / frames / 1e12 for k, v in f.items()}}
    return _FLOP_CACHE[key]


def training_flops(preset: str, frames: int, size: tuple[int, int], grad_ckpt: bool) -> float:
    """`count_training_flops` in TFLOP (cached per setting)."""
    key = ("train", preset, frames, tuple(size), grad_ckpt)
    if key not in _FLOP_CACHE:
        _FLOP_CACHE[key] = count_training_flops(preset, frames, tuple(size), grad_ckpt) / 1e12
    return _FLOP_CACHE[key]
