"""`vdit train` on bad input: one-line errors naming the problem, non-zero exit."""
from __future__ import annotations

import os
import shutil

import pytest

from _engine_helpers import tiny_args
from vdit.cli.main import main


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    return err[-1]


def test_unknown_config_key_suggests_the_closest(tiny_root, engine_synth_root, tmp_path, capsys):
    code = main(tiny_args(tiny_root, engine_synth_root, tmp_path / "run", "train.lrr=0.1"))
    assert code == 2
    assert _error_line(capsys) == "vdit train: error: unknown config key train.'lrr'; did you mean train.'lr'?"
    assert not (tmp_path / "run").exists()


def test_unknown_preset(capsys):
    assert main(["train", "--preset", "ytvoss"]) == 2
    line = _error_line(capsys)
    assert "unknown training preset 'ytvoss'; did you mean 'ytvos'?" in line


def test_bad_value(tiny_root, engine_synth_root, tmp_path, capsys):
    assert main(tiny_args(tiny_root, engine_synth_root, tmp_path / "run", "train.amp=fp8")) == 2
    assert "train.amp='fp8'" in _error_line(capsys)


def test_output_dir_not_writable(tiny_root, engine_synth_root, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(tiny_args(tiny_root, engine_synth_root, blocker / "run")) == 2
    line = _error_line(capsys)
    assert line.startswith(f"vdit train: error: output directory {blocker / 'run'} is not writable")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_output_dir_read_only(tiny_root, engine_synth_root, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(tiny_args(tiny_root, engine_synth_root, ro / "run")) == 2
    finally:
        ro.chmod(0o700)
    assert "is not writable" in _error_line(capsys)


def test_existing_run_needs_resume(tiny_root, engine_synth_root, engine_one_step_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(engine_one_step_run, out)
    assert main(tiny_args(tiny_root, engine_synth_root, out)) == 2
    assert "already holds a run with checkpoints; pass --resume" in _error_line(capsys)


def test_missing_data_root(tiny_root, tmp_path, capsys):
    args = tiny_args(tiny_root, tmp_path / "nowhere", tmp_path / "run", "data.synthetic_videos=0")
    assert main(args) == 2
    assert f"synthetic root not found: {tmp_path / 'nowhere'}" in _error_line(capsys)


def test_pretrained_recipe_needs_init(tmp_path, capsys):
    assert main(["train", "--preset", "ytvos_from_pretrain", "--out", str(tmp_path / "run")]) == 2
    assert "pass --init-from DIR" in _error_line(capsys)


@pytest.mark.parametrize("victim", ["optimizer.safetensors", "model.safetensors", "state.json"])
def test_truncated_checkpoint(engine_one_step_run, tmp_path, capsys, victim):
    out = tmp_path / "run"
    shutil.copytree(engine_one_step_run, out)
    ckpt = out / "checkpoints" / "step-00000001"
    data = (ckpt / victim).read_bytes()
    (ckpt / victim).write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(out)]) == 2
    line = _error_line(capsys)
    assert str(ckpt / victim) in line and "truncated" in line


def test_resume_without_checkpoint(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert f"no checkpoint at {tmp_path}" in _error_line(capsys)


def test_print_config(tiny_root, capsys):
    assert main(["train", "--preset", "pretrain_refcoco", "--print-config", "--accum", "2"]) == 0
    import yaml

    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["train"]["epochs"] == 12 and cfg["train"]["grad_accum"] == 2
    assert cfg["train"]["lr_drops"] == [8, 10]


def test_presets_include_the_miniature_worlds(capsys):
    """`vdit train` offers the recipes of vdit.engine.recipes and vdit.mini.recipe (the mini preset lives
    in vdit/mini, which the engine does not import)."""
    assert main(["train", "--list-presets"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "ytvos" in names and "mini_synthetic" in names
    assert main(["train", "--preset", "mini_synthetic", "--print-config"]) == 0
    import yaml

    train = yaml.safe_load(capsys.readouterr().out)["train"]
    assert (train["max_steps"], train["lr_drop_steps"]) == (0, [4000])  # one epoch, x0.1 after step 4000


class _Terminal:
    """A stderr that says it is a terminal and keeps what is written to it."""

    def __init__(self):
        self.text = []

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.text.append(s)
        return len(s)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("quiet", [False, True])
def test_step_bar_on_a_terminal_unless_quiet(tiny_root, engine_synth_root, tmp_path, monkeypatch, quiet):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    args = tiny_args(tiny_root, engine_synth_root, tmp_path / "run", "train.epochs=1", "data.max_samples=2")
    assert main(args + (["--quiet"] if quiet else [])) == 0
    drawn = "".join(term.text)
    assert ("epoch 1/1" in drawn) is not quiet
