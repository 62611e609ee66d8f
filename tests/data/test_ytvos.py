import json
import math
import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vdit.data.png import read_index_png, write_index_png
from vdit.data.types import collate_clips
from vdit.data.video_dataset import LOCAL_MAX_SKIP, sample_clip_indices
from vdit.data.ytvos import RefYTVOSDataset, num_train_samples
from vdit.data.ytvos_writer import write_ytvos_video
from vdit.errors import DataError

H, W = 24, 40


def _video(t, seed, objects):
    """Frames with distinct content per frame, masks with squares for each (obj_id, frames present)."""
    rs = np.random.RandomState(seed)
    frames = rs.randint(0, 255, (t, H, W, 3), dtype=np.uint8)
    masks = np.zeros((t, H, W), dtype=np.uint8)
    for obj, present in objects.items():
        for i in present:
            x = 3 + 8 * (obj - 1) + (i % 3)
            masks[i, 5:15, x:x + 6] = obj
    return frames, masks


def make_ytvos(root, with_valid=True):
    names7 = [f"{5 * i:05d}" for i in range(7)]
    f, m = _video(7, 0, {1: range(7), 2: [0, 1, 2]})
    write_ytvos_video(root, "train", "vid_a", f, m,
                      {"0": {"exp": "The LEFT  dog", "obj_id": "1"}, "1": {"exp": "a cat", "obj_id": "2"}},
                      frame_names=names7, categories={1: "dog", 2: "cat"})
    f, m = _video(12, 1, {1: range(12)})
    write_ytvos_video(root, "train", "vid_b", f, m, {"0": {"exp": "the person", "obj_id": 1}})
    if with_valid:
        f, _ = _video(4, 2, {})
        write_ytvos_video(root, "valid", "vid_v", f, None, {"0": {"exp": "the bird", "obj_id": "1"}})
        f, _ = _video(3, 3, {})
        write_ytvos_video(root, "valid", "vid_t", f, None, {"0": {"exp": "a test video", "obj_id": "1"}})
    return root


def test_writer_layout(tmp_path):
    make_ytvos(tmp_path)
    png = tmp_path / "train" / "Annotations" / "vid_a" / "00010.png"
    with Image.open(png) as img:
        assert img.mode == "P"
    ids = read_index_png(png)
    assert set(np.unique(ids).tolist()) == {0, 1, 2}
    assert (tmp_path / "train" / "JPEGImages" / "vid_a" / "00030.jpg").is_file()
    meta = json.loads((tmp_path / "train" / "meta.json").read_text())
    assert meta["videos"]["vid_a"]["objects"]["2"] == {"category": "cat", "frames": ["00000", "00005", "00010"]}
    me = json.loads((tmp_path / "meta_expressions" / "train" / "meta_expressions.json").read_text())
    assert list(me["videos"]) == ["vid_a", "vid_b"]
    assert me["videos"]["vid_a"]["expressions"]["0"] == {"exp": "The LEFT  dog", "obj_id": "1"}
    assert not (tmp_path / "valid" / "Annotations").exists()


def test_index_png_modes(tmp_path):
    ids = np.array([[0, 1, 2], [255, 3, 0]], dtype=np.uint8)
    write_index_png(tmp_path / "p.png", ids)
    Image.fromarray(ids, mode="L").save(tmp_path / "l.png")
    Image.open(tmp_path / "p.png").convert("RGB").save(tmp_path / "rgb.png")
    for name in ("p.png", "l.png", "rgb.png"):
        assert np.array_equal(read_index_png(tmp_path / name), ids)
    Image.fromarray(np.full((2, 2, 3), 7, dtype=np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(DataError, match="odd.png"):
        read_index_png(tmp_path / "odd.png")


def test_train_index_length_and_samples(tmp_path):
    make_ytvos(tmp_path)
    ds = RefYTVOSDataset(tmp_path, "train", num_frames=5)
    assert len(ds) == 2 * math.ceil(7 / 5) + math.ceil(12 / 5) == num_train_samples(tmp_path, "train", 5)
    s = ds[0]
    assert s.frames.shape[:2] == (5, 3) and s.masks.shape[0] == 5 and s.valid.any()
    assert s.text in ("the left dog", "the right dog")
    assert s.orig_size == (H, W) and s.meta["video_id"] == "vid_a" and s.meta["obj_ids"] == [1]
    assert len(s.meta["frame_ids"]) == 5
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate_clips)))
    assert batch.frames.shape[:3] == (2, 5, 3)


