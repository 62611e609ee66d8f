"""bench/cpu_official_setting.py --shallow-encoders (issue 16): the pinned model, padding, breakdown.

The full-width timing is a bench run (docs/performance.md); here the tiny preset runs end to end, and the
model the option builds is checked against the issue's numbers (widths unchanged, layers and FFN widths
as pinned).
"""
from __future__ import annotations

import pytest
import torch

from vdit.errors import ConfigError
from vdit.models.foundation import arch_with_overrides


def test_shallow_encoders_are_the_pinned_ones(cpu_official_setting):
    """Issue 16: CLIP-ViT-H vision 2 layers (hidden 1280, FFN 512, 224/14), T2V text 1024-d 2 layers
    (FFN 512), RoBERTa 768-d 1 layer (FFN 256); UNet and VAE untouched (real widths, 2 layers per block)."""
    table = arch_with_overrides("modelscope-1.7b", cpu_official_setting.SHALLOW_ENCODERS)
    stock = arch_with_overrides("modelscope-1.7b", None)
    vis, txt, rob = table["clip_vision"], table["t2v_text"], table["text_encoder"]
    assert (vis["num_hidden_layers"], vis["hidden_size"], vis["intermediate_size"]) == (2, 1280, 512)
    assert (vis["image_size"], vis["patch_size"]) == (224, 14)
    assert (txt["num_hidden_layers"], txt["hidden_size"], txt["intermediate_size"]) == (2, 1024, 512)
    assert (rob["num_hidden_layers"], rob["hidden_size"], rob["intermediate_size"]) == (1, 768, 256)
    assert table["unet"] == stock["unet"] and table["vae"] == stock["vae"]
    assert table["unet"]["layers_per_block"] == 2 and table["unet"]["block_out_channels"] == [320, 640, 1280, 1280]
    assert stock["clip_vision"]["num_hidden_layers"] == 32  # the copy, not the table, was changed


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="unknown keys"):
        arch_with_overrides("tiny", {"clip_vision": {"num_layers": 2}})
    with pytest.raises(ConfigError, match="unknown model"):
        arch_with_overrides("tiny", {"clip": {"num_hidden_layers": 2}})


def test_built_model_has_the_shallow_encoders(cpu_official_setting):
    model = cpu_official_setting.build_model("tiny", "meta", shallow=True)
    bb = model.backbone
    assert bb.clip_vision.config.num_hidden_layers == 2 and bb.clip_vision.config.intermediate_size == 512

    def layers(module, kind: str) -> int:
        return sum(type(m).__name__ == kind for m in module.modules())

    assert layers(bb.clip_vision, "CLIPEncoderLayer") == 2
    assert layers(bb.t2v_text_encoder, "CLIPEncoderLayer") == 2
    assert layers(model.text_encoder, "RobertaLayer") == 1
    assert model.text_encoder.text_backbone.config.intermediate_size == 256


def test_padded_inputs_mark_the_padding(cpu_official_setting):
    inputs = cpu_official_setting.make_inputs(3, (112, 176), (128, 192))
    x, mask = inputs["frames"], inputs["pad_mask"]
    assert x.shape == (1, 3, 3, 128, 192) and mask.shape == (1, 3, 128, 192)
    assert not mask[..., :112, :176].any() and mask[..., 112:, :].all() and mask[..., :, 176:].all()
    assert torch.equal(x[..., 112:, :], torch.zeros_like(x[..., 112:, :]))  # zeros in normalised space
    assert inputs["sizes"].tolist() == [[112, 176]]


def test_shallow_bench_runs_and_breaks_down(cpu_official_setting, capsys):
    res = cpu_official_setting.main(["--preset", "tiny", "--shallow-encoders", "--threads", "1", "--repeats", "1",
                                     "--warmup", "0", "--size", "64", "96", "--pad-to", "80", "112", "--frames", "2"])
    out = capsys.readouterr().out
    assert "median 4.27 s, min 4.11 s" in out and "ratio ours/official" in out and "run at 80x112" in out
    assert "load average" in out
    assert set(res["variants"]) == set(cpu_official_setting.VARIANTS)
    assert res["max_rel_diff"] is not None and res["max_rel_diff"] < 1e-5  # float rounding only
    parts = res["parts"]
    assert list(parts) == list(cpu_official_setting.TOP_PARTS) and all(v >= 0 for v in parts.values())
    assert parts[cpu_official_setting.UNET] > 0 and parts[cpu_official_setting.VAE] > 0
    assert "deformable attention core" in res["details"] and "dynamic mask head (einsum)" in res["details"]
    # the FLOPs of the parts add up to ours; the official forward also runs the UNet tail
    assert res["tflop_official"] > res["tflop_ours"] > 0
    assert res["flops"][cpu_official_setting.UNET] > 0
