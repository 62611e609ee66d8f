"""Issue 20, reliability: the pieces behind the bad-input battery, each pinned on its own.

--version; Ctrl-C (exit 130, one line, the unfinished output removed); a killed `vdit segment`'s partial
folder cleaned by the next run; strict JSON wherever vdit writes JSON; 16-bit PNGs scaled, not
clipped; the built-in model's one-line note outside its world; `vdit evaluate` at the model's input size.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vdit.cli.main import EXIT_INTERRUPTED, main
from vdit.mini.builtin import BUILTIN_WEIGHTS_DIR


def _strict_loads(text: str):
    """json.loads that rejects the NaN / Infinity extensions Python's json accepts by default."""
    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def _scene(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 120, np.uint8) + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
    img[h // 4: h // 2, w // 4: w // 2] = (215, 40, 40)
    return img


# ---------------------------------------------------------------------------------------------- --version, Ctrl-C


def test_version(capsys):
    from vdit import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"vdit {__version__}"


def test_ctrl_c_mid_run_exits_130_in_one_line_and_removes_the_output(tmp_path, capsys, monkeypatch):
    import vdit.inference.export as export

    Image.fromarray(_scene()).save(tmp_path / "frame.png")
    real = export.write_mask_png
    calls = []

    def interrupted(path, mask):  # Ctrl-C arrives while the masks are being written
        calls.append(path)
        real(path, mask)
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "write_mask_png", interrupted)
    out = tmp_path / "new" / "out"
    code = main(["segment", "--video", str(tmp_path / "frame.png"), "--text", "the red square", "--out", str(out),
                 "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert calls and code == EXIT_INTERRUPTED == 130
    assert err.strip() == "vdit segment: interrupted"
    assert not (tmp_path / "new").exists()  # the run created new/out, so it removes both


# ---------------------------------------------------------------------------------------------- partial folders


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_partials_are_removed_live_and_foreign_ones_kept(tmp_path):
    from vdit.inference.export import PARTIAL_PREFIX, prepare_output

    host = socket.gethostname()
    out = tmp_path / "out"
    names = {
        "dead": f"{PARTIAL_PREFIX}{_dead_pid()}@{host}-abc123",
        "legacy": f"{PARTIAL_PREFIX}k2j4h5g6",  # an earlier vdit's name, without an owner
        "live": f"{PARTIAL_PREFIX}{os.getpid()}@{host}-zzz999",
        "foreign": f"{PARTIAL_PREFIX}1@another-host.example-q1w2e3",
    }
    for name in names.values():
        (out / name / "masks").mkdir(parents=True)
    _, partial = prepare_output(out)
    left = {p.name for p in out.iterdir()}
    assert left == {names["live"], names["foreign"], partial.name}
    assert partial.name.startswith(f"{PARTIAL_PREFIX}{os.getpid()}@{host}-")


KILLED_SEGMENT = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import vdit.inference.export as export
    real = export.write_mask_png
    def dying(path, mask):  # SIGKILL while writing the second mask: no cleanup code can run
        real(path, mask)
        if path.name == "00001.png":
            os.kill(os.getpid(), signal.SIGKILL)
    export.write_mask_png = dying
    from vdit.cli.main import main
    main(sys.argv[1:])
""")


def test_a_killed_segment_leaves_a_partial_that_the_next_run_removes(tmp_path, capsys):
    from vdit.data.video_io import write_video
    from vdit.inference.export import PARTIAL_PREFIX

    video = write_video(tmp_path / "clip.mp4", np.stack([_scene(seed=s) for s in range(3)]), 10)
    out = tmp_path / "out"
    argv = ["segment", "--video", str(video), "--text", "the red square", "--out", str(out), "--quiet",
            "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLED_SEGMENT, *argv], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    partials = list(out.glob(f"{PARTIAL_PREFIX}*"))
    assert len(partials) == 1 and (partials[0] / "masks" / "0" / "00001.png").is_file()
    assert not (out / "summary.json").exists()

    assert main(argv) == 0
    assert not list(out.glob(f"{PARTIAL_PREFIX}*"))
    assert sorted(p.name for p in (out / "masks" / "0").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert _strict_loads((out / "summary.json").read_text())["num_frames"] == 3


# ---------------------------------------------------------------------------------------------- strict JSON


def test_dumps_json_writes_null_for_non_finite_numbers_or_refuses():
    from vdit.fileio import dumps_json

    payload = {"J&F": float("nan"), "scores": [1.5, float("inf"), np.float32("-inf"), np.float64(0.25)],
               "n": np.int64(3), "ok": np.bool_(True), "nested": {"t": (float("nan"), "x")}}
    text = dumps_json(payload)
    assert _strict_loads(text) == {"J&F": None, "scores": [1.5, None, None, 0.25], "n": 3, "ok": True,
                                   "nested": {"t": [None, "x"]}}
    with pytest.raises(ValueError, match=r"J&F is nan"):
        dumps_json(payload, nonfinite="error")
    with pytest.raises(ValueError, match=r"scores\[1\] is inf"):
        dumps_json({"scores": payload["scores"]}, nonfinite="error")
    assert json.loads(dumps_json({"a": 1.0})) == {"a": 1.0}


def test_summary_json_is_strict():
    from vdit.inference.export import summary_json

    text = summary_json({"frame_scores": [[0.5, float("nan")]], "elapsed_s": float("inf"), "texts": ["a"]})
    assert _strict_loads(text) == {"frame_scores": [[0.5, None]], "elapsed_s": None, "texts": ["a"]}


def test_metrics_and_eval_json_are_strict(tmp_path, capsys):
    from vdit.cli.score import _write_json
    from vdit.fileio import write_json

    write_json(tmp_path / "metrics.json", {"J&F": math.nan, "per_expression": {"v_0": [math.inf, 0.5]}})
    assert _strict_loads((tmp_path / "metrics.json").read_text()) == {"J&F": None,
                                                                      "per_expression": {"v_0": [None, 0.5]}}
    _write_json(str(tmp_path / "eval.json"), {"overall_iou": math.nan})
    assert _strict_loads((tmp_path / "eval.json").read_text()) == {"overall_iou": None}


def test_checkpoint_json_refuses_non_finite_values(tmp_path):
    from vdit.engine.checkpoint import CheckpointError, _write_json

    with pytest.raises(CheckpointError, match=r"scaler.scale is inf"):
        _write_json(tmp_path / "state.json", {"scaler": {"scale": math.inf}})
    assert not (tmp_path / "state.json").exists()


def test_no_bare_json_dumps_left_in_the_writers_of_this_issue():
    """Every JSON writer of the modules issue 20 covers goes through dumps_json (grep json.dump)."""
    root = Path(__file__).resolve().parents[2] / "vdit"
    files = [*root.glob("cli/*.py"), *root.glob("inference/*.py"), root / "engine" / "checkpoint.py",
             root / "fileio.py", root / "engine" / "run_log.py", root / "convert" / "official.py",
             root / "models" / "vdit.py", root / "models" / "model_card.py", root / "mini" / "build.py",
             root / "mini" / "train.py", *(root / "data" / f"{n}.py" for n in ("ytvos", "jhmdb", "a2d", "refcoco"))]
    offenders = []
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#")[0]
            calls = re.findall(r"\bjson\.dumps?\((\w*)", code)
            # allowed: dumps_json's own call (allow_nan=False) and summary_json's key strings
            if calls and "allow_nan=False" not in code and calls != ["k"]:
                offenders.append(f"{f.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, offenders


# ---------------------------------------------------------------------------------------------- 16-bit images


def _png_rgb16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit RGB PNG written by hand (PNG spec: IHDR bit depth 16, colour type 2, filter 0 rows)."""
    import struct
    import zlib

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    from vdit.data.video_io import read_image

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (20, 30)).astype(np.uint16)
    grey[0, :4] = (0, 1, 65534, 65535)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = np.asarray(read_image(tmp_path / "g16.png"))
    expected = np.floor(grey.astype(np.float64) * 255.0 / 65535.0 + 0.5).astype(np.uint8)  # v / 257, rounded
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], expected)
    assert (rgb < 255).mean() > 0.9  # the clipping bug made almost every pixel 255


