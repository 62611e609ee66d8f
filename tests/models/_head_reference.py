"""Independent references for the VD-IT segmentation head, restated from the spec (section 3) and the official
code's tensor layouts with plain `torch.nn.functional` calls. Nothing here calls the vdit code under test;
parameters are passed in as plain tensors.

Shared by tests/models/test_reference_head.py and tests/convert/test_official_converter.py (which loads this
file by path, since the test folders are not packages).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MASK_FEAT_STRIDE = 8  # spec 3.6: the coordinate grid is the s8 grid
MASK_OUT_STRIDE = 4  # spec 3.6: pixel_shuffle(., 4) turns 16 channels at s8 into 1 channel at s2
COORD_CHANNELS = 2
INVERSE_SIGMOID_EPS = 1e-5  # spec 3.4

Linear = tuple[Tensor, Tensor]  # (weight [out, in], bias [out])


def mlp(x: Tensor, layers: list[Linear]) -> Tensor:
    """DETR's MLP (spec 3.5 box head, spec 3.6 controller): Linear layers, ReLU between them, none after the last."""
    for i, (weight, bias) in enumerate(layers):
        x = F.linear(x, weight, bias)
        if i < len(layers) - 1:
            x = F.relu(x)
    return x


def inverse_sigmoid(x: Tensor, eps: float = INVERSE_SIGMOID_EPS) -> Tensor:
    """Spec 3.4: logit with x clamped to [0, 1] and both x and 1 - x floored at eps."""
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def refine_box(delta: Tensor, reference: Tensor) -> Tensor:
    """Spec 3.4/3.5: sigmoid(delta + inverse_sigmoid(ref)); a 2-d reference offsets only (cx, cy) and
    (w, h) are the raw head output."""
    if reference.shape[-1] == 4:
        return torch.sigmoid(delta + inverse_sigmoid(reference))
    centre = delta[..., :2] + inverse_sigmoid(reference)
    return torch.sigmoid(torch.cat([centre, delta[..., 2:]], dim=-1))


def text_gated_queries(q0: Tensor, words: Tensor, word_pos: Tensor, word_pad: Tensor, in_proj_weight: Tensor,
                       in_proj_bias: Tensor, out_proj: Linear, nheads: int) -> Tensor:
    """Spec 3.2: a = MHA(query=q0, key=word+pos, value=word, key_padding_mask=pad); q = q0 * a.

    q0 [Q,C]; words, word_pos [L,B,C] (sequence first, as the official fusion module); word_pad [B,L]
    (True = pad). The attention is written out: in_proj split into Wq/Wk/Wv, heads as consecutive blocks
    of C/nheads channels, softmax with -inf at the pads, out_proj. Returns [Q,B,C].
    """
    n_q, c = q0.shape
    length, b, _ = words.shape
    d = c // nheads
    wq, wk, wv = in_proj_weight.split(c, dim=0)
    bq, bk, bv = in_proj_bias.split(c, dim=0)
    query = q0[:, None, :].expand(n_q, b, c)
    qh = F.linear(query, wq, bq).reshape(n_q, b, nheads, d).permute(1, 2, 0, 3)  # [B,H,Q,d]
    kh = F.linear(words + word_pos, wk, bk).reshape(length, b, nheads, d).permute(1, 2, 0, 3)  # [B,H,L,d]
    vh = F.linear(words, wv, bv).reshape(length, b, nheads, d).permute(1, 2, 0, 3)
    scores = qh @ kh.transpose(-1, -2) / math.sqrt(d)  # [B,H,Q,L]
    scores = scores.masked_fill(word_pad[:, None, None, :], float("-inf"))
    attended = scores.softmax(dim=-1) @ vh  # [B,H,Q,d]
    attended = attended.permute(2, 0, 1, 3).reshape(n_q, b, c)
    a = F.linear(attended, *out_proj)
    return query * a  # a multiplicative gate: no residual, no norm


def mask_features(memory_levels: list[Tensor]) -> Tensor:
    """Spec 3.6 first bullet: every memory level (s8, s16, s32) bicubically resized to the s8 size, summed."""
    size = memory_levels[0].shape[-2:]
    out = torch.zeros_like(memory_levels[0])
    for level in memory_levels:
        out = out + F.interpolate(level, size=size, mode="bicubic", align_corners=False)
    return out


