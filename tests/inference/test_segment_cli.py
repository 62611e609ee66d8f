"""`vdit segment` end to end on the tiny model: a real video, frames folders, images, and bad inputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vdit.cli.main import main
from vdit.errors import DataError
from vdit.inference.windows import window_bounds
from vdit.models.vdit import WEIGHTS_NAME

SHORT = "64"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["segment", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _decode(path: Path) -> tuple[int, float, tuple[int, int]]:
    """(frames decoded, average fps, (H, W)) read back with PyAV."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f for f in c.decode(stream)]
        return len(frames), float(stream.average_rate), (frames[0].height, frames[0].width)


def _write_frames(folder: Path, frames, ext: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}{ext}")
    return folder


def _assert_nothing_presented(out: Path) -> None:
    """A failed run leaves no summary.json and no partial folder behind."""
    if out.exists():
        assert not (out / "summary.json").exists()
        assert not list(out.glob(".partial-*"))


def test_segment_real_video(shared_dir, tiny_weights, tmp_path, capsys):
    video = shared_dir / "videos" / "running_dog.mp4"
    n_in, fps_in, (h, w) = _decode(video)
    out = tmp_path / "dog"
    code, stdout, err = _run(capsys, "--video", str(video), "--text", "a dog is running on the beach",
                             "--text", "the sea", "--weights", str(tiny_weights), "--out", str(out),
                             "--short-side", SHORT, "--window", "32", "--device", "cpu")
    assert code == 0, err
    assert "segmented" in stdout
    n_out, fps_out, size_out = _decode(out / "overlay.mp4")
    assert (n_out, size_out) == (n_in, (h, w)) and fps_out == pytest.approx(fps_in)
    for k in range(2):
        pngs = sorted((out / "masks" / str(k)).glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(n_in)]
        with Image.open(pngs[0]) as img:
            assert img.mode == "L" and img.size == (w, h)
            assert set(np.unique(np.asarray(img)).tolist()) <= {0, 255}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_frames"] == n_in and summary["fps"] == pytest.approx(fps_in)
    assert summary["texts"] == ["a dog is running on the beach", "the sea"]
    assert summary["windows"] == [list(b) for b in window_bounds(n_in, 32)]
    assert all(len(q) == len(summary["windows"]) for q in summary["chosen_query"])
    assert all(len(s) == n_in for s in summary["frame_scores"])
    assert summary["paths"]["overlay"] == "overlay.mp4"
    assert not list(out.glob(".partial-*"))
    # the overlay is the frames tinted where (and only where) the masks are
    area = np.array(summary["mask_area"])
    assert area.shape == (2, n_in) and (area > 0).any()


def test_frames_folder_image_and_rerun(tiny_weights, make_frames, tmp_path, capsys):
    frames = make_frames(5)
    folder = _write_frames(tmp_path / "frames", frames)
    out = tmp_path / "out"
    code, _, err = _run(capsys, "--video", str(folder), "--text", "red square", "--text", "b", "--text", "c",
                        "--weights", str(tiny_weights), "--out", str(out), "--short-side", SHORT, "--fps", "12")
    assert code == 0, err
    assert _decode(out / "overlay.mp4")[:2] == (5, 12.0)
    assert len(list((out / "masks" / "2").glob("*.png"))) == 5
    # a second run into the same folder replaces the outputs (one text now: masks/1 and /2 disappear)
    image = tmp_path / "one.png"
    Image.fromarray(frames[0]).save(image)
    code, _, err = _run(capsys, "--video", str(image), "--text", "red square", "--weights", str(tiny_weights),
                        "--out", str(out), "--short-side", SHORT)
    assert code == 0, err
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["0"]
    assert [p.name for p in (out / "masks" / "0").iterdir()] == ["00000.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_frames"] == 1 and summary["input_kind"] == "image"
    assert _decode(out / "overlay.mp4")[0] == 1