def test_16bit_rgb_png_keeps_its_brightness(tmp_path):
    from vdit.data.video_io import read_image

    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65536, (9, 7, 3)).astype(np.uint16)
    rgb = np.asarray(read_image(_png_rgb16(tmp_path / "rgb16.png", arr))).astype(np.int64)
    assert np.abs(rgb - np.floor(arr / 257.0 + 0.5)).max() <= 1


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32bit_and_float_images_are_refused(tmp_path, mode):
    from vdit.data.video_io import read_image
    from vdit.errors import DataError

    Image.fromarray(np.full((8, 8), 70000, np.int32 if mode == "I" else np.float32), mode).save(tmp_path / "x.tif")
    with pytest.raises(DataError, match="no defined brightness range"):
        read_image(tmp_path / "x.tif")


def test_16bit_png_segments_exactly_like_its_8bit_twin(tmp_path, capsys):
    """Through `vdit segment`: a 16-bit PNG holding v * 257 is the 8-bit PNG holding v."""
    grey8 = _scene()[..., 0]
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    for name in ("g8", "g16"):
        assert main(["segment", "--video", str(tmp_path / f"{name}.png"), "--text", "the red square",
                     "--out", str(tmp_path / f"out_{name}"), "--quiet", "--device", "cpu"]) == 0
    a = _strict_loads((tmp_path / "out_g8" / "summary.json").read_text())
    b = _strict_loads((tmp_path / "out_g16" / "summary.json").read_text())
    assert a["frame_scores"] == b["frame_scores"] and a["chosen_query"] == b["chosen_query"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out_g8" / "masks" / "0" / "00000.png")),
                                  np.asarray(Image.open(tmp_path / "out_g16" / "masks" / "0" / "00000.png")))


