"""`vdit app`'s processing (no browser, no Gradio): outputs checked against the predictor API and a
restated overlay; every bad input is a one-line error and leaves no run folder behind."""
from __future__ import annotations

import json
import shutil
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vdit.app.process import (MAX_SENTENCE_CHARS, MAX_SENTENCES, REAL_VIDEO_NOTE, STRIP_GAP, STRIP_TILE_HEIGHT,
                              SegmentApp, _CappedSource, folder_samples, is_generated_clip, parse_first_frames,
                              parse_sentences, read_captions)
from vdit.errors import DataError, InputError, VditError

# The documented palette (docs/inference.md): sentence i is tinted with colour i, 50 % over the frame,
# its 1-pixel outline opaque.
COLOURS = [(230, 25, 75), (60, 180, 75)]
ALPHA = 0.5


def _decode(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def _reference_overlay(frame: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Restated: tint each mask in its colour, later sentences over earlier ones, then paint the mask's
    boundary (a mask pixel with a 4-neighbour inside the image that is outside the mask) opaque."""
    out = frame.astype(np.float64)
    h, w = frame.shape[:2]
    for s, mask in enumerate(masks):
        colour = np.asarray(COLOURS[s], dtype=np.float64)
        out[mask] = (1 - ALPHA) * out[mask] + ALPHA * colour
        for y in range(h):
            for x in range(w):
                if not mask[y, x]:
                    continue
                for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= ny < h and 0 <= nx < w and not mask[ny, nx]:
                        out[y, x] = colour
                        break
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _png(data: bytes) -> np.ndarray:
    img = Image.open(BytesIO(data))
    assert img.mode == "L"
    return np.asarray(img)


def test_run_outputs_match_predictor(app_predictor, demo_sample, tmp_path):
    frames = _decode(demo_sample.path)
    t, h, w = len(frames), *frames[0].shape[:2]
    assert (t, h, w) == (12, 64, 64) and demo_sample.generated and len(demo_sample.sentences) == 2
    texts = demo_sample.sentences
    reference = app_predictor.segment(frames, texts)

    calls = []
    app = SegmentApp(app_predictor, tmp_path / "runs")
    # blank lines and stray spaces are not sentences
    result = app.run(str(demo_sample.path), f"  {texts[0]}  \n\n{texts[1]}\n", 0,
                     progress=lambda done, total, desc: calls.append((done, total)))
    assert result.texts == texts and result.num_frames == t
    assert result.message.startswith(f"Segmented {t} frames × 2 sentences") and result.note is None
    # progress: 0 of 12, then the end of each window of 5 frames
    assert calls == [(0, t), (5, t), (10, t), (12, t)]

    # zip: exactly one 0/255 PNG per frame per sentence, equal to the predictor API's masks
    with zipfile.ZipFile(result.masks_zip) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(f"masks/{s}/{f:05d}.png" for s in range(2) for f in range(t))
        for s in range(2):
            for f in range(t):
                png = _png(zf.read(f"masks/{s}/{f:05d}.png"))
                assert png.shape == (h, w) and set(np.unique(png)) <= {0, 255}
                np.testing.assert_array_equal(png > 0, reference[s].masks[f])
    assert any(reference[s].masks.any() for s in range(2))  # the comparison above is not all-background

    summary = json.loads(result.summary.read_text())
    assert summary["texts"] == texts and summary["num_frames"] == t
    assert summary["windows"] == [[0, 5], [5, 10], [10, 12]]
    assert summary["colors"] == [list(c) for c in COLOURS] and summary["app"] is True
    assert summary["weights"] == "built-in"

    # overlay video: every frame, original size, showing the masks. H.264 (4:2:0 chroma) blurs colours on
    # a 64x64 clip, so compare inside the masks only, loosely: the right tint is ~16 grey levels off there,
    # the frame without tint or the colours swapped ~41.
    overlay = _decode(result.overlay)
    masks_at = [np.stack([reference[s].masks[f] for s in range(2)]) for f in range(t)]
    expected = [_reference_overlay(frames[f], masks_at[f]) for f in range(t)]
    assert len(overlay) == t and overlay[0].shape == (h, w, 3)
    used = [f for f in range(t) if masks_at[f].any()]
    assert len(used) >= t // 2
    err_tint = np.mean([np.abs(overlay[f].astype(float) - expected[f])[masks_at[f].any(0)].mean() for f in used])
    err_plain = np.mean([np.abs(overlay[f].astype(float) - frames[f])[masks_at[f].any(0)].mean() for f in used])
    assert err_tint < 25 and err_tint < 0.6 * err_plain, (err_tint, err_plain)

    # frame strip: frames 0, 2, 4, 7, 9, 11 (evenly spaced, ends included), each 2x nearest-enlarged
    # overlay of the lossless masks, then a legend swatch per sentence in its colour
    strip = np.asarray(Image.open(result.strip).convert("RGB"))
    scale = STRIP_TILE_HEIGHT // h
    for k, f in enumerate([0, 2, 4, 7, 9, 11]):
        x0 = STRIP_GAP + k * (w * scale + STRIP_GAP)
        tile = strip[STRIP_GAP:STRIP_GAP + h * scale, x0:x0 + w * scale]
        want = np.repeat(np.repeat(expected[f], scale, axis=0), scale, axis=1)
        np.testing.assert_array_equal(tile, want)
    legend = strip[STRIP_GAP + STRIP_TILE_HEIGHT:]
    for colour in COLOURS:
        assert (legend == colour).all(axis=-1).sum() >= 100, colour  # a 12x12 swatch


def test_real_video_note_first_frames_and_pruning(app_predictor, demo_sample, tmp_path):
    clip = tmp_path / "clip.mp4"  # any name but the generated clip's: a "real" video
    shutil.copy(demo_sample.path, clip)
    app = SegmentApp(app_predictor, tmp_path / "runs", keep_runs=2)
    results = [app.run(str(clip), "the red circle", first) for first in (3, 4, 5)]
    assert [r.num_frames for r in results] == [3, 4, 5]
    assert all(r.note == REAL_VIDEO_NOTE for r in results)
    with zipfile.ZipFile(results[-1].masks_zip) as zf:
        assert sorted(zf.namelist()) == [f"masks/0/{f:05d}.png" for f in range(5)]
    assert len(_decode(results[-1].overlay)) == 5
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == sorted(r.run_dir.name for r in results[1:])  # only the last keep_runs remain
    with_weights = SegmentApp(app_predictor, tmp_path / "runs2", weights="some/dir")
    assert with_weights.run(str(clip), "x", 2).note is None  # a real model: no warning


def _write_text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a video\n")
    return path


BAD_INPUTS = [
    # (name, video, text, first frames, app max_frames, error type, message fragment)
    ("empty text", "clip", " \n\t\n", 0, 300, InputError, "type at least one sentence (one per line)"),
    ("no text", "clip", None, 0, 300, InputError, "type at least one sentence"),
    ("no video", None, "a dog", 0, 300, InputError, "upload a video or pick a sample"),
    ("not a video", "text", "a dog", 0, 300, DataError, "cannot read video notes.txt"),
    ("missing file", "missing", "a dog", 0, 300, DataError, "input not found"),
    ("too long video", "clip", "a dog", 0, 10, InputError, "the video has 12 frames; this app segments at most 10"),
    ("first frames over limit", "clip", "a dog", 50, 10, InputError, "'first frames only' is 50"),
    ("negative first frames", "clip", "a dog", -1, 300, InputError, "positive whole number"),
    ("fractional first frames", "clip", "a dog", 2.5, 300, InputError, "positive whole number"),
    ("too many sentences", "clip", "\n".join(f"s{i}" for i in range(MAX_SENTENCES + 1)), 0, 300, InputError,
     f"at most {MAX_SENTENCES}"),
    ("too long sentence", "clip", "a" * (MAX_SENTENCE_CHARS + 1), 0, 300, InputError, "sentence 1 is too long"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_error(case, app_predictor, demo_sample, tmp_path):
    _, video, text, first, max_frames, exc_type, fragment = case
    path = {"clip": str(demo_sample.path), "text": str(_write_text_file(tmp_path)),
            "missing": str(tmp_path / "gone.mp4"), None: None}[video]
    app = SegmentApp(app_predictor, tmp_path / "runs", max_frames=max_frames)
    with pytest.raises(exc_type) as info:
        app.run(path, text, first)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert str(tmp_path) not in message  # uploads are named by file name only
    assert not list((tmp_path / "runs").iterdir())  # nothing of a failed request is left


def test_container_under_declaring_frames_is_caught(tmp_path):
    """The frame limit holds while streaming, not only against the container's declaration."""
    from vdit.inference.io import open_source

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 10 * i, np.uint8)).save(folder / f"{i:05d}.png")
    capped = _CappedSource(**vars(open_source(folder)), cap=3)
    it = iter(capped)
    for _ in range(3):
        next(it)
    with pytest.raises(InputError, match="more than 3 frames"):
        next(it)


