"""Issue 20: `vdit segment --videos DIR|LIST` (many videos, one loaded model, one summary) and the
progress bar of `vdit segment` (drawn on a terminal, silent in logs and with --quiet).

The reference for every video of a batch is `vdit segment --video` run on that input alone: the batch
must write exactly its masks, the same overlay frame count and the same summary figures."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vdit.cli.main import main

SHORT = "64"
# Per-video summary keys that depend on the run, not on the input: time, and where the input lives.
RUN_KEYS = {"elapsed_s"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _frames_folder(folder: Path, frames) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    return folder


@pytest.fixture
def inputs(tmp_path, make_frames):
    """A folder with a 3-frame mp4, a 2-frame frames folder, an image, and what --videos must leave out."""
    from vdit.data.video_io import write_video

    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "b_clip.mp4", np.stack(make_frames(3, seed=1)), 10)
    _frames_folder(folder / "a_frames", make_frames(2, seed=2))
    Image.fromarray(make_frames(1, seed=3)[0]).save(folder / "c_still.png")
    (folder / "notes.txt").write_text("not a video")
    (folder / ".hidden.mp4").write_bytes(b"")
    return folder


def _args(weights, *extra: str) -> list[str]:
    return ["segment", "--text", "the red square", "--text", "a box", "--weights", str(weights),
            "--short-side", SHORT, "--device", "cpu", *extra]


def _masks(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / "masks").rglob("*.png"))}


def _summary(folder: Path) -> dict:
    data = json.loads((folder / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in RUN_KEYS}


def test_a_folder_of_videos_equals_each_video_alone(inputs, tiny_weights, tmp_path, capsys, monkeypatch):
    from vdit.inference.predictor import VDITPredictor

    built = []
    real_init = VDITPredictor.__init__

    def counting_init(self, *a, **kw):
        built.append(1)
        real_init(self, *a, **kw)

    monkeypatch.setattr(VDITPredictor, "__init__", counting_init)
    out = tmp_path / "out"
    assert main(_args(tiny_weights, "--videos", str(inputs), "--out", str(out))) == 0
    assert len(built) == 1  # one model for the whole folder
    stdout = capsys.readouterr().out
    assert "segmented 3 of 3 video(s)" in stdout
    batch = json.loads((out / "batch_summary.json").read_text())
    assert [v["name"] for v in batch["videos"]] == ["a_frames", "b_clip", "c_still"]  # sorted, others left out
    assert [v["status"] for v in batch["videos"]] == ["done"] * 3 and batch["num_failed"] == 0
    assert [v["num_frames"] for v in batch["videos"]] == [2, 3, 1]
    assert sorted(p.name for p in out.iterdir()) == ["a_frames", "b_clip", "batch_summary.json", "c_still"]

    for entry, name in zip(batch["videos"], ("a_frames", "b_clip.mp4", "c_still.png")):
        alone = tmp_path / "alone" / entry["name"]
        assert main(_args(tiny_weights, "--video", str(inputs / name), "--out", str(alone))) == 0
        assert _masks(out / entry["name"]) == _masks(alone)
        assert _summary(out / entry["name"]) == _summary(alone)
        assert (out / entry["name"] / "overlay.mp4").is_file()


def test_a_list_file_and_colliding_names(tiny_weights, make_frames, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    for k, folder in enumerate((one, two)):
        folder.mkdir()
        Image.fromarray(make_frames(1, seed=k)[0]).save(folder / "clip.png")
    Image.fromarray(make_frames(1, seed=5)[0]).save(one / "clip.jpg")
    listing = tmp_path / "videos.txt"
    listing.write_text("# my clips\n\none/clip.png\n  one/clip.jpg  \n")
    out = tmp_path / "out"
    assert main(_args(tiny_weights, "--videos", str(listing), "--out", str(out))) == 0
    # same stem: the names keep their extensions; relative paths are relative to the list's folder
    batch = json.loads((out / "batch_summary.json").read_text())
    assert [v["name"] for v in batch["videos"]] == ["clip.png", "clip.jpg"]
    assert (out / "clip.png" / "summary.json").is_file() and (out / "clip.jpg" / "summary.json").is_file()
    capsys.readouterr()

    listing.write_text(f"{one / 'clip.png'}\n{two / 'clip.png'}\n")  # same file name in two folders
    code = main(_args(tiny_weights, "--videos", str(listing), "--out", str(tmp_path / "out2")))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "would both write" in err[0]
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("problem, message", [
    ("empty folder", "no video files"),
    ("unreadable video", "cannot read video"),
    ("missing", "no such folder or list file"),
])
def test_bad_batches_fail_in_one_line_before_the_model_loads(problem, message, tiny_weights, tmp_path, capsys,
                                                             monkeypatch, make_frames):
    from vdit.inference.predictor import VDITPredictor

    monkeypatch.setattr(VDITPredictor, "__init__", lambda *a, **kw: pytest.fail("the model was loaded"))
    spec = tmp_path / "clips"
    if problem != "missing":
        spec.mkdir()
    if problem == "unreadable video":
        Image.fromarray(make_frames(1)[0]).save(spec / "fine.png")
        (spec / "broken.mp4").write_bytes(b"\x00not a video at all" * 10)
    out = tmp_path / "out"
    code = main(_args(tiny_weights, "--videos", str(spec), "--out", str(out)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_a_video_failing_half_way_is_recorded_and_the_others_run(inputs, tiny_weights, tmp_path, capsys,
                                                                 monkeypatch):
    import vdit.inference.export as export
    from vdit.errors import DataError

    real = export._write_outputs

    def failing(predictor, source, texts, partial, progress):
        if source.path.name == "b_clip.mp4":
            raise DataError(f"cannot decode video {source.path}: truncated")
        return real(predictor, source, texts, partial, progress)

    monkeypatch.setattr(export, "_write_outputs", failing)
    out = tmp_path / "out"
    assert main(_args(tiny_weights, "--videos", str(inputs), "--out", str(out))) == 1
    captured = capsys.readouterr()
    assert "segmented 2 of 3 video(s)" in captured.out
    assert captured.err.strip().splitlines() == [
        f"vdit segment: {inputs / 'b_clip.mp4'}: cannot decode video {inputs / 'b_clip.mp4'}: truncated"]
    batch = json.loads((out / "batch_summary.json").read_text())
    assert [v["status"] for v in batch["videos"]] == ["done", "failed", "done"]
    assert "truncated" in batch["videos"][1]["error"] and not (out / "b_clip").exists()


def test_progress_bar_on_a_terminal_only(inputs, tiny_weights, tmp_path, capsys, monkeypatch):
    out = tmp_path / "quiet"
    assert main(_args(tiny_weights, "--videos", str(inputs), "--out", str(out))) == 0
    assert capsys.readouterr().err == ""  # not a terminal (a log, CI): nothing

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert main(_args(tiny_weights, "--videos", str(inputs), "--out", str(tmp_path / "tty"))) == 0
    drawn = screen.getvalue()
    assert "videos" in drawn and "3/3" in drawn and "frame" in drawn and "\r" in drawn

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert main(_args(tiny_weights, "--video", str(inputs / "b_clip.mp4"), "--out", str(tmp_path / "one"))) == 0
    assert "3/3" in screen.getvalue() and "b_clip.mp4" in screen.getvalue()  # frames of the one video

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert main(_args(tiny_weights, "--videos", str(inputs), "--out", str(tmp_path / "q"), "--quiet")) == 0
    assert screen.getvalue() == ""