# ---------------------------------------------------------------------------------------------- built-in model note


def test_builtin_domain_note():
    from vdit.mini.builtin import builtin_domain_note

    assert builtin_domain_note(["the small red circle moving left", "the star to the left of the blue square."],
                               (64, 64)) is None
    note = builtin_domain_note(["a dog running on the beach"], (64, 64))
    assert "'beach', 'dog', 'on' ... are outside its vocabulary" in note  # sorted, the first three
    assert "vdit convert-official" in note and "\n" not in note
    assert "the frames are 1280x720, not 64x64" in builtin_domain_note(["the red circle"], (720, 1280))
    assert "'🐶'" in builtin_domain_note(["the 🐶"], (64, 64))


def test_segment_says_it_once_and_only_for_the_builtin_model(tmp_path, capsys):
    import shutil

    Image.fromarray(_scene(67, 101)).save(tmp_path / "photo.png")
    base = ["segment", "--video", str(tmp_path / "photo.png"), "--text", "a dog", "--text", "a cat", "--quiet",
            "--device", "cpu"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: the built-in model knows only the miniature world")
    weights = shutil.copytree(BUILTIN_WEIGHTS_DIR, tmp_path / "w")
    assert main(base + ["--out", str(tmp_path / "b"), "--weights", str(weights)]) == 0
    assert capsys.readouterr().err.strip() == ""


# ---------------------------------------------------------------------------------------------- evaluate input size


@pytest.fixture(scope="module")
def mini_bench(tmp_path_factory):
    """One generated 64x64 video of the miniature world's kind (valid split, with Annotations)."""
    from vdit.data.synthetic import make_synthetic_benchmark

    root = tmp_path_factory.mktemp("mini_bench") / "bench"
    make_synthetic_benchmark(root, num_train_videos=0, num_valid_videos=1, num_heldout_videos=0, num_frames=3,
                             height=64, width=64, seed=0, distinct_colours=True)
    return root


def test_evaluate_runs_the_builtin_head_at_its_own_input_size(mini_bench, tmp_path, capsys, monkeypatch):
    from vdit.inference.predictor import VDITPredictor

    seen = []
    real = VDITPredictor.preprocess

    def spy(self, frames, start=0, original=None):
        x, orig = real(self, frames, start, original)
        seen.append(tuple(x.shape[-2:]))
        return x, orig

    monkeypatch.setattr(VDITPredictor, "preprocess", spy)
    out = tmp_path / "eval"
    args = ["evaluate", "--preset", "ytvos", "--weights", str(BUILTIN_WEIGHTS_DIR), "--data", str(mini_bench),
            "--out", str(out), "--device", "cpu", "--no-amp"]
    assert main(args) == 0
    metrics = _strict_loads((out / "metrics.json").read_text())
    assert metrics["short_side"] == 64 and seen and set(seen) == {(64, 64)}  # not 360
    err = capsys.readouterr().err
    assert err == ""  # stderr is not a terminal here: no progress bar, nothing in a log
    seen.clear()
    assert main(args + ["--short-side", "96", "--quiet"]) == 0  # an explicit size still wins
    assert set(seen) == {(96, 96)} and _strict_loads((out / "metrics.json").read_text())["short_side"] == 96


def test_evaluate_progress_draws_steps_over_each_other_on_a_terminal():
    import io

    from vdit.cli.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    progress = Progress(True, stream=screen)
    progress.start(total=2, unit="video")
    progress.step("[1/2] bear: anno_0 (2 object(s)), frames 36 of 50")
    progress.step("[1/2] bear: anno_0 (2 object(s)), frames 50 of 50")
    progress.advance("[1/2] bear: 8 expression(s), 50 frames")
    progress.close()
    text = screen.getvalue()
    assert text.count("\n") == 1 and "1/2" in text and "frames 50 of 50" in text
    assert "\r" in text  # the step lines were drawn over each other, not scrolled
