"""Intermediate features of a stock diffusers UNet3DConditionModel (spec 2.7).

The stock `forward` cannot be used as is: it repeats `encoder_hidden_states` once per frame, while
VD-IT conditions every frame on its *own* prompt (text enriched with that frame's image tokens). So
this is a short forward over the stock sub-modules (conv_in, time_proj, time_embedding, transformer_in,
down_blocks, mid_block, up_blocks[0:3]) that keeps per-frame prompts, returns the six taps and skips
what VD-IT never uses (up_blocks[3], conv_norm_out, conv_out). Each block can run under activation
checkpointing (numerically identical: dropout RNG state is replayed).

At T = 1 this runs the stock layers, temporal ones included (the official fork skips them except the
mid block's first temporal conv); see docs/model.md.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint

# Diffusers versions whose UNet3D block signatures this forward was written and tested against.
TESTED_DIFFUSERS = (">=0.42", "<0.43")


def _run(fn: Callable, use_ckpt: bool, *args, **kwargs):
    if use_ckpt and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False, **kwargs)
    return fn(*args, **kwargs)


def unet_taps(
    unet,
    sample: torch.Tensor,
    timestep: int,
    encoder_hidden_states: torch.Tensor,
    grad_ckpt: bool = False,
) -> list[torch.Tensor]:
    """sample [B,C,T,h,w] (noisy latents), per-frame prompts [B*T, L, D] (batch-major: b0f0, b0f1, ...).

    Returns [U0, U1, U2, U3, U4, U5], each [B*T, C_i, h_i, w_i]:
    U0 transformer_in output (s8), U1/U2 down_blocks[0]/[1] outputs after their downsamplers (s16/s32),
    U3/U4/U5 up_blocks[0]/[1]/[2] outputs after their upsamplers (s32/s16/s8).
    """
    b, _, t, h, w = sample.shape
    if encoder_hidden_states.shape[0] != b * t:
        raise ValueError(f"per-frame prompts: expected {b * t} rows (B*T), got {encoder_hidden_states.shape[0]}")
    timesteps = torch.full((b,), timestep, device=sample.device, dtype=torch.long)
    emb = unet.time_embedding(unet.time_proj(timesteps).to(dtype=unet.dtype))
    emb = emb.repeat_interleave(t, dim=0)

    x = sample.permute(0, 2, 1, 3, 4).reshape(b * t, -1, h, w)
    x = unet.conv_in(x)
    x = _run(lambda s: unet.transformer_in(s, num_frames=t, return_dict=False)[0], grad_ckpt, x)
    u0 = x
    res: tuple[torch.Tensor, ...] = (x,)
    down_outputs = []
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            fn = lambda s, e, blk=block: blk(hidden_states=s, temb=e, encoder_hidden_states=encoder_hidden_states,
                                              num_frames=t)
        else:
            fn = lambda s, e, blk=block: blk(hidden_states=s, temb=e, num_frames=t)
        x, block_res = _run(fn, grad_ckpt, x, emb)
        res += tuple(block_res)
        down_outputs.append(x)
    u1, u2 = down_outputs[0], down_outputs[1]

    if unet.mid_block is not None:
        x = _run(lambda s, e: unet.mid_block(s, e, encoder_hidden_states=encoder_hidden_states, num_frames=t),
                 grad_ckpt, x, emb)

    ups = []
    for block in unet.up_blocks[:3]:
        n = len(block.resnets)
        skips, res = res[-n:], res[:-n]
        # Always upsample to the next skip's size: sizes that are not multiples of 64 then line up
        # exactly (stock diffusers does the same whenever the size is not a multiple of 2^#upsamplers).
        size = res[-1].shape[2:]
        if getattr(block, "has_cross_attention", False):
            fn = lambda s, e, *sk, blk=block, size=size: blk(
                hidden_states=s, temb=e, res_hidden_states_tuple=sk, encoder_hidden_states=encoder_hidden_states,
                upsample_size=size, num_frames=t)
        else:
            fn = lambda s, e, *sk, blk=block, size=size: blk(
                hidden_states=s, temb=e, res_hidden_states_tuple=sk, upsample_size=size, num_frames=t)
        x = _run(fn, grad_ckpt, x, emb, *skips)
        ups.append(x)
    u3, u4, u5 = ups
    return [u0, u1, u2, u3, u4, u5]
