"""The bad-input battery of issue 20: one row per case, every command run in-process.

A failing row asserts the documented exit code (2 for a user error), exactly one line on stderr that
names the problem, no traceback, and nothing left behind: the output folder the command was given
does not exist afterwards (nor any `.partial-*`, run folder or generated benchmark). A row that
legitimately succeeds (an odd frame size, a grey / RGBA / 16-bit image, an emoji text, one frame, a
6000x4000 photo) says so (`ok=True`) and asserts a complete, valid output instead.

Inputs are tiny and built once per module; segmentation rows use the built-in miniature model at its
64 px input size, so the whole table stays well under a minute on two CPU cores.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from vdit.cli.main import main
from vdit.mini.builtin import BUILTIN_WEIGHTS_DIR
from vdit.models.vdit import CONFIG_NAME, WEIGHTS_NAME

MINI_FOUNDATION = BUILTIN_WEIGHTS_DIR.parent / "foundation"
CUDA = torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------- inputs


def _png16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit grey PNG (PIL writes uint16 arrays as mode I;16)."""
    Image.fromarray(arr.astype(np.uint16)).save(path)
    return path


def _video(path: Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    from vdit.data.video_io import write_video

    return write_video(path, frames, fps)


def _cut_mid_stream(path: Path) -> Path:
    """An mp4 with its index first ("faststart") cut at 60%: it opens and its first frames decode, then
    the stream breaks in the middle of the run (after the output folder exists)."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(20):  # noise: every frame is large, so the cut lands mid-stream
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A grey textured background with a red disc (the miniature world's look)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 128, np.uint8) + rng.integers(0, 12, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (min(h, w) / 5) ** 2] = (215, 40, 40)
    return img


def _weights_copy(dst: Path) -> Path:
    """The built-in head as a --weights folder (its config names the shipped foundation)."""
    shutil.copytree(BUILTIN_WEIGHTS_DIR, dst)
    return dst


def _poisoned(dst: Path, value: float) -> Path:
    """A weights folder with one value of one tensor replaced by NaN / Inf (metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    _weights_copy(dst)
    with safe_open(str(dst / WEIGHTS_NAME), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    name = sorted(k for k, t in tensors.items() if t.is_floating_point())[0]
    tensors[name].view(-1)[0] = value
    save_file(tensors, str(dst / WEIGHTS_NAME), metadata=meta)
    return dst


class Payload:
    """Unpickling this calls open(marker, "w"), creating the marker: the code a checkpoint must never run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def inp(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_inputs")
    p: dict[str, Path] = {"root": root}
    scene = _scene(64, 64)
    p["video"] = _video(root / "clip.mp4", np.stack([_scene(64, 64, s) for s in range(3)]))
    p["one_frame"] = _video(root / "one.mp4", scene[None])
    data = p["video"].read_bytes()  # the moov atom is at the end: half a file has no index
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    p["truncated_video"] = root / "truncated.mp4"
    p["cut_video"] = _cut_mid_stream(root / "cut.mp4")
    p["zero_video"] = root / "zero.mp4"
    p["zero_video"].write_bytes(b"")
    p["text_mp4"] = root / "notes.mp4"
    p["text_mp4"].write_text("these are notes, not a video\n" * 40)
    p["text_png"] = root / "notes.png"
    p["text_png"].write_text("these are notes, not an image\n" * 40)
    Image.fromarray(scene).convert("L").save(root / "grey.png")
    Image.fromarray(scene).convert("RGBA").save(root / "rgba.png")
    _png16(root / "grey16.png", scene[..., 0].astype(np.uint16) * 257)
    Image.fromarray(scene[:1, :1]).save(root / "1x1.png")
    Image.fromarray(_scene(67, 101)).save(root / "odd.png")
    big = np.zeros((4000, 6000, 3), np.uint8)  # flat, so the PNG stays small; a red square to find
    big[:] = 128
    big[1000:2600, 1500:3100] = (215, 40, 40)
    Image.fromarray(big).save(root / "big.png")
    for name in ("grey.png", "rgba.png", "grey16.png", "1x1.png", "odd.png", "big.png"):
        p[name] = root / name
    p["file"] = root / "a_file.txt"
    p["file"].write_text("I am a file")

    # weights folders: the built-in head, intact and broken
    p["weights"] = _weights_copy(root / "w_ok")
    p["w_truncated"] = _weights_copy(root / "w_truncated")
    raw = (p["w_truncated"] / WEIGHTS_NAME).read_bytes()
    (p["w_truncated"] / WEIGHTS_NAME).write_bytes(raw[: len(raw) // 2])
    p["w_bad_config"] = _weights_copy(root / "w_bad_config")
    (p["w_bad_config"] / CONFIG_NAME).write_text('{"model": {"head": ')
    p["w_no_config"] = _weights_copy(root / "w_no_config")
    (p["w_no_config"] / CONFIG_NAME).unlink()
    p["w_nan"] = _poisoned(root / "w_nan", float("nan"))
    p["w_inf"] = _poisoned(root / "w_inf", float("inf"))
    p["w_moved_foundation"] = _weights_copy(root / "w_moved_foundation")  # its config names a folder that is gone
    config = json.loads((p["w_moved_foundation"] / CONFIG_NAME).read_text())
    for part in ("t2v", "clip_vision", "text_encoder"):
        config["model"]["foundation"][part] = f"moved-foundation/{part}"
    (p["w_moved_foundation"] / CONFIG_NAME).write_text(json.dumps(config))

    # datasets with a malformed JSON file
    ytvos = root / "ytvos_bad"
    (ytvos / "meta_expressions" / "valid").mkdir(parents=True)
    (ytvos / "valid" / "JPEGImages").mkdir(parents=True)
    (ytvos / "meta_expressions" / "valid" / "meta_expressions.json").write_text('{"videos": {"v0": ')
    p["ytvos_bad"] = ytvos
    synth = root / "synth_bad"  # a generated benchmark whose expressions file is cut short
    (synth / "meta_expressions" / "train").mkdir(parents=True)
    (synth / "train" / "JPEGImages").mkdir(parents=True)
    (synth / "synthetic_benchmark.json").write_text("{}")
    (synth / "meta_expressions" / "train" / "meta_expressions.json").write_text("{not json")
    p["synth_bad"] = synth
    p["bad_json"] = root / "bad.json"
    p["bad_json"].write_text('[{"image_id": 1, ')
    p["preds"] = root / "preds.json"
    p["preds"].write_text("[]")
    from vdit.data.common import write_coco_gt

    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:6] = True
    p["gt"] = write_coco_gt(root / "gt.json", [("img0", mask)])

    # checkpoints for convert-official
    p["marker"] = root / "PAYLOAD_RAN"
    p["evil"] = root / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "args": Payload(p["marker"])}, p["evil"],
               _use_new_zipfile_serialization=False)
    assert not p["marker"].exists()
    p["zero_ckpt"] = root / "zero.pth"
    p["zero_ckpt"].write_bytes(b"")
    return p


# ---------------------------------------------------------------------------------------------- the table


@dataclass
class Row:
    id: str
    argv: Callable[[dict, Path], list[str]]  # (inputs, output path) -> argv
    expect: str | None  # substring of the error line; None for a row that succeeds
    code: int = 2
    check: Callable[[dict, Path], None] | None = None  # success rows: validate the output
    skip: str | None = None


def _seg(video_key: str, *extra: str, text: str = "the red circle", weights: str | None = None):
    def argv(p, out):
        video = str(p[video_key]) if video_key in p else str(p["root"] / video_key)
        args = ["segment", "--video", video, "--text", text, "--out", str(out), "--quiet", "--device", "cpu"]
        if weights:
            args += ["--weights", str(p[weights]) if weights in p else str(p["root"] / weights)]
        return args + list(extra)
    return argv


def _segmented(n_frames: int, size: tuple[int, int]):
    """Success check: summary.json is strict JSON and describes complete masks at the original size."""
    def check(p, out):
        summary = json.loads((out / "summary.json").read_text(),
                             parse_constant=lambda c: pytest.fail(f"summary.json holds a bare {c}"))
        assert summary["num_frames"] == n_frames and tuple(summary["size"]) == size
        masks = sorted((out / "masks" / "0").glob("*.png"))
        assert len(masks) == n_frames
        mask = np.asarray(Image.open(masks[0]))
        assert mask.shape == size and set(np.unique(mask)) <= {0, 255}
        assert (out / "overlay.mp4").stat().st_size > 0
        assert not list(out.glob(".partial-*"))
    return check


def _train(*extra: str, foundation: bool = True, data: str | None = None):
    def argv(p, out):
        args = ["train", "--preset", "tiny_synthetic", "--out", str(out)]
        if foundation:
            args += ["--foundation-root", str(MINI_FOUNDATION)]
        if data:
            args += ["--data-root", str(p[data])]
        return args + list(extra)
    return argv


def _evaluate(*extra: str, weights: str = "weights", data: str = "ytvos_bad"):
    def argv(p, out):
        w = str(p[weights]) if weights in p else str(p["root"] / weights)
        d = str(p[data]) if data in p else str(p["root"] / data)
        return ["evaluate", "--preset", "ytvos", "--weights", w, "--data", d, "--out", str(out),
                "--device", "cpu", "--quiet"] + list(extra)
    return argv


ROWS = [
    # -- segment: videos
    Row("segment/missing-video", _seg("no_such_clip.mp4"), "input not found"),
    Row("segment/zero-byte-video", _seg("zero_video"), "is empty (0 bytes)"),
    Row("segment/truncated-video", _seg("truncated_video"), "cannot read video"),
    Row("segment/text-renamed-mp4", _seg("text_mp4"), "cannot read video"),
    Row("segment/video-cut-mid-stream", _seg("cut_video"), "cannot decode video"),
    Row("segment/one-frame-video (succeeds)", _seg("one_frame"), None, 0, _segmented(1, (64, 64))),
    # -- segment: images
    Row("segment/text-renamed-png", _seg("text_png"), "cannot read image"),
    Row("segment/grey-png (succeeds, converted)", _seg("grey.png"), None, 0, _segmented(1, (64, 64))),
    Row("segment/rgba-png (succeeds)", _seg("rgba.png"), None, 0, _segmented(1, (64, 64))),
    Row("segment/16-bit-png (succeeds, scaled)", _seg("grey16.png"), None, 0, _segmented(1, (64, 64))),
    Row("segment/1x1-png", _seg("1x1.png"), "too small"),
    Row("segment/odd-101x67 (succeeds)", _seg("odd.png"), None, 0, _segmented(1, (67, 101))),
    Row("segment/6000x4000-png (succeeds)", _seg("big.png"), None, 0, _segmented(1, (4000, 6000))),
    # -- segment: texts
    Row("segment/empty-text", _seg("video", text=""), "is empty"),
    Row("segment/whitespace-text", _seg("video", text=" \t\n "), "is empty"),
    Row("segment/20000-char-text", _seg("video", text="x" * 20_000), "20000 characters"),
    Row("segment/emoji-text (succeeds)", _seg("video", text="the 🐶 🔴"), None, 0, _segmented(3, (64, 64))),
    # -- segment: options
    Row("segment/window-0", _seg("video", "--window", "0"), "window must be a positive"),
    Row("segment/window-negative", _seg("video", "--window", "-4"), "window must be a positive"),
    Row("segment/threshold-1.5", _seg("video", "--threshold", "1.5"), "threshold must be in (0, 1)"),
    Row("segment/short-side-8", _seg("video", "--short-side", "8"), "short_side=8"),
    Row("segment/max-frames-0", _seg("video", "--max-frames", "0"), "max_frames must be >= 1"),
    Row("segment/fps-negative", _seg("video", "--fps", "-5"), "fps must be positive"),
    Row("segment/device-cuda-without-gpu", _seg("video", "--device", "cuda"), "CUDA is not available",
        skip="a GPU is present" if CUDA else None),
    Row("segment/unknown-device", _seg("video", "--device", "tpu:9"), "unknown device"),
    Row("segment/out-is-a-file", lambda p, out: _seg("video")(p, p["file"]), "is a file"),
    # -- segment: weights
    Row("segment/weights-folder-missing", _seg("video", weights="no_such_weights"), "weights folder not found"),
    Row("segment/weights-truncated-safetensors", _seg("video", weights="w_truncated"), "model.safetensors"),
    Row("segment/weights-broken-config-json", _seg("video", weights="w_bad_config"), "config.json"),
    Row("segment/weights-missing-config-json", _seg("video", weights="w_no_config"), "has no config.json"),
    Row("segment/weights-nan", _seg("video", weights="w_nan"), "NaN/Inf"),
    Row("segment/weights-inf", _seg("video", weights="w_inf"), "NaN/Inf"),
    Row("segment/weights-foundation-moved", _seg("video", weights="w_moved_foundation"),
        "foundation model folder moved-foundation/t2v (model.foundation.t2v) not found"),
    Row("segment/foundation-override-missing", _seg("video", "--foundation", "clip_vision=no_clip_here"),
        "foundation model folder no_clip_here (model.foundation.clip_vision) not found"),
    Row("segment/other-weights (succeeds)", _seg("video", weights="weights"), None, 0, _segmented(3, (64, 64))),
    # -- train
    Row("train/unknown-preset", lambda p, out: ["train", "--preset", "tiny_synthetc", "--out", str(out)],
        "unknown training preset 'tiny_synthetc'; did you mean 'tiny_synthetic'?"),
    Row("train/unknown-set-key", _train("--set", "train.epoch=2"), "unknown config key train.'epoch'"),
    Row("train/wrongly-typed-set", _train("--set", "train.epochs=two"), "override train.epochs: expected a int"),
    Row("train/no-foundation-folder", _train(foundation=False), "foundation model folder tiny-foundation/t2v"),
    Row("train/out-is-a-file", lambda p, out: _train()(p, p["file"]), "is a file"),
    Row("train/malformed-dataset-json", _train(data="synth_bad"), "cannot parse json"),
    Row("train/resume-missing", lambda p, out: ["train", "--resume", str(p["root"] / "no_run")], "no checkpoint"),
    Row("train/init-from-missing", _train("--init-from", "no_such_weights_dir"), "--init-from no_such_weights_dir"),
    Row("train/zero-frames-per-clip", _train("--set", "train.num_frames=0"), "train.num_frames=0"),
    Row("train/device-cuda-without-gpu", _train("--set", "train.device=cuda", data="synth_bad"), "no CUDA device",
        skip="a GPU is present" if CUDA else None),
    # -- evaluate
    Row("evaluate/weights-folder-missing", _evaluate(weights="nosuchdir"), "weights folder not found"),
    Row("evaluate/malformed-dataset-json", _evaluate(), "cannot parse json"),
    Row("evaluate/threshold-1.5", _evaluate("--threshold", "1.5"), "threshold must be in (0, 1)"),
    Row("evaluate/short-side-8", _evaluate("--short-side", "8"), "short_side=8"),
    Row("evaluate/data-missing", _evaluate(data="no_such_dataset"), "dataset folder not found"),
    Row("evaluate/weights-nan", _evaluate(weights="w_nan"), "NaN/Inf"),
    Row("evaluate/weights-foundation-moved", _evaluate(weights="w_moved_foundation"), "moved-foundation/t2v"),
    # -- score (scoring existing predictions)
    Row("score/a2d-malformed-gt-json", lambda p, out: ["score", "a2d", "--gt", str(p["bad_json"]), "--predictions",
                                                       str(p["preds"]), "--json", str(out / "m.json")], "bad.json"),
    Row("score/refcoco-missing-predictions", lambda p, out: ["score", "refcoco", "--gt", str(p["gt"]),
                                                             "--predictions", str(p["root"] / "none.json")],
        "none.json"),
    Row("score/json-target-is-a-folder", lambda p, out: ["score", "a2d", "--gt", str(p["bad_json"]), "--predictions",
                                                         str(p["preds"]), "--json", str(p["root"])], "is a folder"),
    # -- convert-official
    Row("convert-official/pickle-with-reduce-payload",
        lambda p, out: ["convert-official", str(p["evil"]), str(out)], "refusing to load"),
    Row("convert-official/zero-byte-checkpoint",
        lambda p, out: ["convert-official", str(p["zero_ckpt"]), str(out)], "cannot read checkpoint"),
    Row("convert-official/missing-checkpoint",
        lambda p, out: ["convert-official", str(p["root"] / "none.pth"), str(out)], "checkpoint not found"),
    Row("convert-official/out-is-a-file",
        lambda p, out: ["convert-official", str(p["evil"]), str(p["file"])], "is a file"),
    # -- model-info
    Row("model-info/unknown-preset", lambda p, out: ["model-info", "--preset", "huge"], "unknown model preset 'huge'"),
    Row("model-info/unknown-set-key", lambda p, out: ["model-info", "--set", "head.hiden_dim=8"], "hiden_dim"),
    Row("model-info/wrongly-typed-set", lambda p, out: ["model-info", "--set", "head.hidden_dim=wide"],
        "override head.hidden_dim: expected a int"),
    # -- data
    Row("data/make-synthetic-out-is-a-file", lambda p, out: ["data", "make-synthetic", "--out", str(p["file"])],
        "is a file"),
    Row("data/make-synthetic-zero-frames", lambda p, out: ["data", "make-synthetic", "--out", str(out),
                                                           "--frames", "0"], "--frames must be >= 1"),
    Row("data/convert-davis-missing-root", lambda p, out: ["data", "convert-davis", "--davis-root",
                                                           str(p["root"] / "no_davis"), "--out", str(out)],
        "DAVIS release not found"),
    Row("data/convert-refcoco-unknown-dataset", lambda p, out: ["data", "convert-refcoco", "--coco-root",
                                                                str(p["root"]), "--datasets", "refcocoh"],
        "refcocoh"),
    # -- mini
    Row("mini/eval-weights-folder-missing", lambda p, out: ["mini", "eval", "--weights", "nosuchdir", "--out", str(out),
                                                            "--data", str(out / "bench"), "--threads", "1"],
        "weights folder not found: nosuchdir"),
    Row("mini/train-foundation-missing", lambda p, out: ["mini", "train", "--foundation", "nosuchdir", "--out",
                                                         str(out), "--data", str(out / "bench"), "--threads", "1"],
        "foundation folder not found: nosuchdir"),
    Row("mini/eval-out-is-a-file", lambda p, out: ["mini", "eval", "--out", str(p["file"]), "--data",
                                                   str(p["root"] / "mini_bench"), "--threads", "1"], "is a file"),
]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, inp, tmp_path, capsys, monkeypatch):
    if row.skip:
        pytest.skip(row.skip)
    monkeypatch.chdir(tmp_path)  # relative defaults (tiny-foundation, runs/...) resolve in an empty folder
    out = tmp_path / "out"
    inputs_before = _tree(inp["root"])
    code, stdout, err = _run(row.argv(inp, out), capsys)

    assert "Traceback" not in err + stdout
    assert not inp["marker"].exists(), "a pickled payload was executed"
    assert _tree(inp["root"]) == inputs_before, "an input folder was changed"
    if row.expect is None:
        assert code == 0, err
        row.check(inp, out)
        return
    lines = err.strip().splitlines()
    assert code == row.code, err
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert row.expect in lines[0], lines[0]
    assert lines[0].startswith("vdit "), lines[0]
    assert not out.exists(), f"left behind: {_tree(out)}"
    assert os.listdir(tmp_path) == [], f"left behind in the working folder: {os.listdir(tmp_path)}"


def test_battery_size():
    """The issue asks for at least 35 rows over every command."""
    assert len(ROWS) >= 35
    assert {r.id.split("/")[0] for r in ROWS} >= {"segment", "train", "evaluate", "score", "convert-official",
                                                  "model-info", "data", "mini"}
