"""Deformable-DETR transformer of the head: shapes, padding invariance, box refinement, gradients,
initialisation and the default parameter count (spec 1: 11.31 M)."""

from __future__ import annotations

import pytest
import torch

from vdit.errors import ConfigError
from vdit.models.head.deformable_transformer import (
    DeformableTransformer,
    encoder_reference_points,
    inverse_sigmoid,
)
from vdit.models.head.mlp import MLP
from vdit.models.head.position_encoding import PositionEmbeddingSine2D

# Non-square, not multiples of 64, halving with ceil like the head's levels.
SHAPES = [(13, 21), (7, 11), (4, 6), (2, 3)]
SMALL = dict(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=3, dim_feedforward=64)


def _inputs(d_model, n=2, q=5, shapes=SHAPES, seed=0, pad_sample0=True):
    g = torch.Generator().manual_seed(seed)
    srcs = [torch.randn(n, d_model, h, w, generator=g) for h, w in shapes]
    masks = [torch.zeros(n, h, w, dtype=torch.bool) for h, w in shapes]
    if pad_sample0:  # sample 0 padded bottom/right by about a third on every level
        for m, (h, w) in zip(masks, shapes):
            m[0, h - max(1, h // 3):, :] = True
            m[0, :, w - max(1, w // 3):] = True
    pos_enc = PositionEmbeddingSine2D(num_pos_feats=d_model // 2)
    pos = [pos_enc(m) for m in masks]
    tgt = torch.randn(n, q, d_model, generator=g)
    query_pos = torch.randn(n, q, d_model, generator=g)
    return srcs, masks, pos, tgt, query_pos


def _with_box_heads(model, d_model):
    model.decoder.bbox_embed = torch.nn.ModuleList(
        MLP(d_model, d_model, 4, 3) for _ in range(len(model.decoder.layers))
    )
    return model


def test_output_shapes_non_square_levels():
    torch.manual_seed(0)
    model = _with_box_heads(DeformableTransformer(**SMALL), 32).eval()
    srcs, masks, pos, tgt, query_pos = _inputs(32)
    out = model(srcs, masks, pos, tgt, query_pos)
    assert out.hs.shape == (3, 2, 5, 32)
    assert out.init_reference.shape == (2, 5, 2)
    assert out.inter_references.shape == (3, 2, 5, 4)
    assert [tuple(m.shape) for m in out.memory_levels] == [(2, 32, h, w) for h, w in SHAPES[:-1]]
    hs, init_ref, inter_refs, memory_levels = out  # unpacks like the official tuple
    assert torch.isfinite(hs).all() and len(memory_levels) == 3


def test_default_config_shapes_and_parameter_count():
    torch.manual_seed(0)
    model = DeformableTransformer().eval()
    # Per layer, from the architecture: MSDeformAttn = offsets 256->256, weights 256->128,
    # value/output 256->256; FFN 256->2048->256; LayerNorms 2*256 each; decoder adds MHA (4*256^2+4*256).
    deform = (256 * 256 + 256) + (256 * 128 + 128) + 2 * (256 * 256 + 256)
    ffn = (256 * 2048 + 2048) + (2048 * 256 + 256)
    encoder_layer = deform + ffn + 2 * 512
    decoder_layer = deform + ffn + 3 * 512 + (3 * 256 * 256 + 3 * 256) + (256 * 256 + 256)
    expected = 4 * encoder_layer + 4 * decoder_layer + 4 * 256 + (256 * 2 + 2)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected == 11_313_666
    assert round(count / 1e6, 2) == 11.31  # spec section 1

    srcs, masks, pos, tgt, query_pos = _inputs(256, n=1, shapes=[(6, 10), (3, 5), (2, 3), (1, 2)])
    with torch.no_grad():
        out = model(srcs, masks, pos, tgt, query_pos)
    assert out.hs.shape == (4, 1, 5, 256) and out.inter_references.shape == (4, 1, 5, 2)


def test_padded_inputs_do_not_affect_valid_outputs():
    torch.manual_seed(0)
    model = _with_box_heads(DeformableTransformer(**SMALL), 32).eval()
    srcs, masks, pos, tgt, query_pos = _inputs(32)
    with torch.no_grad():
        base = model(srcs, masks, pos, tgt, query_pos)
        noisy_srcs = [s.masked_fill(m[:, None], 0.0) + 50.0 * m[:, None] * torch.randn_like(s)
                      for s, m in zip(srcs, masks)]
        noisy = model(noisy_srcs, masks, pos, tgt, query_pos)
    torch.testing.assert_close(noisy.hs, base.hs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(noisy.inter_references, base.inter_references, rtol=1e-4, atol=1e-6)
    for lvl, (a, b) in enumerate(zip(noisy.memory_levels, base.memory_levels)):
        valid = ~masks[lvl][:, None].expand_as(a)
        torch.testing.assert_close(a[valid], b[valid], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(a[~valid], b[~valid]), "padded positions did see the change"


def test_padding_changes_results_for_the_padded_sample_only():
    torch.manual_seed(0)
    model = DeformableTransformer(**SMALL).eval()
    srcs, masks, pos, tgt, query_pos = _inputs(32, pad_sample0=False)
    with torch.no_grad():
        full = model(srcs, masks, pos, tgt, query_pos)
        masks[0][0, :, -1] = True
        padded = model(srcs, masks, pos, tgt, query_pos)
    torch.testing.assert_close(padded.hs[:, 1], full.hs[:, 1])
    assert not torch.allclose(padded.hs[:, 0], full.hs[:, 0])


def test_box_refinement_semantics():
    torch.manual_seed(0)
    model = _with_box_heads(DeformableTransformer(**SMALL), 32).eval()
    srcs, masks, pos, tgt, query_pos = _inputs(32)
    with torch.no_grad():
        out = model(srcs, masks, pos, tgt, query_pos)
        refs = out.inter_references
        assert ((refs > 0) & (refs < 1)).all()
        assert not refs.requires_grad
        heads = model.decoder.bbox_embed
        # Layer 0: a 2-d point becomes a box; only the centre gets the inverse-sigmoid offset.
        delta = heads[0](out.hs[0])
        torch.testing.assert_close(refs[0, ..., :2], (delta[..., :2] + inverse_sigmoid(out.init_reference)).sigmoid())
        torch.testing.assert_close(refs[0, ..., 2:], delta[..., 2:].sigmoid())
        # Later layers refine all four box coordinates.
        for lid in (1, 2):
            expected = (heads[lid](out.hs[lid]) + inverse_sigmoid(refs[lid - 1])).sigmoid()
            torch.testing.assert_close(refs[lid], expected)


def test_runs_under_bf16_autocast_close_to_fp32():
    torch.manual_seed(0)
    model = _with_box_heads(DeformableTransformer(**SMALL), 32).eval()
    inputs = _inputs(32)
    with torch.no_grad():
        ref = model(*inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(*inputs)
    assert out.hs.shape == ref.hs.shape and torch.isfinite(out.hs.float()).all()
    assert (out.hs.float() - ref.hs).abs().mean() < 0.1  # post-LN activations are O(1)


def test_without_box_heads_references_stay_points():
    torch.manual_seed(0)
    model = DeformableTransformer(**SMALL).eval()
    out = model(*_inputs(32))
    assert out.inter_references.shape == (3, 2, 5, 2)
    torch.testing.assert_close(out.inter_references[-1], out.init_reference.detach())


def test_gradients_reach_every_transformer_parameter():
    torch.manual_seed(0)
    model = _with_box_heads(DeformableTransformer(**SMALL), 32).train()
    # At initialisation the query of every MSDeformAttn acts through zero weights only, so level_embed
    # has no gradient yet; a little noise stands in for one optimiser step.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "sampling_offsets.weight" in name or "attention_weights.weight" in name:
                p.normal_(std=0.01)
    srcs, masks, pos, tgt, query_pos = _inputs(32)
    out = model(srcs, masks, pos, tgt, query_pos)
    loss = out.hs.pow(2).sum() + sum(m.pow(2).sum() for m in out.memory_levels)
    loss.backward()
    box_params = {id(p) for p in model.decoder.bbox_embed.parameters()}
    for name, p in model.named_parameters():
        if id(p) in box_params:
            continue  # the head owns and trains these through its own box predictions
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_initialisation():
    torch.manual_seed(0)
    model = DeformableTransformer()
    assert model.reference_points.bias.abs().sum() == 0
    assert 0.8 < model.level_embed.std().item() < 1.2  # normal_(0, 1)
    for layer in model.encoder.layers:
        assert layer.self_attn.attention_weights.weight.abs().sum() == 0
    for layer in model.decoder.layers:
        assert layer.cross_attn.sampling_offsets.weight.abs().sum() == 0
        w = layer.self_attn.in_proj_weight
        bound = (6.0 / (w.shape[0] + w.shape[1])) ** 0.5  # xavier over the whole in_proj matrix
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    names = {n for n, _ in model.named_parameters()}
    assert {"level_embed", "reference_points.weight", "encoder.layers.0.self_attn.value_proj.weight",
            "decoder.layers.3.cross_attn.output_proj.bias", "decoder.layers.0.self_attn.in_proj_weight",
            "decoder.layers.0.norm3.weight", "encoder.layers.3.norm2.bias"} <= names


def test_encoder_reference_points_are_valid_region_pixel_centres():
    # One sample, two levels: level 0 (2x4) has half its width valid, level 1 (1x2) is fully valid.
    valid_ratios = torch.tensor([[[0.5, 1.0], [1.0, 1.0]]])
    ref = encoder_reference_points([(2, 4), (1, 2)], valid_ratios)
    assert ref.shape == (1, 10, 2, 2)
    # Level-0 pixel (0, 0): x centre 0.5 of 2 valid columns -> 0.25 of the valid region; y 0.5/2.
    # Seen from level 0 the valid region spans half the map (x 0.125), from level 1 all of it (x 0.25).
    torch.testing.assert_close(ref[0, 0], torch.tensor([[0.125, 0.25], [0.25, 0.25]]))
    # Level-1 pixel (0, 1) (flat index 8 + 1): x centre 1.5 of 2 -> 0.75 of the valid region.
    torch.testing.assert_close(ref[0, 9], torch.tensor([[0.375, 0.5], [0.75, 0.5]]))


def test_inverse_sigmoid_clamps():
    x = torch.tensor([-1.0, 0.0, 0.25, 1.0, 2.0])
    y = inverse_sigmoid(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[2], torch.log(torch.tensor(0.25 / 0.75)))
    torch.testing.assert_close(y[0], y[1])
    torch.testing.assert_close(y[1], torch.log(torch.tensor(1e-5)))


def test_input_and_config_errors():
    model = DeformableTransformer(**SMALL)
    srcs, masks, pos, tgt, query_pos = _inputs(32)
    with pytest.raises(ValueError, match="levels"):
        model(srcs[:3], masks[:3], pos[:3], tgt, query_pos)
    with pytest.raises(ValueError, match="masks"):
        model(srcs, [m.float() for m in masks], pos, tgt, query_pos)
    with pytest.raises(ValueError, match="tgt"):
        model(srcs, masks, pos, tgt[:, :, :16], query_pos)
    with pytest.raises(ConfigError):
        DeformableTransformer(dropout=1.5)
    model.decoder.bbox_embed = torch.nn.ModuleList([MLP(32, 32, 4, 3)])
    with pytest.raises(ConfigError, match="bbox_embed"):
        model(srcs, masks, pos, tgt, query_pos)


def test_mlp_layers():
    mlp = MLP(6, 5, 4, 3)
    assert [tuple(l.weight.shape) for l in mlp.layers] == [(5, 6), (5, 5), (4, 5)]
    x = torch.randn(2, 6)
    manual = mlp.layers[2](torch.relu(mlp.layers[1](torch.relu(mlp.layers[0](x)))))
    torch.testing.assert_close(mlp(x), manual)
    with pytest.raises(ConfigError):
        MLP(4, 4, 4, 0)
