"""The segmentation head against independent references restated from the spec (section 3).

Each reference (tests/models/_head_reference.py) is written from the spec's equations and the official
tensor layouts with plain nn.functional calls: the hand-written text-gate attention (3.2), the official
grouped dynamic convolution over cat([feats, coords]) (3.6), MSO (3.7) and the box refinement (3.4/3.5).
All weights are random and non-zero (zero-initialised ones are re-drawn), so a swapped channel order, a
transposed grid or a misplaced offset shows. The whole head path of the tiny VDIT is then recomputed from
the captured backbone levels and transformer outputs and compared with `model.predict(frames, texts)`.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _head_reference import (MSO_CONVS, best_query, dynamic_conv, dynamic_masks, inverse_sigmoid, low_res_masks,
                             mask_features, mlp, mso, refine_box, relative_coords, text_gated_queries)
from torch import nn

from vdit.config import tiny_config
from vdit.models.head.dynamic_mask import DynamicMaskHead
from vdit.models.head.dynamic_mask import mask_features as vdit_mask_features
from vdit.models.head.mask_optimiser import MaskOptimiser
from vdit.models.head.queries import TextInstanceQueries
from vdit.models.vdit import VDIT

TOL = dict(atol=1e-5, rtol=1e-5)


def _redraw(module: nn.Module, std: float, seed: int) -> None:
    """Every parameter random (default zero inits such as MHA biases or controller biases included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


def _linears(mlp_module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.weight, layer.bias) for layer in mlp_module.layers]


# ------------------------------------------------------------------------------------------ 3.2 queries


def test_text_instance_queries_are_the_written_out_attention_gate():
    torch.manual_seed(0)
    n_q, c, heads, length = 5, 16, 4, 7
    module = TextInstanceQueries(n_q, c, heads).double().eval()
    _redraw(module, 0.3, seed=1)
    lengths = torch.tensor([4, 7, 2])
    words = torch.randn(3, length, c, dtype=torch.float64)
    pos = torch.randn(3, length, c, dtype=torch.float64)
    pad = torch.arange(length)[None] >= lengths[:, None]
    mha = module.fusion_module.multihead_attn
    with torch.no_grad():
        out = module(words, pad, pos)  # [B,Q,C]
        ref = text_gated_queries(module.query_tensors, words.transpose(0, 1), pos.transpose(0, 1), pad,
                                 mha.in_proj_weight, mha.in_proj_bias, (mha.out_proj.weight, mha.out_proj.bias),
                                 heads)
        torch.testing.assert_close(out, ref.transpose(0, 1), **TOL)
        # Padding in the batch must not change a sentence's queries: each sentence alone, unpadded, and
        # with different garbage at its pads.
        for i, n in enumerate(lengths.tolist()):
            alone = module(words[i:i + 1, :n], pad[i:i + 1, :n], pos[i:i + 1, :n])
            torch.testing.assert_close(out[i:i + 1], alone, **TOL)
        noisy = torch.where(pad[..., None], torch.randn_like(words) * 5, words)
        torch.testing.assert_close(module(noisy, pad, pos), out, **TOL)


# ------------------------------------------------------------------------------------------ 3.6 mask head


def _mask_head_case():
    """A non-square s8 grid (h=5, w=7) over a 40x56 padded input whose samples are smaller (partly padded)."""
    torch.manual_seed(2)
    c_feat, n, n_q, h, w = 12, 2, 3, 5, 7
    head = DynamicMaskHead(c_feat, 16, rel_coord=True, feat_stride=8).double().eval()
    _redraw(head, 0.15, seed=3)  # the controller's zero biases re-drawn too
    queries = torch.randn(n, n_q, c_feat, dtype=torch.float64)
    feats = torch.randn(n, c_feat, h, w, dtype=torch.float64)
    centers = torch.rand(n, n_q, 2, dtype=torch.float64) * 0.8 + 0.1
    sizes_hw = torch.tensor([[33, 50], [40, 37]])
    return head, queries, feats, centers, sizes_hw


def test_relative_coords_reference_convention():
    """The reference itself, on numbers worked by hand (spec 3.6): (cx*w - (x*8+4), cy*h - (y*8+4))."""
    centers = torch.tensor([[[0.5, 0.25]]], dtype=torch.float64)
    coords = relative_coords(centers, torch.tensor([[40, 100]]), h=2, w=3)
    # cx*w = 50, cy*h = 10; grid x = 4, 12, 20; grid y = 4, 12
    torch.testing.assert_close(coords[0, 0, 0], torch.tensor([[46.0, 38, 30], [46, 38, 30]], dtype=torch.float64))
    torch.testing.assert_close(coords[0, 0, 1], torch.tensor([[6.0, 6, 6], [-2, -2, -2]], dtype=torch.float64))


