"""The VD-IT network on the tiny preset (real from_pretrained loading) and the full preset on meta."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from _batch_helpers import box_batch
from vdit.config import apply_overrides, full_config, tiny_config
from vdit.errors import InputError, ModelLoadError
from vdit.models.vdit import VDIT
from vdit.training import TrainingWrapper


def _model(root, *overrides: str, seed: int = 0) -> VDIT:
    torch.manual_seed(seed)
    cfg = apply_overrides(tiny_config(root), list(overrides))
    return VDIT.from_config(cfg)


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize("t", [3, 1])
def test_forward_shapes_inference(tiny_root, t):
    model = _model(tiny_root).eval()
    b, h, w = 2, 80, 112  # multiples of 16 but not of 64
    with torch.no_grad():
        out = model.predict(torch.randn(b, t, 3, h, w), ["the red circle", "a small blue square moving left"])
    q = model.cfg.head.num_queries
    assert out.pred_logits.shape == (b, t, q, 1)
    assert out.pred_boxes.shape == (b, t, q, 4)
    assert out.masks_low.shape == (b, t, q, h // 2, w // 2)
    assert out.pred_masks.shape == (b, t, h, w)
    assert out.best_query.shape == (b,) and out.scores.shape == (b, q)
    assert ((out.pred_boxes > 0) & (out.pred_boxes < 1)).all()


def test_forward_pads_odd_sizes_and_all_queries(tiny_root):
    model = _model(tiny_root).eval()
    with torch.no_grad():
        head = model(torch.randn(1, 2, 3, 70, 99), ["the green star"])
        masks = model.all_query_masks(head)
        best = model.inference_outputs(head)
    # padded to multiples of 16 inside the model: 80 x 112
    assert masks.shape == (1, 2, model.cfg.head.num_queries, 80, 112)
    assert torch.equal(best.pred_masks[0], masks[0, :, int(best.best_query[0])])


def test_head_outputs_shapes(tiny_root):
    model = _model(tiny_root).train()
    b, t, h, w = 2, 3, 64, 96
    head = model(torch.randn(b, t, 3, h, w), ["a", "b c"])
    q, c = model.cfg.head.num_queries, model.cfg.head.dynamic_mask_channels
    assert len(head.layers) == model.cfg.head.dec_layers
    for layer in head.layers:
        assert layer.pred_logits.shape == (b, t, q, 1) and layer.pred_boxes.shape == (b, t, q, 4)
        assert layer.masks_low.shape == (b, t, q, h // 2, w // 2)
        assert layer.dynamic.shape == (b, t, q, c, h // 8, w // 8)
    assert model.refine_masks(head.last.dynamic[:, :, 0], head.levels).shape == (b, t, h, w)


def test_training_outputs_shapes(tiny_root):
    model = _model(tiny_root).train()
    b, t, h, w = 2, 3, 64, 96
    out = TrainingWrapper.from_model(model).matched_outputs(box_batch(torch.randn(b, t, 3, h, w), ["a", "b c"]))
    assert out["pred_masks"].shape == (b, t, h, w)
    assert out["pred_masks_low"].shape == (b, t, h // 2, w // 2)
    assert out["matched_query"].shape == (b,)
    assert len(out["aux_outputs"]) == model.cfg.head.dec_layers - 1


def test_level_shapes(tiny_root):
    model = _model(tiny_root).eval()
    with torch.no_grad():
        levels = model.backbone(torch.randn(1, 2, 3, 96, 160), ["x"])
    cfg = model.cfg.backbone
    for lv, ch, s in zip(levels, cfg.level_channels, cfg.level_strides):
        assert lv.shape == (2, ch, -(-96 // s), -(-160 // s))


# ------------------------------------------------------------------ frozen vs trainable


def test_only_trainable_parameters_get_gradients(tiny_root):
    model = _model(tiny_root).train()
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = model.trainable_named_parameters()
    assert frozen_before and trainable
    opt = torch.optim.AdamW(trainable.values(), lr=1e-3)
    b, t, h, w = 1, 2, 64, 64
    loss = TrainingWrapper.from_model(model)(box_batch(torch.randn(b, t, 3, h, w), ["the red circle"]))["loss"]
    loss.backward()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, n
    # the trainable modules that feed the frozen UNet receive gradients through it
    assert trainable["backbone.prompt.cross_attn.cros_attn.w_qs.weight"].grad.abs().sum() > 0
    assert trainable["backbone.noise.noise_pred.weight"].grad.abs().sum() > 0
    opt.step()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p.detach(), frozen_before[n]), n
    # frozen modules stay in eval mode while the model trains (no dropout in the frozen UNet)
    assert not model.backbone.unet.training and not model.text_encoder.text_backbone.training


def test_official_frozen_dropout_switch(tiny_root):
    model = _model(tiny_root, "backbone.official_frozen_dropout=true").train()
    assert model.backbone.unet.training and model.text_encoder.text_backbone.training
    assert not any(p.requires_grad for p in model.backbone.unet.parameters())


# ------------------------------------------------------------------ full preset on meta


def _expected_full_trainable() -> int:
    """Derived by hand from spec sections 2.4, 2.6, 2.8 and 3 (independent of the model code)."""
    lin = lambda i, o, bias=True: i * o + (o if bias else 0)  # noqa: E731
    ln = lambda d: 2 * d  # noqa: E731
    conv = lambda i, o, k: i * o * k * k + o  # noqa: E731
    residual_mlp = lin(1280, 1024) + lin(1024, 1024)
    cross_attn = 4 * lin(1024, 1024, False) + ln(1024) + lin(1024, 512) + lin(512, 1024) + ln(1024)
    noise = conv(4, 4, 3) + 2 * lin(4, 4, False)
    levels = sum(conv(i, h, 1) + conv(h, o, 1) for i, h, o in
                 [(512, 256, 128), (960, 512, 256), (1600, 1024, 512), (1920, 1024, 1024)])
    backbone = residual_mlp + cross_attn + noise + levels
    mha = lin(256, 3 * 256) + lin(256, 256)
    text_proj = lin(768, 256) + ln(256)
    queries = 5 * 256 + 5 * 256
    input_proj = sum(conv(c, 256, 1) + ln(256) for c in (256, 512, 1024)) + conv(1024, 256, 3) + ln(256)
    msda = lin(256, 8 * 4 * 4 * 2) + lin(256, 8 * 4 * 4) + 2 * lin(256, 256)
    ffn = lin(256, 2048) + lin(2048, 256)
    enc = 4 * (msda + ln(256) + ffn + ln(256))
    dec = 4 * (msda + ln(256) + mha + ln(256) + ffn + ln(256))
    transformer = 4 * 256 + enc + dec + lin(256, 2)
    heads = 4 * lin(256, 1) + 4 * (lin(256, 256) + lin(256, 256) + lin(256, 4))
    controller = lin(256, 256) + lin(256, 256) + lin(256, (256 + 2) * 16 + 16 * 16 + 16 + 16)
    mso = conv(16 + 256, 16, 3) + conv(16, 16, 3) + conv(16 + 128, 16, 3) + conv(16, 16, 3)
    head = text_proj + mha + queries + input_proj + transformer + heads + controller + mso
    return backbone + head


def test_full_preset_on_meta_counts():
    from vdit.cli.model_info import model_info

    expected = _expected_full_trainable()
    assert expected == 30_038_986  # ~30.0 M, as spec section 1 estimates
    info = model_info("full")
    assert info["trainable_total"] == expected
    assert [lv["channels"] for lv in info["levels"]] == [128, 256, 512, 1024]
    assert [lv["stride"] for lv in info["levels"]] == [4, 8, 16, 32]
    comp = info["components"]
    assert 1.40e9 < comp["unet"]["frozen"] < 1.42e9
    assert 6.30e8 < comp["clip_vision"]["frozen"] < 6.34e8
    assert comp["unet"]["trainable"] == 0 and comp["transformer"]["trainable"] == 11_313_666 - 0
    assert comp["prompt_fusion"]["trainable"] == 5_248_512
    model = VDIT.on_meta(full_config())
    assert all(p.is_meta for p in model.parameters())


def test_model_info_cli_json(capsys):
    import json

    from vdit.cli.main import main

    assert main(["model-info", "--preset", "tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) >= {"trainable_total", "frozen_total", "components", "levels"}
    assert info["trainable_total"] == sum(c["trainable"] for c in info["components"].values())


# ------------------------------------------------------------------ Table A / noise variants


# The prompt modes (VD-I, VD-T, concat, attn) and the noise kinds / diffusion steps are checked against
# written-out references in test_reference_backbone.py.


def test_concat_has_attn_trainable_count():
    from vdit.cli.model_info import model_info

    for preset_name in ("full", "tiny"):
        attn = model_info(preset_name, ["backbone.prompt.mode=attn"])
        concat = model_info(preset_name, ["backbone.prompt.mode=concat"])
        assert attn["trainable_total"] == concat["trainable_total"]
        assert concat["components"]["prompt_fusion"]["trainable"] == attn["components"]["prompt_fusion"]["trainable"]


def test_grad_checkpointing_is_numerically_identical(tiny_root):
    grads = []
    for ckpt in ("false", "true"):
        model = _model(tiny_root, f"backbone.grad_ckpt={ckpt}", "backbone.noise.kind=predicted").eval()
        torch.manual_seed(1)
        x = torch.randn(1, 2, 3, 64, 64)
        out = model.predict(x, ["the red circle"])
        out.pred_masks.square().mean().backward()
        grads.append(model.backbone.noise.noise_pred.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ bad input


def test_bad_inputs(tiny_root):
    from vdit.models.inputs import frames_to_tensor

    model = _model(tiny_root).eval()
    x = torch.randn(1, 2, 3, 64, 64)
    with pytest.raises(InputError, match="empty"):
        model(x, ["   "])
    with pytest.raises(InputError, match="texts"):
        model(x, ["a", "b"])
    with pytest.raises(InputError, match="single-channel"):
        model(torch.randn(1, 2, 1, 64, 64), ["a"])
    with pytest.raises(InputError, match="RGBA"):
        model(torch.randn(1, 2, 4, 64, 64), ["a"])
    with pytest.raises(InputError, match="at least 64x64"):
        model(torch.randn(1, 2, 3, 48, 64), ["a"])
    with pytest.raises(InputError, match="same size"):
        frames_to_tensor([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 80, 3), np.uint8)])
    with pytest.raises(InputError, match="RGBA"):
        frames_to_tensor([np.zeros((64, 64, 4), np.uint8)])
    with pytest.raises(InputError, match="single-channel"):
        frames_to_tensor([np.zeros((64, 64), np.uint8)])
    assert frames_to_tensor([np.zeros((64, 64, 3), np.uint8)] * 2).shape == (2, 3, 64, 64)


def test_zero_valid_frames_is_an_error(tiny_root):
    model = _model(tiny_root).train()
    batch = box_batch(torch.randn(1, 2, 3, 64, 64), ["a"])
    batch.valid[:] = False
    with pytest.raises(ValueError, match="no valid frame"):
        TrainingWrapper.from_model(model)(batch)


def test_long_text_is_truncated_with_one_warning(tiny_root):
    model = _model(tiny_root).eval()
    long_text = " ".join(["red circle"] * 200)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            out = model.predict(torch.randn(1, 1, 3, 64, 64), [long_text])
            model(torch.randn(1, 1, 3, 64, 64), [long_text])
    msgs = [str(w.message) for w in caught if "truncated" in str(w.message)]
    # once per tokenizer (T2V CLIP, then RoBERTa), not once per call
    assert [sum("T2V tokenizer's" in m for m in msgs), sum("text encoder's" in m for m in msgs)] == [1, 1]
    assert len(msgs) == 2
    assert torch.isfinite(out.pred_masks).all()


def test_missing_foundation_folder_names_what_is_missing(tiny_root, tmp_path):
    import shutil

    broken = tmp_path / "f"
    shutil.copytree(tiny_root, broken)
    shutil.rmtree(broken / "t2v" / "vae")
    (broken / "t2v" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as err:
        VDIT.from_config(tiny_config(broken))
    assert "vae/" in str(err.value) and "unet/" in str(err.value)


def test_truncated_foundation_weights(tiny_root, tmp_path):
    import shutil

    broken = tmp_path / "f"
    shutil.copytree(tiny_root, broken)
    f = broken / "t2v" / "unet" / "diffusion_pytorch_model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="UNet"):
        VDIT.from_config(tiny_config(broken))


def test_text_encoder_learns_when_made_trainable(tiny_root):
    model = _model(tiny_root).train()
    assert not model.text_encoder.text_backbone.training  # frozen: eval mode
    model.text_encoder.text_backbone.requires_grad_(True)
    model.train()
    assert model.text_encoder.text_backbone.training  # fine-tuned: dropout on
    with torch.no_grad():
        words, _ = model.text_encoder(["the red circle"], torch.device("cpu"))
    assert not words.requires_grad  # no graph under no_grad
    out = model.predict(torch.randn(1, 2, 3, 64, 64), ["the red circle"])
    out.pred_masks.sum().backward()
    grads = [p.grad for p in model.text_encoder.text_backbone.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
