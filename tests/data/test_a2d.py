"""A2D-Sentences: real on-disk layout (mp4 + transposed h5 masks + 1-based samples json), windows, errors."""
from __future__ import annotations

import json
import random
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from vdit.data.a2d import (
    A2D_MASK_DIR, A2D_SAMPLES_JSON, A2D_TEST_GT_JSON, A2D_VIDEO_DIRS, A2DSample, A2DSentencesDataset,
    a2d_image_id, centred_window, read_a2d_instance_masks, read_a2d_samples, sparse_train_indices,
    write_a2d_dataset, write_a2d_instance_masks,
)
from vdit.data.transforms import build_transforms
from vdit.data.types import collate_clips
from vdit.errors import ConfigError, DataError
from vdit.models.inputs import IMAGENET_MEAN, IMAGENET_STD

H, W = 32, 48
NUM_VIDEO_FRAMES = 8
GREY_STEP, GREY_BASE = 25, 20  # frame k of every video is a flat grey of GREY_BASE + GREY_STEP * k


def grey_frames(n: int) -> list[np.ndarray]:
    return [np.full((H, W, 3), GREY_BASE + GREY_STEP * k, dtype=np.uint8) for k in range(n)]


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


MASK_A1 = rect(2, 10, 3, 20)
MASK_A3 = rect(12, 30, 25, 44)
MASK_B2 = rect(5, 9, 30, 47)  # the single-instance frame: stored as [W, H]

SAMPLES = {
    "test": [
        A2DSample("A  Man   RUNNING", "vidA", 2, 3),
        A2DSample("a dog on the right", "vidB", 7, 2),
        A2DSample("the ball", "vidA", 5, 4),  # instance present in the h5 but with an empty mask
    ],
    "train": [A2DSample("a man running", "vidA", 2, 1), A2DSample("a dog", "vidB", 7, 2)],
}


def build_tree(root: Path) -> Path:
    annotations = {
        ("vidA", 2): ([1, 3], np.stack([MASK_A1, MASK_A3])),
        ("vidA", 5): ([1, 4], np.stack([MASK_A1, np.zeros((H, W), dtype=bool)])),
        ("vidB", 7): ([2], MASK_B2[None]),
    }
    videos = {"vidA": grey_frames(NUM_VIDEO_FRAMES), "vidB": grey_frames(NUM_VIDEO_FRAMES)}
    return write_a2d_dataset(root, videos, annotations, SAMPLES)


@pytest.fixture(scope="module")
def a2d_root(tmp_path_factory) -> Path:
    return build_tree(tmp_path_factory.mktemp("a2d") / "a2d_sentences")


@pytest.fixture
def a2d_copy(a2d_root, tmp_path) -> Path:
    return Path(shutil.copytree(a2d_root, tmp_path / "a2d_sentences"))


def eval_transform():
    # short side 32 = the native size, so frames and masks keep their pixels
    return build_transforms("a2d", train=False, eval_short_side=H)


def frame_grey_levels(frames: torch.Tensor) -> list[float]:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = (frames * std + mean) * 255.0
    return [float(v) for v in pixels.mean(dim=(1, 2, 3))]


def test_h5_masks_are_stored_transposed_and_read_back(tmp_path):
    multi = write_a2d_instance_masks(tmp_path / "multi.h5", [1, 3], np.stack([MASK_A1, MASK_A3]))
    single = write_a2d_instance_masks(tmp_path / "single.h5", [2], MASK_B2[None])
    with h5py.File(multi) as f:
        assert f["reMask"].shape == (2, W, H)
    with h5py.File(single) as f:
        assert f["reMask"].shape == (W, H)
    ids, masks = read_a2d_instance_masks(multi)
    assert ids == [1, 3] and np.array_equal(masks, np.stack([MASK_A1, MASK_A3]))
    ids, masks = read_a2d_instance_masks(single)
    assert ids == [2] and np.array_equal(masks, MASK_B2[None])


def test_centred_window_clamps_to_the_video():
    assert centred_window(3, 5, 8) == [1, 2, 3, 4, 5]
    assert centred_window(1, 5, 8) == [0, 0, 1, 2, 3]
    assert centred_window(7, 5, 8) == [5, 6, 7, 7, 7]
    assert centred_window(0, 5, 1) == [0, 0, 0, 0, 0]
    assert centred_window(4, 4, 8) == [2, 3, 4, 5]  # [f - T//2, f + (T+1)//2)


def test_sparse_train_indices_follow_the_official_recipe():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 40)
        frame = rng.randrange(n)
        idx = sparse_train_indices(frame, 5, n, rng)
        assert len(idx) == 5 and idx == sorted(idx) and frame in idx
        assert all(0 <= i < n for i in idx)
        # the two local neighbours lie within 3 frames (clamped at the borders)
        near = [i for i in idx if abs(i - frame) <= 3]
        assert len(near) >= 3


