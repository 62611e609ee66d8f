"""Model presets by name: `vdit.config` holds the full-scale ones, the miniature world's `mini` lives in
vdit/mini (`vdit.mini.preset`), and the CLI joins the two (`vdit.cli.presets`)."""
from __future__ import annotations

import json

import pytest

from vdit.cli.main import main
from vdit.config import PRESETS, preset
from vdit.errors import ConfigError
from vdit.mini.preset import MINI_PRESETS, mini_config


def test_the_library_knows_the_full_scale_presets_only():
    assert set(PRESETS) == {"full", "tiny"}
    with pytest.raises(ConfigError, match="unknown model preset 'mini'"):
        preset("mini")
    assert preset("mini", {**PRESETS, **MINI_PRESETS}) == mini_config()


def test_model_info_offers_the_miniature_preset(capsys):
    from vdit.models.summary import parameter_summary
    from vdit.models.vdit import VDIT

    assert main(["model-info", "--preset", "mini", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["preset"] == "mini"
    assert info["trainable_total"] == parameter_summary(VDIT.on_meta(mini_config()))["trainable_total"]