def test_dynamic_mask_head_is_the_official_grouped_conv_over_feats_then_coords():
    head, queries, feats, centers, sizes_hw = _mask_head_case()
    controller = _linears(head.controller)
    with torch.no_grad():
        out = head(queries, feats, centers, sizes_hw)
        ref = dynamic_masks(queries, controller, feats, centers, sizes_hw, 16)
        torch.testing.assert_close(out, ref, **TOL)
        # The setup pins every convention: each wrong one is far from the head's output.
        params = mlp(queries, controller)
        h, w = feats.shape[-2:]
        coords = relative_coords(centers, sizes_hw, h, w)
        wrong = {
            "coords first": dynamic_conv(params, feats, coords, 16, coords_first=True),
            "(h, w) scale x": dynamic_masks(queries, controller, feats, centers, sizes_hw.flip(-1), 16),
            "x, y swapped": dynamic_masks(queries, controller, feats, centers.flip(-1), sizes_hw, 16),
            "no +4 offset": dynamic_conv(params, feats, relative_coords(centers, sizes_hw, h, w, offset=0), 16),
            "padded size": dynamic_masks(queries, controller, feats, centers, torch.tensor([[40, 56]] * 2), 16),
        }
        for name, value in wrong.items():
            assert (value - out).abs().max() > 1e-2, name


@pytest.mark.parametrize("resize", ["auto", "interpolate", "matmul"])
def test_mask_features_are_bicubic_resized_memory_summed(resize):
    torch.manual_seed(4)
    memory = [torch.randn(2, 6, 5, 7, dtype=torch.float64), torch.randn(2, 6, 3, 4, dtype=torch.float64),
              torch.randn(2, 6, 2, 2, dtype=torch.float64)]
    torch.testing.assert_close(vdit_mask_features(memory, resize), mask_features(memory), **TOL)
    # the memory's real shape ratios (s8 46x80 from s16 23x40 and s32 12x20), float32 as in the model
    memory = [torch.randn(3, 4, 46, 80), torch.randn(3, 4, 23, 40), torch.randn(3, 4, 12, 20)]
    torch.testing.assert_close(vdit_mask_features(memory, resize), mask_features(memory), **TOL)


# ------------------------------------------------------------------------------------------ 3.7 MSO


def test_mso_matches_the_written_out_two_stage_refinement():
    torch.manual_seed(5)
    module = MaskOptimiser(16, 12, 8, 4).double().eval()
    _redraw(module, 0.1, seed=6)
    m = torch.randn(2, 16, 3, 5, dtype=torch.float64)
    level1 = torch.randn(2, 12, 3, 5, dtype=torch.float64)
    level0 = torch.randn(2, 8, 6, 10, dtype=torch.float64)
    convs = {name: (getattr(module, name).weight, getattr(module, name).bias) for name in MSO_CONVS}
    with torch.no_grad():
        out = module(m.clone(), level1, level0)
        ref = mso(m.clone(), level1, level0, convs)
    assert out.shape == (2, 1, 24, 40)
    torch.testing.assert_close(out, ref, **TOL)


# ------------------------------------------------------------------------------------------ whole model


@pytest.fixture(scope="module")
def model(tiny_root) -> VDIT:
    """The tiny VD-IT with every trainable head parameter random and non-zero (box last layers, sampling
    offsets, attention weights, controller biases, GroupNorm affine included)."""
    torch.manual_seed(0)
    m = VDIT.from_config(tiny_config(tiny_root)).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in m.trainable_named_parameters().items():
            if not name.startswith("backbone."):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return m


def _inputs():
    """Two clips of two frames, 72x100 (padded inside the model to 80x112: an s8 grid of 10x14); the second
    clip is only 60x85 valid, so its unpadded size differs from the padded one and from clip 0's."""
    torch.manual_seed(11)
    b, t, h, w = 2, 2, 72, 100
    frames = torch.randn(b, t, 3, h, w)
    sizes = torch.tensor([[72, 100], [60, 85]])
    pad = torch.ones(b, t, h, w, dtype=torch.bool)
    for i, (vh, vw) in enumerate(sizes.tolist()):
        pad[i, :, :vh, :vw] = False
    return frames, pad, sizes, ["the red circle moving left", "a small square"]


