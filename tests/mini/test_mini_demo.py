"""`vdit demo` and the built-in model hook, on a two-step mini foundation with an untrained head; and the
shipped model on the demo's default clip (its training is exercised by test_mini_e2e.py)."""
import json
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def fake_builtin(smoke_build, tmp_path_factory):
    """An (untrained) mini head saved like the built-in one, on the smoke foundation."""
    import torch

    from vdit.mini.preset import mini_config
    from vdit.models.vdit import VDIT

    foundation, _, _ = smoke_build
    torch.manual_seed(0)
    head = tmp_path_factory.mktemp("fake_builtin") / "head"
    VDIT.from_config(mini_config(foundation)).save_pretrained(head)
    return head


@pytest.fixture
def builtin_at(monkeypatch):
    import vdit.mini.builtin as builtin

    def point(path: Path) -> None:
        monkeypatch.setattr(builtin, "BUILTIN_WEIGHTS_DIR", Path(path))
    return point


def test_demo_clip_has_two_sentences_about_two_objects():
    from vdit.mini.demo import demo_clip

    video, exps = demo_clip(0)
    assert video.frames.shape == (12, 64, 64, 3)
    assert len(exps) == 2 and exps[0].obj_id != exps[1].obj_id
    assert all((video.masks == e.obj_id).any() for e in exps)
    again, exps2 = demo_clip(0)
    assert np.array_equal(again.frames, video.frames) and [e.text for e in exps2] == [e.text for e in exps]


def test_demo_writes_everything(fake_builtin, builtin_at, tmp_path, capsys):
    from vdit.cli.main import main

    builtin_at(fake_builtin)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["sentences"]) == 2
    for i, s in enumerate(summary["sentences"]):
        assert set(s) >= {"text", "J", "F", "J&F", "masks"}
        assert 0.0 <= s["J"] <= 1.0 and 0.0 <= s["F"] <= 1.0 and s["J&F"] == pytest.approx((s["J"] + s["F"]) / 2, abs=1e-4)
        assert len(list((out / "masks" / str(i)).glob("*.png"))) == 12
    for rel in ("overlay.mp4", "side_by_side.png", "clip/00000.png"):
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0
    assert summary["paths"]["side_by_side"] == "side_by_side.png" and summary["weights"] == "built-in"
    printed = capsys.readouterr().out
    assert all(s["text"] in printed for s in summary["sentences"]) and "J&F" in printed


def test_segment_without_weights_uses_builtin(fake_builtin, builtin_at, tmp_path):
    from PIL import Image

    from vdit.cli.main import main
    from vdit.mini.demo import demo_clip

    builtin_at(fake_builtin)
    video, exps = demo_clip(1)
    frames = tmp_path / "frames"
    frames.mkdir()
    for t, f in enumerate(video.frames[:3]):
        Image.fromarray(f).save(frames / f"{t:05d}.png")
    out = tmp_path / "seg"
    assert main(["segment", "--video", str(frames), "--text", exps[0].text, "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights"] == "built-in" and summary["model_input_size"] == [64, 64]


def test_missing_builtin_is_a_clear_error(builtin_at, tmp_path, capsys):
    from vdit.cli.main import main

    builtin_at(tmp_path / "nowhere")
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "built-in VD-IT weights are missing" in err and len(err.strip().splitlines()) == 1


def test_builtin_head_refuses_other_foundation_weights(fake_builtin, builtin_at, tmp_path):
    import shutil

    from vdit.errors import ModelLoadError
    from vdit.mini.builtin import BUILTIN_FOUNDATION_RECORD, check_builtin_weights

    head = tmp_path / "head"
    shutil.copytree(fake_builtin, head)
    (head / BUILTIN_FOUNDATION_RECORD).write_text("0" * 64 + "\n")
    builtin_at(head)
    with pytest.raises(ModelLoadError, match="trained on other foundation weights"):
        check_builtin_weights()


def test_shipped_model_gets_the_default_demo_right(tmp_path):
    """Issue 19's demo target on the default clip (seed 0, generated, not picked): the shipped head puts
    both sentences' masks on the named star, J&F >= 0.6 each (measured 0.761 and 0.626; a head shipped
    before scored 0.553 on "the green star", its mask on the yellow star while the two overlap)."""
    from vdit.cli.main import main
    from vdit.mini.builtin import BUILTIN_WEIGHTS_DIR

    if not (BUILTIN_WEIGHTS_DIR / "model.safetensors").is_file():
        pytest.skip(f"the built-in head ({BUILTIN_WEIGHTS_DIR}) is absent")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--threads", "1"]) == 0
    sentences = json.loads((out / "summary.json").read_text())["sentences"]
    assert [s["text"] for s in sentences] == ["the yellow star moving down", "the green star"]
    assert all(s["J&F"] >= 0.6 for s in sentences), [(s["text"], s["J&F"]) for s in sentences]