def test_parsers():
    assert parse_sentences("a  dog\n\n  the\tball ") == ["a dog", "the ball"]
    assert parse_first_frames(None) is None and parse_first_frames(0) is None and parse_first_frames(7.0) == 7
    with pytest.raises(InputError):
        parse_first_frames("many")


def test_samples(tmp_path, demo_sample):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(demo_sample.path, folder / "b.mp4")
    shutil.copy(demo_sample.path, folder / "a-clip.mp4")
    (folder / "notes.txt").write_text("x")
    (folder / "README.md").write_text('| file | caption |\n|---|---|\n| b.mp4 | "A dog is running" |\n')
    assert read_captions(folder) == {"b.mp4": "A dog is running"}
    samples = folder_samples(folder)
    assert [(s.label, s.sentences, s.generated) for s in samples] == [("a-clip.mp4", [], False),
                                                                       ("b.mp4", ["A dog is running"], False)]
    assert folder_samples(None) == [] and folder_samples(tmp_path / "absent") == []
    assert is_generated_clip(demo_sample.path) and not is_generated_clip(folder / "b.mp4")


def test_app_defaults():
    from vdit.app import DEFAULT_WINDOW
    from vdit.inference.windows import DAVIS_WINDOW

    assert DEFAULT_WINDOW == DAVIS_WINDOW  # spec 6.2's clip length


