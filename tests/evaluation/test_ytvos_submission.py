"""Ref-YouTube-VOS submission writer, zip and validator."""
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from vdit.errors import DataError, EvaluationError
from vdit.evaluation.ytvos_submission import (mask_png_path, validate_submission, write_expression_masks,
                                              zip_submission)

META = {"videos": {
    "vid1": {"expressions": {"0": {"exp": "a cat", "obj_id": "1"}, "1": {"exp": "a dog", "obj_id": "2"}},
             "frames": ["00000", "00005", "00010"]},
    "vid2": {"expressions": {"0": {"exp": "a car", "obj_id": "1"}}, "frames": ["00000", "00003"]},
}}
SIZES = {"vid1": (12, 8), "vid2": (10, 6)}  # (W, H)


@pytest.fixture
def submission(tmp_path):
    rng = np.random.default_rng(0)
    out = tmp_path / "out"
    for vid, entry in META["videos"].items():
        w, h = SIZES[vid]
        for exp_id in entry["expressions"]:
            write_expression_masks(out, vid, exp_id, entry["frames"],
                                   rng.random((len(entry["frames"]), h, w)) > 0.5)
    meta = tmp_path / "meta_expressions.json"
    meta.write_text(json.dumps(META))
    frames = tmp_path / "ytvos" / "valid" / "JPEGImages"
    for vid, entry in META["videos"].items():
        (frames / vid).mkdir(parents=True)
        for f in entry["frames"]:
            Image.new("RGB", SIZES[vid]).save(frames / vid / f"{f}.jpg")
    return out, meta, tmp_path


def test_writer_format_and_roundtrip(submission):
    out, meta, tmp = submission
    png = mask_png_path(out, "vid1", "1", "00005")
    image = Image.open(png)
    assert png.relative_to(out).as_posix() == "Annotations/vid1/1/00005.png"
    assert image.mode == "L" and image.size == SIZES["vid1"]
    assert set(np.unique(np.asarray(image))) <= {0, 255}
    zip_path = zip_submission(out, tmp / "submission.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    assert "Annotations/vid2/0/00003.png" in names and len(names) == 3 * 2 + 2
    report = validate_submission(zip_path, meta, frames_root=tmp / "ytvos")
    assert report.ok and report.n_expected == report.n_checked == 8
    assert validate_submission(zip_path, meta).ok  # no frames root: consistency check only


def test_writer_rejects_wrong_shape(tmp_path):
    with pytest.raises(EvaluationError, match="vid1 expression 0"):
        write_expression_masks(tmp_path, "vid1", "0", ["00000", "00005"], np.zeros((3, 4, 4)))


def _zip_with(tmp, out, replace: dict, drop=(), extra=()):
    zip_path = tmp / "bad.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted((out / "Annotations").rglob("*.png")):
            name = path.relative_to(out).as_posix()
            if name in drop:
                continue
            zf.writestr(name, replace.get(name, path.read_bytes()))
        for name in extra:
            zf.writestr(name, b"")
    return zip_path


def _png_bytes(array, mode=None):
    import io
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_validator_reports_every_problem_with_names(submission):
    out, meta, tmp = submission
    rgb = _png_bytes(np.zeros((8, 12, 3), np.uint8))
    grey_values = _png_bytes(np.full((8, 12), 7, np.uint8))
    wrong_size = _png_bytes(np.zeros((9, 12), np.uint8))
    zip_path = _zip_with(tmp, out,
                         replace={"Annotations/vid1/0/00005.png": rgb,
                                  "Annotations/vid1/1/00000.png": grey_values,
                                  "Annotations/vid2/0/00003.png": wrong_size,
                                  "Annotations/vid1/1/00010.png": b"garbage"},
                         drop={"Annotations/vid1/0/00010.png"},
                         extra={"Annotations/vid3/0/00000.png"})
    report = validate_submission(zip_path, meta, frames_root=tmp / "ytvos")
    text = "\n".join(report.problems)
    assert not report.ok
    assert "Annotations/vid1/0/00010.png: missing" in text
    assert "Annotations/vid1/0/00005.png: mode 'RGB'" in text
    assert "Annotations/vid1/1/00000.png: pixel values [7]" in text
    assert "Annotations/vid2/0/00003.png: size 12x9, the video's frames are 10x6" in text
    assert "Annotations/vid1/1/00010.png: not a readable PNG" in text
    assert "Annotations/vid3/0/00000.png: unexpected file" in text
    assert len(report.problems) == 6

    # without frames: the odd size is found by consistency within the video
    report = validate_submission(zip_path, meta)
    assert any("Annotations/vid2/0/00003.png: size 12x9 differs from 10x6" in p for p in report.problems)


def test_validator_bad_inputs(submission):
    out, meta, tmp = submission
    zip_path = zip_submission(out, tmp / "submission.zip")
    (tmp / "corrupt.json").write_text('{"videos": ')
    with pytest.raises(DataError, match=r"corrupt\.json: cannot parse json"):
        validate_submission(zip_path, tmp / "corrupt.json")
    with pytest.raises(EvaluationError, match="not found"):
        validate_submission(tmp / "nope.zip", meta)
    (tmp / "notzip.zip").write_bytes(b"hello")
    with pytest.raises(EvaluationError, match=r"notzip\.zip is not a readable zip"):
        validate_submission(tmp / "notzip.zip", meta)


def test_validator_excludes_test_videos(submission):
    out, meta, tmp = submission
    zip_path = _zip_with(tmp, out, replace={}, drop={n for n in
                                                      ("Annotations/vid2/0/00000.png", "Annotations/vid2/0/00003.png")})
    assert not validate_submission(zip_path, meta).ok
    test_meta = tmp / "test_meta.json"
    test_meta.write_text(json.dumps({"videos": {"vid2": META["videos"]["vid2"]}}))
    assert validate_submission(zip_path, meta, exclude_meta_path=test_meta).ok