def test_failure_during_the_run_leaves_nothing_presented(tiny_weights, make_frames, tmp_path, capsys,
                                                         monkeypatch):
    import vdit.inference.export as export

    folder = _write_frames(tmp_path / "frames", make_frames(4))
    calls = []

    def failing_png(path, mask):
        calls.append(path)
        if len(calls) == 3:
            raise DataError(f"disk full while writing {path}")
        return Path(path)

    monkeypatch.setattr(export, "write_mask_png", failing_png)
    out = tmp_path / "out"
    code, _, err = _run(capsys, "--video", str(folder), "--text", "x", "--weights", str(tiny_weights),
                        "--out", str(out), "--short-side", SHORT, "--window", "2")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code != 0 and len(errors) == 1 and "disk full" in errors[0]
    _assert_nothing_presented(out)
    assert not out.exists()  # the run created the folder, so it removes it again (issue 20)


def _truncated_weights(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    data = (dst / WEIGHTS_NAME).read_bytes()
    (dst / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    return dst


def _mixed_sizes(tmp: Path, make_frames) -> Path:
    folder = _write_frames(tmp / "mixed", make_frames(2))
    Image.fromarray(make_frames(1, h=80, w=96)[0]).save(folder / "00002.png")
    return folder


def _zero_frame_video(tmp: Path) -> Path:
    import av

    path = tmp / "empty.mkv"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()
    container.close()
    return path


@pytest.mark.parametrize("case, message", [
    ("unreadable video", "cannot read video"),
    ("zero-frame video", "no decodable frames"),
    ("mixed sizes", "different sizes"),
    ("missing weights", "weights folder not found"),
    ("no weights", "built-in VD-IT weights are missing"),
    ("truncated checkpoint", "cannot read weights"),
    ("output not writable", "not writable"),
    ("empty text", "empty"),
])
def test_bad_input(case, message, tiny_weights, make_frames, tmp_path, capsys, monkeypatch):
    good_frames = _write_frames(tmp_path / "good", make_frames(2))
    video, weights, out, text = good_frames, str(tiny_weights), tmp_path / "out", "the red square"
    if case == "unreadable video":
        video = tmp_path / "broken.mp4"
        video.write_bytes(b"\x00\x01 this is not a video " * 50)
    elif case == "zero-frame video":
        video = _zero_frame_video(tmp_path)
    elif case == "mixed sizes":
        video = _mixed_sizes(tmp_path, make_frames)
    elif case == "missing weights":
        weights = str(tmp_path / "no_such_weights")
    elif case == "truncated checkpoint":
        weights = str(_truncated_weights(tiny_weights, tmp_path / "truncated"))
    elif case == "output not writable":
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        out = blocker / "out"  # a directory cannot be created under a regular file (even as root)
    elif case == "empty text":
        text = "   "
    elif case == "no weights":  # without --weights the built-in model is used: here it is missing
        import vdit.mini.builtin as builtin_module

        monkeypatch.setattr(builtin_module, "BUILTIN_WEIGHTS_DIR", tmp_path / "no_builtin")
    argv = ["--video", str(video), "--text", text, "--out", str(out), "--short-side", SHORT]
    if case != "no weights":
        argv += ["--weights", weights]
    code, stdout, err = _run(capsys, *argv, "--quiet")
    assert code != 0
    assert message in err and len(err.strip().splitlines()) == 1, err
    _assert_nothing_presented(out)


def test_overlay_tints_only_inside_masks():
    from vdit.inference.overlay import OVERLAY_ALPHA, mask_boundary, overlay_masks, text_color

    frame = np.full((6, 8, 3), 100, np.uint8)
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:5, 1:5] = True  # 4x4 square: boundary ring of 12 pixels, 4 inside
    masks[1, 0, 7] = True
    out = overlay_masks(frame, masks)
    outside = ~masks.any(0)
    np.testing.assert_array_equal(out[outside], frame[outside])
    ring = mask_boundary(masks[0])
    assert ring.sum() == 12 and not ring[2:4, 2:4].any()
    np.testing.assert_array_equal(out[ring], np.broadcast_to(text_color(0), (12, 3)))
    inner = (1 - OVERLAY_ALPHA) * 100 + OVERLAY_ALPHA * np.asarray(text_color(0))
    np.testing.assert_array_equal(out[2, 2], np.rint(inner).astype(np.uint8))
    np.testing.assert_array_equal(out[0, 7], text_color(1))
    assert text_color(0) != text_color(1)