def test_samples_json_is_one_based_list(a2d_root):
    samples = read_a2d_samples(a2d_root / A2D_SAMPLES_JSON.format(split="test"))
    assert samples == SAMPLES["test"]
    rows = json.loads((a2d_root / A2D_SAMPLES_JSON.format(split="test")).read_text())
    assert rows[0] == ["A  Man   RUNNING", "vidA", 2, 3]


def test_test_window_sample(a2d_root):
    ds = A2DSentencesDataset(a2d_root, split="test", transform=eval_transform())
    assert len(ds) == 3 and ds.sampling == "window"
    s = ds[0]
    # annotated frame 2 (1-based) = index 1 -> window [-1, 0, 1, 2, 3] clamped -> [0, 0, 1, 2, 3]
    assert s.frames.shape == (5, 3, H, W) and s.masks.shape == (5, H, W)
    assert s.valid_indices == [2]
    assert s.valid.tolist() == [False, False, True, False, False]
    assert torch.equal(s.masks[2].bool(), torch.from_numpy(MASK_A3))
    assert s.masks[[0, 1, 3, 4]].sum() == 0
    levels = frame_grey_levels(s.frames)
    expected = [GREY_BASE + GREY_STEP * i for i in (0, 0, 1, 2, 3)]
    assert np.allclose(levels, expected, atol=4), levels
    assert s.text == "a man running"
    assert s.orig_size == (H, W)
    assert s.meta["image_id"] == a2d_image_id("vidA", 2, 3) == "v_vidA_f_2_i_3"
    assert s.meta["frame_ids"] == ["00001", "00001", "00002", "00003", "00004"]
    # box: cxcywh normalised, from the tight mask box
    y0, y1, x0, x1 = 12, 30, 25, 44
    expected_box = [(x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H]
    assert np.allclose(s.boxes[2].tolist(), expected_box, atol=1e-6)


def test_single_instance_frame_and_video_end(a2d_root):
    ds = A2DSentencesDataset(a2d_root, split="test", transform=eval_transform())
    s = ds[1]
    # frame 7 (1-based) = index 6 of 8 -> [4, 5, 6, 7, 7]
    assert s.valid_indices == [2]
    assert torch.equal(s.masks[2].bool(), torch.from_numpy(MASK_B2))
    levels = frame_grey_levels(s.frames)
    assert np.allclose(levels, [GREY_BASE + GREY_STEP * i for i in (4, 5, 6, 7, 7)], atol=4), levels


def test_absent_instance_is_kept_in_eval_but_not_valid(a2d_root):
    s = A2DSentencesDataset(a2d_root, split="test", transform=eval_transform())[2]
    assert not s.valid.any() and s.masks.sum() == 0 and s.valid_indices == [2]


def test_train_split_uses_sparse_sampling_and_default_transform(a2d_root):
    ds = A2DSentencesDataset(a2d_root, split="train", num_frames=5, seed=3)
    assert ds.sampling == "sparse"
    s = ds[0]
    assert s.frames.shape[0] == 5 and s.frames.shape[1] == 3
    assert min(s.frames.shape[-2:]) >= 288  # training scales 288..512
    assert s.valid_indices is not None and s.valid[s.valid_indices[0]]
    assert int(s.valid.sum()) == 1
    again = ds[0]
    assert torch.equal(again.frames, s.frames) and again.meta["frame_ids"] == s.meta["frame_ids"]
    ds.set_epoch(1)
    assert not torch.equal(ds[0].frames, s.frames)  # another epoch, another random stream
    with pytest.raises(IndexError):
        ds[len(ds)]
    batch = collate_clips([s, ds[1]])
    assert batch.frames.shape[:2] == (2, 5) and batch.frames.shape[-1] % 32 == 0
    assert batch.valid_indices is not None and len(batch.valid_indices) == 2


@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")
def test_coco_gt_json(a2d_root):
    gt = json.loads((a2d_root / A2D_TEST_GT_JSON).read_text())
    ids = [img["id"] for img in gt["images"]]
    assert ids == ["v_vidA_f_2_i_3", "v_vidB_f_7_i_2", "v_vidA_f_5_i_4"]
    assert gt["categories"] == [{"id": 1, "name": "dummy_class"}]
    ann = gt["annotations"][0]
    assert ann["image_id"] == "v_vidA_f_2_i_3" and ann["category_id"] == 1 and ann["iscrowd"] == 0
    decoded = mask_utils.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()})
    assert np.array_equal(decoded.astype(bool), MASK_A3) and ann["area"] == MASK_A3.sum()
    assert gt["images"][1] == {"id": "v_vidB_f_7_i_2", "height": H, "width": W}


