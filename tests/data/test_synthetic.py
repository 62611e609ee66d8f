import argparse
import json
import random
import re
from collections import Counter

import numpy as np
import pytest

from vdit.cli import data as data_cli
from vdit.data import synthetic as S
from vdit.data.synthetic import render, scene
from vdit.data.png import read_index_png
from vdit.data.ytvos import num_train_samples
from vdit.errors import ConfigError

_NP = r"(?:(small|large) )?(?:(red|green|blue|yellow|purple|cyan) )?(circle|square|triangle|star|diamond)"
_EXPR = re.compile(
    rf"^the {_NP}(?: moving (left|right|up|down))?"
    rf"(?: (to the left of|to the right of|above|below) the {_NP})?$"
)
_REL = {"to the left of": (0, -1), "to the right of": (0, 1), "above": (1, -1), "below": (1, 1)}


def _match(obj, size, colour, shape, motion=None):
    return (obj["shape"] == shape and (size is None or obj["size"] == size)
            and (colour is None or obj["colour"] == colour) and (motion is None or obj["motion"] == motion))


def resolve(text, objects):
    """Independent reading of an expression against the generated geometry -> matching object ids."""
    m = _EXPR.match(text)
    assert m, f"unparsable expression {text!r}"
    size, colour, shape, motion, rel, a_size, a_colour, a_shape = m.groups()
    heads = [o for o in objects if _match(o, size, colour, shape, motion)]
    if rel is None:
        return [o["obj_id"] for o in heads]
    anchors = [o for o in objects if _match(o, a_size, a_colour, a_shape)]
    assert len(anchors) == 1, f"anchor of {text!r} is ambiguous"
    assert len(heads) >= 2, f"the relation in {text!r} is not needed"
    axis, sign = _REL[rel]
    a = np.asarray(anchors[0]["centres"])[:, axis]
    return [o["obj_id"] for o in heads if (sign * (np.asarray(o["centres"])[:, axis] - a) > 0).all()]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    summary = S.make_synthetic_benchmark(root, num_train_videos=12, num_valid_videos=4, num_heldout_videos=4,
                                         num_frames=8, seed=5)
    return root, summary, json.loads((root / S.INFO_FILE).read_text())


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_byte_identical(tmp_path):
    kw = dict(num_train_videos=3, num_valid_videos=1, num_heldout_videos=1, num_frames=6, height=64, width=96)
    S.make_synthetic_benchmark(tmp_path / "a", seed=11, **kw)
    S.make_synthetic_benchmark(tmp_path / "b", seed=11, **kw)
    S.make_synthetic_benchmark(tmp_path / "c", seed=12, **kw)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_layout_and_summary(bench):
    root, summary, info = bench
    assert summary["splits"]["train"]["videos"] == 12
    for split in S.SPLIT_NAMES:
        me = json.loads((root / "meta_expressions" / split / "meta_expressions.json").read_text())
        assert len(me["videos"]) == summary["splits"][split]["videos"]
        vid, entry = next(iter(me["videos"].items()))
        assert entry["frames"] == [f"{5 * i:05d}" for i in range(8)]
        assert (root / split / "Annotations" / vid / "00035.png").is_file()  # valid/heldout keep GT
        assert (root / split / "JPEGImages" / vid / "00000.jpg").is_file()
        assert sum(len(v["expressions"]) for v in me["videos"].values()) == summary["splits"][split]["expressions"]


def test_expressions_unique_and_resolve_to_their_object(bench):
    root, _, info = bench
    for split, videos in info["splits"].items():
        me = json.loads((root / "meta_expressions" / split / "meta_expressions.json").read_text())
        for vid, v in videos.items():
            texts = [e["exp"] for e in me["videos"][vid]["expressions"].values()]
            assert len(texts) == len(set(texts))
            for exp in me["videos"][vid]["expressions"].values():
                assert resolve(exp["exp"], v["objects"]) == [int(exp["obj_id"])], (vid, exp)