def test_masks_match_object(tmp_path):
    make_ytvos(tmp_path)
    from vdit.data.transforms import ClipTransform
    ds = RefYTVOSDataset(tmp_path, "train", num_frames=5, transform=ClipTransform([]), reverse_prob=0.0)
    s = ds[2]  # vid_a, expression "1" (obj 2: present in frames 0..2 only)
    gt = np.stack([read_index_png(tmp_path / "train" / "Annotations" / "vid_a" / f"{n}.png") == 2
                   for n in s.meta["frame_ids"]])
    assert torch.equal(s.masks.bool(), torch.from_numpy(gt))
    assert s.valid.tolist() == [bool(g.any()) for g in gt]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 9, 36])
def test_sample_clip_indices_properties(n):
    t = 5
    for seed in range(60):
        for frame_id in range(0, n, t):
            idx = sample_clip_indices(frame_id, n, t, random.Random(seed))
            assert len(idx) == t and idx == sorted(idx)
            assert all(0 <= i < n for i in idx) and frame_id in idx
            clone = random.Random(seed)
            before, after = clone.randint(1, LOCAL_MAX_SKIP), clone.randint(1, LOCAL_MAX_SKIP)
            local = [frame_id, max(0, frame_id - before), min(n - 1, frame_id + after)]
            rest = list(idx)
            for i in local:
                rest.remove(i)
            lo, hi = min(local), max(local)
            pool = [i for i in range(n) if i < lo or i >= hi]
            if len(pool) > 2:
                assert all(i < lo or i >= hi for i in rest) and len(set(rest)) == 2
            elif n >= 2:
                assert len(set(rest)) == 2  # drawn from all frames, without replacement


def test_sample_clip_indices_other_lengths():
    assert sample_clip_indices(3, 10, 1, random.Random(0)) == [3]
    idx = sample_clip_indices(3, 10, 2, random.Random(0))
    assert len(idx) == 2 and 3 in idx and 4 <= max(idx) <= 6
    assert len(sample_clip_indices(0, 30, 8, random.Random(0))) == 8


def test_reverse_and_determinism(tmp_path):
    make_ytvos(tmp_path)
    from vdit.data.transforms import ClipTransform
    fwd = RefYTVOSDataset(tmp_path, "train", reverse_prob=0.0, seed=1, transform=ClipTransform([]))
    rev = RefYTVOSDataset(tmp_path, "train", reverse_prob=1.0, seed=1, transform=ClipTransform([]))
    for i in range(len(fwd)):
        a, b = fwd[i].meta["frame_indices"], rev[i].meta["frame_indices"]
        assert a == sorted(a) and b == sorted(b, reverse=True)
    ds = RefYTVOSDataset(tmp_path, "train", seed=3)
    first = ds[1]
    again = ds[1]
    assert torch.equal(first.frames, again.frames) and first.meta == again.meta
    ds.set_epoch(1)
    other = ds[1]
    assert first.meta["frame_indices"] != other.meta["frame_indices"] or first.frames.shape != other.frames.shape
    reversed_count = 0
    default = RefYTVOSDataset(tmp_path, "train", seed=0, transform=ClipTransform([]))
    for epoch in range(25):
        default.set_epoch(epoch)
        for i in range(len(default)):
            fi = default[i].meta["frame_indices"]
            reversed_count += fi != sorted(fi)
    assert 0.15 < reversed_count / (25 * len(default)) < 0.45


def test_resample_when_object_absent(tmp_path):
    f, m = _video(5, 0, {1: range(5)})
    write_ytvos_video(tmp_path, "train", "v", f, m, {"0": {"exp": "ghost", "obj_id": "7"},
                                                    "1": {"exp": "real", "obj_id": "1"}})
    ds = RefYTVOSDataset(tmp_path, "train")
    s = ds[0]  # the ghost expression has no visible frame -> another index is used
    assert s.meta["exp_id"] == "1" and s.valid.any()
    only_ghost = tmp_path / "g"
    write_ytvos_video(only_ghost, "train", "v", f, m, {"0": {"exp": "ghost", "obj_id": "7"}})
    with pytest.raises(DataError, match="resamples"):
        RefYTVOSDataset(only_ghost, "train", max_resample=3)[0]


