"""Model config round trips and the save_pretrained / from_pretrained weights format."""
from __future__ import annotations

import json

import pytest
import torch

from vdit.config import ModelConfig, apply_overrides, full_config, load_yaml, save_yaml, tiny_config
from vdit.errors import ConfigError, ModelLoadError
from vdit.models.vdit import VDIT


def test_model_config_yaml_round_trip(tmp_path):
    cfg = apply_overrides(full_config(), ["backbone.prompt.mode=concat", "backbone.noise.step=10", "head.dropout=0.2"])
    save_yaml(cfg, tmp_path / "model.yaml")
    again = load_yaml(ModelConfig, tmp_path / "model.yaml")
    assert again == cfg
    assert again.backbone.level_channels == (128, 256, 512, 1024)  # tuples survive the round trip


def test_unknown_key_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean"):
        apply_overrides(full_config(), ["backbone.noise.stpe=5"])
    with pytest.raises(ConfigError, match="prompt.mode"):
        apply_overrides(full_config(), ["backbone.prompt.mode=fancy"])
    assert apply_overrides(full_config(), ["loss.dice=5e-1"]).loss.dice == 0.5


def test_from_pretrained_reproduces_outputs_bit_for_bit(tiny_root, tmp_path):
    torch.manual_seed(0)
    model = VDIT.from_config(tiny_config(tiny_root)).eval()
    out_dir = model.save_pretrained(tmp_path / "w")
    assert sorted(p.name for p in out_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    stored = json.loads((out_dir / "config.json").read_text())["model"]
    assert stored["foundation"]["t2v"].endswith("t2v")  # names the frozen foundation models
    torch.manual_seed(123)  # a different init must be fully overwritten by the loaded weights
    again = VDIT.from_pretrained(out_dir).eval()
    x = torch.randn(1, 2, 3, 64, 96)
    with torch.no_grad():
        a = model.predict(x, ["the blue square moving left"])
        b = again.predict(x, ["the blue square moving left"])
    for key in ("pred_logits", "pred_boxes", "pred_masks"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key


def test_from_pretrained_bad_folders(tiny_root, tmp_path):
    model = VDIT.from_config(tiny_config(tiny_root))
    out_dir = model.save_pretrained(tmp_path / "w")
    weights = out_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        VDIT.from_pretrained(out_dir)
    with pytest.raises(ModelLoadError, match="no config.json"):
        VDIT.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError):
        VDIT.from_pretrained(tmp_path / "does-not-exist")