def test_motion_and_masks_match_geometry(bench):
    root, _, info = bench
    for vid, v in info["splits"]["valid"].items():
        masks = np.stack([read_index_png(p) for p in sorted((root / "valid" / "Annotations" / vid).glob("*.png"))])
        for o in v["objects"]:
            c = np.asarray(o["centres"])
            dx, dy = S.DIRECTIONS[o["motion"]]
            assert (np.sign(np.diff(c[:, 0])) == dx).all() and (np.sign(np.diff(c[:, 1])) == dy).all()
            visible = [(masks[t] == o["obj_id"]).any() for t in range(len(c))]
            assert np.mean(visible) >= scene.MIN_VISIBLE_FRAMES
            for t in range(len(c)):
                ys, xs = np.nonzero(masks[t] == o["obj_id"])
                if len(xs):
                    reach = o["radius"] * (render.SQUARE_HALF_SIDE * np.sqrt(2) if o["shape"] == "square" else 1.0)
                    assert np.hypot(xs + 0.5 - c[t, 0], ys + 0.5 - c[t, 1]).max() <= reach + 1.0


def test_text_blind_bound_and_shared_attributes(bench):
    _, _, info = bench
    for split in ("train", "valid"):
        for vid, v in info["splits"][split].items():
            objs = v["objects"]
            assert scene.NUM_OBJECTS_RANGE[0] <= len(objs) <= scene.NUM_OBJECTS_RANGE[1]
            per_obj = Counter(e["obj_id"] for e in v["expressions"])
            assert len(per_obj) >= scene.MIN_TARGETS
            assert max(per_obj.values()) / sum(per_obj.values()) <= 0.5
            for target in per_obj:
                t = objs[target - 1]
                assert any(o is not t and (o["shape"] == t["shape"] or o["colour"] == t["colour"]) for o in objs)


def test_heldout_combinations(bench):
    _, summary, info = bench
    for split in ("train", "valid"):
        for v in info["splits"][split].values():
            assert not any((o["colour"], o["shape"]) in S.HELDOUT_PAIRS for o in v["objects"])
    for v in info["splits"]["heldout"].values():
        held = [o for o in v["objects"] if (o["colour"], o["shape"]) in S.HELDOUT_PAIRS]
        assert len(held) == scene.HELDOUT_OBJECTS
        for e in v["expressions"]:
            o = v["objects"][e["obj_id"] - 1]
            assert (o["colour"], o["shape"]) in S.HELDOUT_PAIRS
            assert f"{o['colour']} " in e["text"] and o["shape"] in e["text"]
    assert summary["params"]["heldout_pairs"] == sorted([list(p) for p in S.HELDOUT_PAIRS])


def test_expression_kinds_present(bench):
    _, summary, _ = bench
    kinds = summary["splits"]["train"]["expression_kinds"]
    assert kinds.get("attribute", 0) > 0 and kinds.get("motion", 0) > 0 and kinds.get("relation", 0) > 0