def test_request_handler_shows_one_line(app_predictor, demo_sample, tmp_path, monkeypatch):
    """What the page receives: the message as escaped HTML, outputs cleared; a bug is one line too."""
    from vdit.app.ui import run_request

    app = SegmentApp(app_predictor, tmp_path / "runs")
    status, *outputs = run_request(app, str(demo_sample.path), "", 0)
    assert 'class="vdit-error"' in status and "Error: type at least one sentence (one per line)" in status
    assert outputs == [None] * 4

    weird = tmp_path / "x<b>.txt"
    weird.write_text("no video")
    status, *_ = run_request(app, str(weird), "a dog", 0)
    assert "x&lt;b&gt;.txt" in status and "<b>" not in status

    status, *outputs = run_request(app, str(demo_sample.path), "the green star", 2)
    assert status.startswith("<p>Segmented 2 frames × 1 sentence") and "vdit-error" not in status
    assert [Path(p).name for p in outputs] == ["overlay.mp4", "frame_strip.png", "masks.zip", "summary.json"]

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(app, "run", broken)
    status, *outputs = run_request(app, str(demo_sample.path), "a dog", 0)
    assert status == '<p class="vdit-error">Internal error (RuntimeError: boom); see the server log.</p>'
    assert outputs == [None] * 4
    assert issubclass(DataError, VditError)