class _Capture:
    """Forward hooks that keep a module's inputs and outputs."""

    def __init__(self, model: VDIT):
        self.seen: dict[str, object] = {}
        self.handles = []
        targets = {"backbone": model.backbone, "text_encoder": model.text_encoder, "text_proj": model.text_proj,
                   "text_pos": model.text_pos, "transformer": model.transformer}
        for name, module in targets.items():
            self.handles.append(module.register_forward_hook(self._hook(name)))
        for i, layer in enumerate(model.transformer.decoder.layers):
            self.handles.append(layer.register_forward_pre_hook(self._pre(f"dec{i}")))

    def _hook(self, name):
        def hook(module, args, output):
            self.seen[name] = output
            self.seen[name + ".args"] = args
        return hook

    def _pre(self, name):
        def hook(module, args):
            self.seen[name + ".args"] = args
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _valid_ratios(mask: torch.Tensor) -> torch.Tensor:
    """Deformable DETR's get_valid_ratio: [N,h,w] padding mask -> [N,2] (valid_w / w, valid_h / h)."""
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).float()
    valid_w = (~mask[:, 0, :]).sum(1).float()
    return torch.stack([valid_w / w, valid_h / h], dim=-1)


@pytest.mark.parametrize("saturated", [False, True], ids=["plain", "cy_saturated"])
def test_box_refinement_and_class_heads_per_decoder_layer(model, saturated):
    """Spec 3.4/3.5: box_l = sigmoid(bbox_embed[l](hs_l) + inverse_sigmoid(ref_l)), ref_0 = init_reference
    (only cx, cy offset), ref_l = inter_references[l-1]; the decoder refines its reference the same way,
    detached, and feeds layer l+1 with it scaled by the valid ratios.

    `cy_saturated` pushes layer 0's cy to exactly 1.0 in fp32, so layer 1 reads inverse_sigmoid(1) =
    log(1 / eps): the clamp and its eps = 1e-5 are pinned too."""
    last_bias = model.bbox_embed[0].layers[-1].bias
    kept = last_bias.detach().clone()
    if saturated:
        with torch.no_grad():
            last_bias[1] += 40.0
    try:
        _check_box_refinement(model, saturated)
    finally:
        with torch.no_grad():
            last_bias.copy_(kept)


def _check_box_refinement(model: VDIT, saturated: bool) -> None:
    frames, pad, sizes, texts = _inputs()
    b, t = frames.shape[:2]
    cap = _Capture(model)
    try:
        head = model(frames, texts, pad_mask=pad, sizes=sizes)  # eval mode: no dropout
    finally:
        cap.close()
    hs, init_ref, inter_refs, _ = cap.seen["transformer"]
    srcs, level_pad = cap.seen["transformer.args"][:2]
    assert init_ref.shape[-1] == 2 and inter_refs.shape[-1] == 4
    assert hs.requires_grad and not inter_refs.requires_grad  # the references are detached
    assert bool((inter_refs[0][..., 1] == 1.0).all()) == saturated
    query_pos = model.query_embed.weight
    rp = model.transformer.reference_points
    with torch.no_grad():
        torch.testing.assert_close(init_ref, torch.sigmoid(F.linear(query_pos, rp.weight, rp.bias)).expand_as(init_ref),
                                   **TOL)
        ratios = torch.stack([_valid_ratios(m) for m in level_pad], dim=1)  # [N, L, 2]
        assert (ratios < 1).any()  # clip 1 is partly padded, so the scaling is exercised
        for lvl in range(hs.shape[0]):
            ref = init_ref if lvl == 0 else inter_refs[lvl - 1]
            # what decoder layer lvl sampled around: its reference scaled by the valid ratios
            scale = ratios if ref.shape[-1] == 2 else torch.cat([ratios, ratios], dim=-1)
            torch.testing.assert_close(cap.seen[f"dec{lvl}.args"][2], ref[:, :, None] * scale[:, None], **TOL)
            box = refine_box(mlp(hs[lvl], _linears(model.bbox_embed[lvl])), ref)
            torch.testing.assert_close(inter_refs[lvl], box, **TOL)  # the decoder's own refinement
            logits = F.linear(hs[lvl], model.class_embed[lvl].weight, model.class_embed[lvl].bias)
            q = logits.shape[1]
            torch.testing.assert_close(head.layers[lvl].pred_boxes, box.reshape(b, t, q, 4), **TOL)
            torch.testing.assert_close(head.layers[lvl].pred_logits, logits.reshape(b, t, q, 1), **TOL)
        # ref_0 is 2-d: w, h of box_0 are the raw head output, only the centre gets the offset
        delta = mlp(hs[0], _linears(model.bbox_embed[0]))
        torch.testing.assert_close(inter_refs[0][..., 2:], delta[..., 2:].sigmoid(), **TOL)
        torch.testing.assert_close(inter_refs[0][..., :2], (delta[..., :2] + inverse_sigmoid(init_ref)).sigmoid(),
                                   **TOL)


