import argparse
import hashlib
import json
import os

import numpy as np
import pytest

from vdit.cli import data as data_cli
from vdit.data.davis import (
    RefDAVISDataset, convert_davis_to_ytvos, parse_davis_text_annotations, write_davis_release,
)
from vdit.data.png import read_index_png
from vdit.errors import ConfigError, DataError

H, W = 20, 32


def _video(t, n_obj, seed):
    rs = np.random.RandomState(seed)
    frames = rs.randint(0, 255, (t, H, W, 3), dtype=np.uint8)
    masks = np.zeros((t, H, W), dtype=np.uint8)
    for o in range(1, n_obj + 1):
        masks[:, 2:8, 4 * o:4 * o + 3] = o
    return frames, masks


TEXTS = {
    # names as written in the text files: two of them carry the release's typos
    "clasic-car": {1: ("a car", "the car driving", "gray car", "the classic car moving")},
    "bear": {1: ("a bear", "bear walking", "brown bear", "the bear walks")},
    "dog-scale": {
        2: ("the small dog", "small dog running", "petit chien é", "tiny dog"),
        1: ("the big dog", "big dog sitting", "le grand chien à droite", "large dog"),
    },
}


def make_release(root):
    write_davis_release(
        root,
        videos={"classic-car": _video(3, 1, 0), "bear": _video(4, 1, 1), "dogs-scale": _video(5, 2, 2)},
        splits={"train": ["classic-car", "bear"], "val": ["dogs-scale"]},
        text_annotations=TEXTS,
        semantics={"classic-car": {1: "car"}, "bear": {1: "bear"}, "dogs-scale": {1: "dog", 2: "dog"}},
    )
    return root