def test_release_folder_name_is_accepted(a2d_copy):
    (a2d_copy / A2D_VIDEO_DIRS[0]).rename(a2d_copy / A2D_VIDEO_DIRS[1])
    ds = A2DSentencesDataset(a2d_copy, split="test", transform=eval_transform())
    assert ds.video_dir.name == "clips320H" and ds[0].frames.shape[0] == 5


# --- errors -----------------------------------------------------------------------------------------


def test_corrupt_h5_names_the_file(a2d_copy):
    bad = a2d_copy / A2D_MASK_DIR / "vidA" / "00002.h5"
    bad.write_bytes(b"this is not hdf5")
    ds = A2DSentencesDataset(a2d_copy, split="test", transform=eval_transform())
    with pytest.raises(DataError, match="00002.h5"):
        ds[0]


def test_h5_without_remask_names_the_file(a2d_copy):
    bad = a2d_copy / A2D_MASK_DIR / "vidB" / "00007.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("instance", data=np.array([2.0]))
    with pytest.raises(DataError, match=r"00007\.h5.*reMask"):
        read_a2d_instance_masks(bad)


def test_unknown_instance_names_the_file(a2d_copy):
    path = a2d_copy / A2D_SAMPLES_JSON.format(split="test")
    path.write_text(json.dumps([["x", "vidA", 2, 9]]))
    ds = A2DSentencesDataset(a2d_copy, split="test", transform=eval_transform())
    with pytest.raises(DataError, match=r"00002\.h5: instance 9"):
        ds[0]


def test_undecodable_mp4_names_the_file(a2d_copy):
    (a2d_copy / A2D_VIDEO_DIRS[0] / "vidB.mp4").write_bytes(b"\x00\x01garbage" * 50)
    ds = A2DSentencesDataset(a2d_copy, split="test", transform=eval_transform())
    with pytest.raises(DataError, match="vidB.mp4"):
        ds[1]


def test_frame_beyond_the_video_names_the_video(a2d_copy):
    write_a2d_instance_masks(a2d_copy / A2D_MASK_DIR / "vidB" / "00099.h5", [2], MASK_B2[None])
    (a2d_copy / A2D_SAMPLES_JSON.format(split="test")).write_text(json.dumps([["x", "vidB", 99, 2]]))
    ds = A2DSentencesDataset(a2d_copy, split="test", transform=eval_transform())
    with pytest.raises(DataError, match=r"vidB\.mp4: has 8 frames.*frame 99"):
        ds[0]


@pytest.mark.parametrize("content", ["{not json", json.dumps({"a": 1}), json.dumps([["text", "vid", "x", 1]])])
def test_bad_samples_json_names_the_file(a2d_copy, content):
    (a2d_copy / A2D_SAMPLES_JSON.format(split="test")).write_text(content)
    with pytest.raises(DataError, match="a2d_sentences_single_frame_test_annotations.json"):
        A2DSentencesDataset(a2d_copy, split="test", transform=eval_transform())


def test_missing_video_raises_at_construction(a2d_copy):
    (a2d_copy / A2D_VIDEO_DIRS[0] / "vidB.mp4").unlink()
    with pytest.raises(DataError, match="vidB.mp4: file not found"):
        A2DSentencesDataset(a2d_copy, split="test", transform=eval_transform())


def test_skip_bad_drops_missing_files_with_a_count(a2d_copy):
    (a2d_copy / A2D_VIDEO_DIRS[0] / "vidB.mp4").unlink()
    with pytest.warns(RuntimeWarning, match="skipped 1 sample"):
        ds = A2DSentencesDataset(a2d_copy, split="test", transform=eval_transform(), skip_bad=True)
    assert [s.video_id for s in ds.samples] == ["vidA", "vidA"]


def test_skip_bad_skips_corrupt_samples_with_a_running_count(a2d_copy):
    (a2d_copy / A2D_MASK_DIR / "vidA" / "00002.h5").write_bytes(b"garbage")
    ds = A2DSentencesDataset(a2d_copy, split="test", transform=eval_transform(), skip_bad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = ds[0]
        ds[0]
    assert s.meta["image_id"] == "v_vidB_f_7_i_2"  # the next sample
    messages = [str(w.message) for w in caught]
    assert "00002.h5" in messages[0] and "1 bad sample(s)" in messages[0]
    assert "2 bad sample(s)" in messages[1]
    assert ds.num_skipped == 2


def test_bad_arguments():
    with pytest.raises(ConfigError, match="split"):
        A2DSentencesDataset("/nonexistent", split="val")
    with pytest.raises(DataError, match="no video folder"):
        A2DSentencesDataset("/nonexistent", split="test")