def relative_coords(centers: Tensor, sizes_hw: Tensor, h: int, w: int, stride: int = MASK_FEAT_STRIDE,
                    offset: int | None = None) -> Tensor:
    """Spec 3.6: box centre * (w, h) of the unpadded input minus the grid location (x*s + s/2, y*s + s/2), in
    raw pixels. centers [N,Q,2] (cx, cy), sizes_hw [N,2] (h, w) -> [N,Q,2,h,w], channel 0 = x, 1 = y.
    `offset` replaces s/2 (negative controls only)."""
    offset = stride // 2 if offset is None else offset
    n, q, _ = centers.shape
    out = centers.new_zeros(n, q, COORD_CHANNELS, h, w)
    for i in range(n):
        img_h, img_w = float(sizes_hw[i, 0]), float(sizes_hw[i, 1])
        for j in range(q):
            cx = centers[i, j, 0] * img_w
            cy = centers[i, j, 1] * img_h
            for y in range(h):
                out[i, j, 1, y, :] = cy - (y * stride + offset)
            for x in range(w):
                out[i, j, 0, :, x] = cx - (x * stride + offset)
    return out


def dynamic_conv(params: Tensor, feats: Tensor, coords: Tensor | None, mask_channels: int,
                 coords_first: bool = False) -> Tensor:
    """Spec 3.6, the official CondInst-style dynamic convolution: params [N,Q,P] from the controller,
    feats [N,C,h,w], coords [N,Q,2,h,w] (or None without rel_coord) -> [N,Q,c,h,w].

    P splits into layer-0 weights [c, C+2], layer-1 weights [c, c], then the two biases. Every (frame, query)
    instance is one group of a single grouped conv over the input cat([feats, coords]) (features first).
    `coords_first` builds the input in the wrong order cat([coords, feats]) (a negative control only).
    """
    n, q, p = params.shape
    c_feat, h, w = feats.shape[1:]
    c = mask_channels
    per_instance = feats[:, None].expand(n, q, c_feat, h, w)
    if coords is None:
        x = per_instance
    else:
        x = torch.cat([coords, per_instance] if coords_first else [per_instance, coords], dim=2)
    cin = x.shape[2]
    sizes = [cin * c, c * c, c, c]
    assert p == sum(sizes), (p, sizes)
    groups = n * q
    w0, w1, b0, b1 = params.reshape(groups, p).split(sizes, dim=1)
    x = x.reshape(1, groups * cin, h, w)
    x = F.relu(F.conv2d(x, w0.reshape(groups * c, cin, 1, 1), b0.reshape(-1), groups=groups))
    x = F.conv2d(x, w1.reshape(groups * c, c, 1, 1), b1.reshape(-1), groups=groups)
    return x.reshape(n, q, c, h, w)


def dynamic_masks(hs: Tensor, controller: list[Linear], feats: Tensor, centers: Tensor, sizes_hw: Tensor,
                  mask_channels: int, rel_coord: bool = True) -> Tensor:
    """Spec 3.6 for one decoder layer: hs [N,Q,C] -> 16-channel s8 mask logits [N,Q,c,h8,w8]."""
    h, w = feats.shape[-2:]
    coords = relative_coords(centers, sizes_hw, h, w) if rel_coord else None
    return dynamic_conv(mlp(hs, controller), feats, coords, mask_channels)


def low_res_masks(dyn: Tensor) -> Tensor:
    """Spec 3.6: M_o = pixel_shuffle(., 4): [..., 16, h8, w8] (s8) -> [..., 4*h8, 4*w8], one channel at s2."""
    lead = dyn.shape[:-3]
    out = F.pixel_shuffle(dyn.reshape(-1, *dyn.shape[-3:]), MASK_OUT_STRIDE)
    return out.reshape(*lead, *out.shape[-2:])


def mso(m: Tensor, level1: Tensor, level0: Tensor, convs: dict[str, Linear]) -> Tensor:
    """Spec 3.7: two residual conv stages with cat[m, L1] at s8 and cat[m, L0] at s4, a bilinear upsample
    (align_corners False) between them, then pixel_shuffle 4 to one channel at s1. `convs` maps the official
    names conv1_1div8, conv2_1div8, conv1_1div4, conv2_1div4 to (weight, bias)."""
    x = F.conv2d(F.relu(torch.cat([m, level1], dim=1)), *convs["conv1_1div8"], padding=1)
    m = m + F.conv2d(F.relu(x), *convs["conv2_1div8"], padding=1)
    m = F.interpolate(m, size=level0.shape[-2:], mode="bilinear", align_corners=False)
    x = F.conv2d(F.relu(torch.cat([m, level0], dim=1)), *convs["conv1_1div4"], padding=1)
    m = m + F.conv2d(F.relu(x), *convs["conv2_1div4"], padding=1)
    return F.pixel_shuffle(m, MASK_OUT_STRIDE)


MSO_CONVS = ("conv1_1div8", "conv2_1div8", "conv1_1div4", "conv2_1div4")


def best_query(logits: Tensor) -> Tensor:
    """Spec 3.8 (Ref-YouTube-VOS eval): logits [B,T,Q,K] -> per clip argmax_q max_k mean_T sigmoid."""
    return logits.sigmoid().mean(dim=1).max(dim=-1).values.argmax(dim=-1)