def test_eval_mode_whole_video_and_test_exclusion(tmp_path):
    make_ytvos(tmp_path)
    write_ytvos_video(tmp_path, "test", "vid_t", _video(3, 3, {})[0], None, {"0": {"exp": "x", "obj_id": "1"}})
    ds = RefYTVOSDataset(tmp_path, "valid")
    assert [e.video_id for e in ds.expressions] == ["vid_v"]
    s = ds[0]
    assert s.frames.shape[0] == 4 and min(s.frames.shape[-2:]) == 360
    assert s.orig_size == (H, W) and not s.valid.any() and s.masks.sum() == 0
    assert s.meta["has_annotations"] is False
    assert len(RefYTVOSDataset(tmp_path, "valid", exclude_test=False)) == 2
    ev_train = RefYTVOSDataset(tmp_path, "train", train=False)
    full = ev_train[0]
    assert full.frames.shape[0] == 7 and full.valid.all()


def test_missing_frame_file(tmp_path):
    make_ytvos(tmp_path, with_valid=False)
    missing = tmp_path / "train" / "JPEGImages" / "vid_b" / "00003.jpg"
    missing.unlink()
    ds = RefYTVOSDataset(tmp_path, "train", num_frames=12, reverse_prob=0.0)
    vid_b = next(i for i, (e, _) in enumerate(ds.index) if ds.expressions[e].video_id == "vid_b")
    with pytest.raises(DataError, match="00003.jpg"):
        ds[vid_b]
    skip = RefYTVOSDataset(tmp_path, "train", num_frames=12, skip_bad=True)
    with pytest.warns(RuntimeWarning, match="skipping bad sample"):
        s = skip[vid_b]
    assert s.meta["video_id"] == "vid_a" and skip.num_skipped >= 1


def test_corrupt_png(tmp_path):
    make_ytvos(tmp_path, with_valid=False)
    for p in (tmp_path / "train" / "Annotations" / "vid_a").glob("*.png"):
        p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = RefYTVOSDataset(tmp_path, "train")
    with pytest.raises(DataError, match=r"vid_a.*\.png"):
        ds[0]
    skip = RefYTVOSDataset(tmp_path, "train", skip_bad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = skip[0]
    assert s.meta["video_id"] == "vid_b"
    assert skip.num_skipped == sum("skipping bad sample" in str(w.message) for w in caught) >= 1


def test_corrupt_and_missing_meta(tmp_path):
    make_ytvos(tmp_path, with_valid=False)
    path = tmp_path / "meta_expressions" / "train" / "meta_expressions.json"
    path.write_text('{"videos": {"vid_a": ')
    with pytest.raises(DataError, match="meta_expressions.json"):
        RefYTVOSDataset(tmp_path, "train")
    path.write_text('{"videos": {"vid_a": {"frames": ["00000"], "expressions": {"0": {"exp": "x"}}}}}')
    with pytest.raises(DataError, match="obj_id"):
        RefYTVOSDataset(tmp_path, "train")
    with pytest.raises(DataError, match="meta_expressions.json"):
        RefYTVOSDataset(tmp_path, "valid")
    with pytest.raises(DataError, match="not found"):
        RefYTVOSDataset(tmp_path / "nowhere", "train")


def test_meta_pointing_at_missing_frames(tmp_path):
    make_ytvos(tmp_path)
    path = tmp_path / "meta_expressions" / "valid" / "meta_expressions.json"
    data = json.loads(path.read_text())
    data["videos"]["vid_v"]["frames"].append("99999")
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="99999.jpg"):
        RefYTVOSDataset(tmp_path, "valid", exclude_test=False)[0]
    with pytest.warns(RuntimeWarning, match="99999.jpg"):
        skip = RefYTVOSDataset(tmp_path, "valid", exclude_test=False, skip_bad=True)
    assert [e.video_id for e in skip.expressions] == ["vid_t"] and skip.num_skipped == 1


def test_mask_size_mismatch(tmp_path):
    make_ytvos(tmp_path, with_valid=False)
    for p in (tmp_path / "train" / "Annotations" / "vid_b").glob("*.png"):
        write_index_png(p, np.zeros((H + 1, W), dtype=np.uint8))
    ds = RefYTVOSDataset(tmp_path, "train", video_ids=["vid_b"])
    with pytest.raises(DataError, match="size"):
        ds[0]