def _input_projection(model: VDIT, levels: list[torch.Tensor]) -> list[torch.Tensor]:
    """Spec 3.3: Conv1x1 + GN on L1..L3, and Conv3x3 stride 2 pad 1 + GN on the raw L3 for the s64 level."""
    out = []
    for i, proj in enumerate(model.input_proj):
        conv, gn = proj[0], proj[1]
        src = levels[i + 1] if i < 3 else levels[3]
        x = F.conv2d(src, conv.weight, conv.bias, stride=2 if i == 3 else 1, padding=1 if i == 3 else 0)
        out.append(F.group_norm(x, gn.num_groups, gn.weight, gn.bias, gn.eps))
    return out


def test_whole_head_path_matches_the_references(model):
    """Spec 3.2-3.8 from the captured backbone levels: input projections, text-gated queries (the decoder
    target, the same in every frame), logits/boxes, mask features, M_o of every query, the chosen query and
    its final M through MSO."""
    frames, pad, sizes, texts = _inputs()
    b, t = frames.shape[:2]
    cap = _Capture(model)
    try:
        with torch.no_grad():
            out = model.predict(frames, texts, pad_mask=pad, sizes=sizes)
    finally:
        cap.close()
    hd = model.cfg.head
    levels = cap.seen["backbone"]
    _, word_pad = cap.seen["text_encoder"]
    words, word_pos = cap.seen["text_proj"], cap.seen["text_pos"]
    srcs, level_pad, _, tgt, query_pos = cap.seen["transformer.args"]
    hs, init_ref, inter_refs, memory = cap.seen["transformer"]
    n, q = b * t, hd.num_queries
    with torch.no_grad():
        # 3.3 input projections (all four levels, including the extra stride-2 one from the raw L3)
        for got, want in zip(srcs, _input_projection(model, levels)):
            torch.testing.assert_close(got, want, **TOL)
        # the padded region: the model pads 72x100 to 80x112 and the pad mask follows, nearest-resized
        full_pad = F.pad(pad, (0, 12, 0, 8), value=True).flatten(0, 1)
        for got, src in zip(level_pad, srcs):
            want = F.interpolate(full_pad[:, None].float(), size=src.shape[-2:], mode="nearest")[:, 0].bool()
            assert torch.equal(got, want)
        # 3.2 queries: q = q0 * MHA(q0, words + pos, words); the decoder target repeats it over frames
        mha = model.queries.fusion_module.multihead_attn
        qs = text_gated_queries(model.queries.query_tensors, words.transpose(0, 1), word_pos.transpose(0, 1),
                                word_pad, mha.in_proj_weight, mha.in_proj_bias,
                                (mha.out_proj.weight, mha.out_proj.bias), hd.fusion_nheads).transpose(0, 1)
        torch.testing.assert_close(tgt, qs.repeat_interleave(t, dim=0), **TOL)
        torch.testing.assert_close(query_pos, model.query_embed.weight.expand(n, -1, -1), **TOL)

        # 3.5 last-layer logits and boxes
        logits = F.linear(hs[-1], model.class_embed[-1].weight, model.class_embed[-1].bias).reshape(b, t, q, 1)
        boxes = refine_box(mlp(hs[-1], _linears(model.bbox_embed[-1])), inter_refs[-2]).reshape(b, t, q, 4)
        torch.testing.assert_close(out.pred_logits, logits, **TOL)
        torch.testing.assert_close(out.pred_boxes, boxes, **TOL)

        # 3.6 mask features and the dynamic head of the last layer, centres of the same layer, unpadded sizes
        feats = mask_features(memory)
        assert feats.shape[-2:] == (10, 14)
        frame_sizes = sizes.repeat_interleave(t, dim=0)
        dyn = dynamic_masks(hs[-1], _linears(model.mask_head.controller), feats, inter_refs[-1][..., :2],
                            frame_sizes, hd.dynamic_mask_channels)
        low = low_res_masks(dyn).reshape(b, t, q, 40, 56)
        torch.testing.assert_close(out.masks_low, low, **TOL)

        # 3.8 the chosen query: mean over frames of sigmoid(logit), argmax over queries
        best = best_query(logits)
        top2 = logits.sigmoid().mean(dim=1)[..., 0].topk(2, dim=-1).values
        assert ((top2[:, 0] - top2[:, 1]) > 1e-4).all()  # the choice is unambiguous
        assert torch.equal(out.best_query, best)

        # 3.7 its final M through MSO with the backbone levels L1 (s8) and L0 (s4)
        convs = {name: (getattr(model.mask_optimiser, name).weight, getattr(model.mask_optimiser, name).bias)
                 for name in MSO_CONVS}
        dyn = dyn.reshape(b, t, q, *dyn.shape[2:])
        for i in range(b):
            frames_i = slice(i * t, (i + 1) * t)
            m = mso(dyn[i, :, best[i]], levels[1][frames_i], levels[0][frames_i], convs)
            torch.testing.assert_close(out.pred_masks[i], m[:, 0], **TOL)
