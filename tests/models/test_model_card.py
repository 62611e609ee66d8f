"""Issue 20: the model card (README.md) beside the weights, in the Hub's format.

The foundation models and their licences are restated here from their publishers (ModelScope T2V 1.7B:
CC BY-NC 4.0; OpenCLIP ViT-H/14 LAION-2B: MIT; roberta-base: MIT; the miniature world's and the tiny test
foundations: vdit's own, Apache-2.0), not read from vdit.models.model_card."""
from __future__ import annotations

import shutil

import pytest
import torch
import yaml

from vdit.config import full_config, tiny_config
from vdit.mini.preset import mini_config
from vdit.models.model_card import GENERATED_MARKER, ModelCardInfo, model_card, read_front_matter
from vdit.models.vdit import VDIT

FULL_FOUNDATION = {  # Hub id -> licence
    "damo-vilab/text-to-video-ms-1.7b": "cc-by-nc-4.0",
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": "mit",
    "roberta-base": "mit",
}
PROJECT_LICENCE = "apache-2.0"


def _front(text: str) -> dict:
    """The YAML between the leading '---' lines, parsed independently of vdit."""
    assert text.startswith("---\n")
    head, _, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(head)


def test_full_scale_card_names_the_foundation_models_and_their_licences():
    text = model_card(full_config(), num_parameters=12345)
    meta = _front(text)
    assert meta["library_name"] == "vdit"
    assert meta["base_model"] == list(FULL_FOUNDATION)
    # the weights are useless without ModelScope T2V: the card carries its non-commercial licence
    assert meta["license"] == "cc-by-nc-4.0"
    assert {"vdit", "referring-video-object-segmentation"} <= set(meta["tags"])
    for hub_id, licence in FULL_FOUNDATION.items():
        row = next(line for line in text.splitlines() if f"`{hub_id}`" in line)
        assert row.rstrip().endswith(f"| {licence} |"), row
    assert "12,345" in text and read_front_matter(text) == meta


@pytest.mark.parametrize("cfg", [mini_config("/somewhere/mini"), tiny_config("/somewhere/tiny")],
                         ids=["mini", "tiny"])
def test_vdit_own_foundations_are_apache(cfg):
    meta = _front(model_card(cfg))
    assert meta["license"] == PROJECT_LICENCE and "base_model" not in meta  # nothing on the Hub to point at


def test_scores_in_percent_and_none_otherwise():
    cfg = full_config()
    text = model_card(cfg, info=ModelCardInfo(scores={"Ref-YouTube-VOS valid": {"J&F": 0.6481, "J": 0.625},
                                                      "Ref-DAVIS17 valid": {"J&F": 0.7}}))
    assert "| Ref-YouTube-VOS valid | 64.8 | 62.5 |" in text
    assert "| Ref-DAVIS17 valid | 70.0 | n/a |" in text
    assert "None recorded" in model_card(cfg)


def test_save_pretrained_writes_the_card_and_keeps_a_written_one(tiny_root, tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = VDIT.from_config(tiny_config(tiny_root))
    out = model.save_pretrained(tmp_path / "w", card=ModelCardInfo(source="Trained for a test."))
    text = (out / "README.md").read_text()
    assert text.splitlines()[_front_lines(text)] == GENERATED_MARKER and "Trained for a test." in text
    count = sum(t.numel() for t in load_file(out / "model.safetensors").values())
    assert f"| {count:,} |" in text
    assert f"| queries | {model.cfg.head.num_queries} |" in text
    first = (out / "README.md").read_bytes()
    model.save_pretrained(out, card=ModelCardInfo(source="Trained for a test."))
    assert (out / "README.md").read_bytes() == first  # no dates: the same model, the same card

    (out / "README.md").write_text("# My own card\n")  # a person's card is never overwritten
    model.save_pretrained(out)
    assert (out / "README.md").read_text() == "# My own card\n"
    plain = model.save_pretrained(tmp_path / "plain", model_card=False)
    assert sorted(p.name for p in plain.iterdir()) == ["config.json", "model.safetensors"]


def _front_lines(text: str) -> int:
    """Index of the first line after the front matter."""
    lines = text.splitlines()
    return lines.index("---", 1) + 1


def test_converted_weights_say_where_they_come_from():
    from pathlib import Path

    from vdit.convert.official import _model_card_info

    info = _model_card_info(Path("/ckpts/vdit_ytvos.pth"), {"epoch": 5, "model": {}})
    text = model_card(full_config(), info=info)
    assert "`vdit_ytvos.pth` (epoch 5)" in text and "vdit convert-official" in text


def test_the_shipped_head_card_is_the_one_the_code_writes(tmp_path):
    """vdit/assets/mini/head/README.md is generated (vdit.mini.train.write_shipped_head_card); if this
    fails after a change of the card's code or of the version, regenerate it with
    `python -c "from vdit.mini.train import write_shipped_head_card; write_shipped_head_card()"`."""
    from vdit.mini.builtin import BUILTIN_WEIGHTS_DIR
    from vdit.mini import train

    copy = shutil.copytree(BUILTIN_WEIGHTS_DIR, tmp_path / "head")
    (copy / "README.md").unlink()
    train.write_head_card(copy, source=train.SHIPPED_HEAD_SOURCE, scores=train.SHIPPED_HEAD_SCORES, builtin=True)
    shipped = (BUILTIN_WEIGHTS_DIR / "README.md").read_text()
    assert shipped == (copy / "README.md").read_text()
    meta = _front(shipped)
    assert meta["license"] == PROJECT_LICENCE and meta["library_name"] == "vdit"
    assert "| miniature world, valid | 72.1 | 66.7 | 77.5 |" in shipped  # docs/miniature.md, measured results
    assert "`vdit-package:assets/mini/foundation/t2v`" in shipped  # as stored, not this machine's path


def test_convert_official_writes_the_card_and_draws_its_stages_on_a_terminal(tiny_root, tmp_path, monkeypatch,
                                                                             capsys):
    """Through the command, on a tiny checkpoint in the official format (written by the converter
    tests' own inverse mapping, tests/convert/test_official_converter.py)."""
    import importlib.util
    import io
    import sys
    from pathlib import Path

    from vdit.cli.main import main

    path = Path(__file__).resolve().parents[1] / "convert" / "test_official_converter.py"
    spec = importlib.util.spec_from_file_location("_official_converter_tests", path)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    torch.manual_seed(0)
    ckpt = helpers.save_official(tmp_path / "vdit_tiny.pth", VDIT.from_config(tiny_config(tiny_root)))

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    out = tmp_path / "weights"
    assert main(["convert-official", str(ckpt), str(out), "--preset", "tiny", "--foundation-root",
                 str(tiny_root)]) == 0
    assert "3/3" in screen.getvalue() and "stage" in screen.getvalue()  # read, mapped, written
    text = (out / "README.md").read_text()
    assert "`vdit_tiny.pth` (epoch 5)" in text and _front(text)["license"] == PROJECT_LICENCE
    assert "README.md" in capsys.readouterr().out