def _snapshot(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[p] = (hashlib.sha256(fh.read()).hexdigest(), os.stat(p).st_mtime_ns)
    return out


def test_release_writer_encodings(tmp_path):
    make_release(tmp_path)
    raw = (tmp_path / "davis_text_annotations" / "Davis17_annot2.txt").read_bytes()
    assert "é".encode("latin-1") in raw
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    parsed = parse_davis_text_annotations(tmp_path / "davis_text_annotations" / "Davis17_annot2.txt", "latin-1")
    assert parsed["dogs-scale"][2] == "petit chien é"
    assert "classic-car" in parsed and "clasic-car" not in parsed


def test_convert_layout_order_and_source_untouched(tmp_path):
    src = make_release(tmp_path / "refer_davis")
    before = _snapshot(src)
    out = tmp_path / "converted"
    summary = convert_davis_to_ytvos(src, out)
    assert _snapshot(src) == before
    assert summary.videos == {"train": 2, "valid": 1}
    assert summary.expressions == {"train": 8, "valid": 8}
    me = json.loads((out / "meta_expressions" / "valid" / "meta_expressions.json").read_text(encoding="utf-8"))
    exps = me["videos"]["dogs-scale"]["expressions"]
    # 4k+a: object 1 first (sorted by id), annotator-1 first-frame, a1 full, a2 first-frame, a2 full
    assert [exps[str(i)]["exp"] for i in range(8)] == [
        "the big dog", "big dog sitting", "le grand chien à droite", "large dog",
        "the small dog", "small dog running", "petit chien é", "tiny dog",
    ]
    assert [exps[str(i)]["obj_id"] for i in range(8)] == ["1"] * 4 + ["2"] * 4
    assert me["videos"]["dogs-scale"]["frames"] == [f"{i:05d}" for i in range(5)]
    frame = out / "valid" / "JPEGImages" / "dogs-scale" / "00002.jpg"
    assert frame.is_symlink()
    assert frame.resolve() == (src / "DAVIS" / "JPEGImages" / "480p" / "dogs-scale" / "00002.jpg").resolve()
    assert (out / "train" / "Annotations" / "classic-car" / "00000.png").is_symlink()
    meta = json.loads((out / "valid" / "meta.json").read_text())
    assert meta["videos"]["dogs-scale"]["objects"] == {"1": {"category": "dog"}, "2": {"category": "dog"}}
    # converting again (same output) works and still leaves the source alone
    convert_davis_to_ytvos(src, out)
    assert _snapshot(src) == before


def test_copy_mode_and_in_place_output(tmp_path):
    src = make_release(tmp_path)
    before = _snapshot(src / "DAVIS")
    convert_davis_to_ytvos(src, link_mode="copy")
    frame = src / "train" / "JPEGImages" / "bear" / "00001.jpg"
    assert frame.is_file() and not frame.is_symlink()
    assert _snapshot(src / "DAVIS") == before
    with pytest.raises(ConfigError, match="inside the source"):
        convert_davis_to_ytvos(src, src / "DAVIS" / "out")
    with pytest.raises(ConfigError):
        convert_davis_to_ytvos(src, tmp_path / "o", link_mode="move")


def test_dataset_on_converted_tree(tmp_path):
    src = make_release(tmp_path / "src")
    convert_davis_to_ytvos(src, tmp_path / "out")
    ds = RefDAVISDataset(tmp_path / "out")
    assert len(ds) == 8 and not ds.train
    s = ds[4]  # object 2, annotator-1 first-frame
    assert s.text == "the small dog" and s.frames.shape[0] == 5 and s.valid.all()
    assert s.meta["obj_ids"] == [2] and s.orig_size == (H, W)
    a2 = RefDAVISDataset(tmp_path / "out", annotation_set=2)
    assert [e.exp_id for e in a2.expressions] == ["2", "6"]
    gt = read_index_png(tmp_path / "out" / "valid" / "Annotations" / "dogs-scale" / "00000.png")
    assert set(np.unique(gt).tolist()) == {0, 1, 2}
    train = RefDAVISDataset(tmp_path / "out", "train", train=True, num_frames=2)
    assert len(train) == 4 * 2 + 4 * 2  # classic-car: ceil(3/2) starts x 4 expressions; bear: ceil(4/2) x 4
    with pytest.raises(ConfigError):
        RefDAVISDataset(tmp_path / "out", annotation_set=4)


def test_bad_release(tmp_path):
    src = make_release(tmp_path)
    bad = src / "davis_text_annotations" / "Davis17_annot1.txt"
    bad.write_text('bear 1 "ok"\nbear\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"Davis17_annot1.txt:2"):
        convert_davis_to_ytvos(src, tmp_path / "o")
    bad.write_text('bear x "what"\n', encoding="utf-8")
    with pytest.raises(DataError, match="not an integer"):
        convert_davis_to_ytvos(src, tmp_path / "o")
    bad.unlink()
    with pytest.raises(DataError, match="Davis17_annot1.txt"):
        convert_davis_to_ytvos(src, tmp_path / "o")
    with pytest.raises(DataError, match="DAVIS release not found"):
        convert_davis_to_ytvos(tmp_path / "nothing", tmp_path / "o")


def test_incomplete_object_left_out(tmp_path):
    src = make_release(tmp_path)
    path = src / "davis_text_annotations" / "Davis17_annot2_full_video.txt"
    lines = path.read_bytes().decode("latin-1").splitlines(keepends=True)
    path.write_bytes("".join(line for line in lines if not line.startswith("dog-scale 2")).encode("latin-1"))
    with pytest.warns(RuntimeWarning, match="object 2"):
        summary = convert_davis_to_ytvos(src, tmp_path / "o")
    assert summary.expressions["valid"] == 4


def test_cli_convert_davis(tmp_path, capsys):
    src = make_release(tmp_path / "src")
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "convert-davis", "--davis-root", str(src), "--out", str(tmp_path / "o"),
                              "--link", "copy"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == {"train": 2, "valid": 1}
    assert not (tmp_path / "o" / "valid" / "JPEGImages" / "dogs-scale" / "00000.jpg").is_symlink()