def test_dataset_reader(bench):
    root, _, _ = bench
    ds = S.SyntheticRefDataset(root, "train", num_frames=4)
    assert len(ds) == num_train_samples(root, "train", 4) and ds.reverse_prob == 0.0
    for i in range(0, len(ds), max(1, len(ds) // 10)):
        s = ds[i]
        assert s.meta["frame_indices"] == sorted(s.meta["frame_indices"]) and s.valid.any()
    ev = S.SyntheticRefDataset(root, "heldout")
    s = ev[0]
    assert s.frames.shape[0] == 8 and s.meta["has_annotations"] and s.valid.sum() >= 6
    assert tuple(s.frames.shape[-2:]) == (scene.DEFAULT_HEIGHT, scene.DEFAULT_WIDTH)


def test_generate_video_in_memory():
    v = S.generate_video(random.Random(0), num_frames=5, height=64, width=80, num_objects=4)
    assert v.frames.shape == (5, 64, 80, 3) and v.frames.dtype == np.uint8
    assert v.masks.shape == (5, 64, 80) and set(np.unique(v.masks)) <= {0, 1, 2, 3, 4}
    assert len(v.objects) == 4 and v.expressions
    assert set(v.expressions_dict()) == {str(i) for i in range(len(v.expressions))}
    with pytest.raises(ConfigError):
        S.generate_video(random.Random(0), height=16)
    with pytest.raises(ConfigError):
        S.generate_video(random.Random(0), num_frames=1)


def test_refuses_foreign_folder_and_overwrites_own(tmp_path):
    (tmp_path / "x.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        S.make_synthetic_benchmark(tmp_path, num_train_videos=1, num_valid_videos=0, num_heldout_videos=0)
    own = tmp_path / "own"
    S.make_synthetic_benchmark(own, num_train_videos=2, num_valid_videos=0, num_heldout_videos=0)
    with pytest.raises(ConfigError, match="overwrite"):
        S.make_synthetic_benchmark(own, num_train_videos=1, num_valid_videos=0, num_heldout_videos=0)
    S.make_synthetic_benchmark(own, num_train_videos=1, num_valid_videos=0, num_heldout_videos=0, overwrite=True)
    me = json.loads((own / "meta_expressions" / "train" / "meta_expressions.json").read_text())
    assert list(me["videos"]) == ["train00000"]


def test_cli_make_synthetic(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "make-synthetic", "--out", str(tmp_path / "b"), "--seed", "3",
                              "--train", "2", "--valid", "1", "--heldout", "1", "--frames", "6",
                              "--height", "64", "--width", "96"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"]["seed"] == 3 and out["splits"]["train"]["videos"] == 2
    assert (tmp_path / "b" / "train" / "JPEGImages" / "train00001" / "00025.jpg").is_file()


@pytest.fixture(scope="module")
def colour_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn_colour")
    summary = S.make_synthetic_benchmark(root, num_train_videos=12, num_valid_videos=4, num_heldout_videos=4,
                                         num_frames=6, height=64, width=64, seed=5, distinct_colours=True)
    return root, summary, json.loads((root / S.INFO_FILE).read_text())


def test_distinct_colours_benchmark(colour_bench):
    """Every object of a video has its own colour and every expression names it; the text-blind bound
    (at least 2 targets, at most half of a video's expressions per object) and held-out pairs still hold."""
    root, summary, info = colour_bench
    assert summary["params"]["distinct_colours"] is True
    for split, videos in info["splits"].items():
        me = json.loads((root / "meta_expressions" / split / "meta_expressions.json").read_text())
        for vid, v in videos.items():
            colours = [o["colour"] for o in v["objects"]]
            assert len(colours) == len(set(colours)), vid
            # shapes still repeat: every object shares its shape with another one
            assert all(sum(o["shape"] == t["shape"] for o in v["objects"]) >= 2 for t in v["objects"]), vid
            per_obj = Counter(e["obj_id"] for e in v["expressions"])
            assert len(per_obj) >= scene.MIN_TARGETS and max(per_obj.values()) / sum(per_obj.values()) <= 0.5
            for exp in me["videos"][vid]["expressions"].values():
                target = v["objects"][int(exp["obj_id"]) - 1]
                assert f" {target['colour']} " in f" {exp['exp']} "
                assert resolve(exp["exp"], v["objects"]) == [int(exp["obj_id"])], (vid, exp)
            assert all(e["kind"] != "relation" for e in v["expressions"])
            held = [o for o in v["objects"] if (o["colour"], o["shape"]) in S.HELDOUT_PAIRS]
            assert len(held) == (scene.HELDOUT_OBJECTS if split == "heldout" else 0)


def test_distinct_colours_off_keeps_the_default_benchmark(tmp_path):
    """The option is off by default and leaves the default benchmark's bytes and parameters unchanged."""
    kw = dict(num_train_videos=2, num_valid_videos=1, num_heldout_videos=1, num_frames=4, height=64, width=64, seed=3)
    S.make_synthetic_benchmark(tmp_path / "a", **kw)
    S.make_synthetic_benchmark(tmp_path / "b", distinct_colours=False, **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert "distinct_colours" not in json.loads((tmp_path / "a" / S.INFO_FILE).read_text())["params"]
