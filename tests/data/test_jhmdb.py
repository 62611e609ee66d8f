"""JHMDB-Sentences: real layout (1-based pngs, puppet_mask.mat [H,W,T], metadata json), windows, errors."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from vdit.data.jhmdb import (
    JHMDB_GT_JSON, JHMDB_METADATA_JSON, JHMDBSentencesDataset, jhmdb_sample, read_jhmdb_metadata,
    read_puppet_masks, write_jhmdb_dataset, write_puppet_masks,
)
from vdit.data.transforms import build_transforms
from vdit.errors import DataError
from vdit.models.inputs import IMAGENET_MEAN, IMAGENET_STD

H, W = 32, 48
NUM_FRAMES = 6
GREY_BASE, GREY_STEP = 30, 30  # frame k (1-based) is grey GREY_BASE + GREY_STEP * (k - 1)
ROOT_NAME = "jhmdb_sentences"


def video_frames() -> list[np.ndarray]:
    return [np.full((H, W, 3), GREY_BASE + GREY_STEP * k, dtype=np.uint8) for k in range(NUM_FRAMES)]


def video_masks() -> np.ndarray:
    masks = np.zeros((NUM_FRAMES, H, W), dtype=bool)
    for k in range(NUM_FRAMES):  # a box moving right by 4 px per frame
        masks[k, 4:20, 2 + 4 * k: 12 + 4 * k] = True
    return masks


SAMPLES = [
    jhmdb_sample("vid_run_1", "run", 1, NUM_FRAMES, "A man  Running", prefix=f"./{ROOT_NAME}"),
    jhmdb_sample("vid_run_1", "run", 6, NUM_FRAMES, "a man running", prefix=f"./{ROOT_NAME}"),
    jhmdb_sample("vid_run_1", "run", 3, NUM_FRAMES, "a man running", prefix=f"./{ROOT_NAME}"),
]


@pytest.fixture(scope="module")
def jhmdb_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("jhmdb") / ROOT_NAME
    return write_jhmdb_dataset(root, {("run", "vid_run_1"): (video_frames(), video_masks())}, SAMPLES)


@pytest.fixture
def jhmdb_copy(jhmdb_root, tmp_path) -> Path:
    return Path(shutil.copytree(jhmdb_root, tmp_path / ROOT_NAME))


def eval_transform():
    return build_transforms("jhmdb", train=False, eval_short_side=H)


def grey_levels(frames: torch.Tensor) -> list[float]:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return [float(v) for v in ((frames * std + mean) * 255.0).mean(dim=(1, 2, 3))]


def test_layout_matches_the_real_metadata(jhmdb_root):
    rows = json.loads((jhmdb_root / JHMDB_METADATA_JSON).read_text())
    assert rows[0] == ["vid_run_1", "./jhmdb_sentences/Rename_Images/run/vid_run_1/00001.png",
                       "./jhmdb_sentences/puppet_mask/run/vid_run_1/puppet_mask.mat", NUM_FRAMES, "A man  Running"]
    assert (jhmdb_root / "Rename_Images" / "run" / "vid_run_1" / "00006.png").is_file()
    raw = scipy.io.loadmat(str(jhmdb_root / "puppet_mask" / "run" / "vid_run_1" / "puppet_mask.mat"))["part_mask"]
    assert raw.shape == (H, W, NUM_FRAMES)  # MATLAB layout [H, W, T]
    assert read_jhmdb_metadata(jhmdb_root / JHMDB_METADATA_JSON)[1].frame_idx == 6


def test_puppet_masks_round_trip_and_2d_case(tmp_path):
    masks = video_masks()
    assert np.array_equal(read_puppet_masks(write_puppet_masks(tmp_path / "m.mat", masks)), masks)
    scipy.io.savemat(str(tmp_path / "one.mat"), {"part_mask": masks[0].astype(np.uint8)})  # T = 1, squeezed
    assert np.array_equal(read_puppet_masks(tmp_path / "one.mat"), masks[:1])


def test_window_at_the_video_start(jhmdb_root):
    ds = JHMDBSentencesDataset(jhmdb_root, transform=eval_transform())
    assert ds.data_root == jhmdb_root.resolve().parent and len(ds) == 3
    s = ds[0]
    # frame 1 -> [-1, 0, 1, 2, 3] clamped to [1, 1, 1, 2, 3]; the first occurrence is the annotated one
    assert s.meta["frame_ids"] == ["00001", "00001", "00001", "00002", "00003"]
    assert s.valid_indices == [0] and s.valid.tolist() == [True, False, False, False, False]
    assert np.allclose(grey_levels(s.frames), [GREY_BASE + GREY_STEP * (i - 1) for i in (1, 1, 1, 2, 3)], atol=1)
    assert torch.equal(s.masks[0].bool(), torch.from_numpy(video_masks()[0]))
    assert s.text == "a man running" and s.meta["image_id"] == "v_vid_run_1_f_1"
    assert s.orig_size == (H, W)


def test_window_at_the_video_end_and_middle(jhmdb_root):
    ds = JHMDBSentencesDataset(jhmdb_root, transform=eval_transform())
    end, mid = ds[1], ds[2]
    assert end.meta["frame_ids"] == ["00004", "00005", "00006", "00006", "00006"] and end.valid_indices == [2]
    assert torch.equal(end.masks[2].bool(), torch.from_numpy(video_masks()[5]))
    assert mid.meta["frame_ids"] == ["00001", "00002", "00003", "00004", "00005"] and mid.valid_indices == [2]
    assert torch.equal(mid.masks[2].bool(), torch.from_numpy(video_masks()[2]))


def test_default_transform_resizes_to_360(jhmdb_root):
    s = JHMDBSentencesDataset(jhmdb_root, num_frames=3)[2]
    assert s.frames.shape == (3, 3, 360, 540) and s.valid_indices == [1]


def test_explicit_data_root(jhmdb_root, tmp_path):
    meta_dir = tmp_path / "elsewhere"
    meta_dir.mkdir()
    shutil.copy(jhmdb_root / JHMDB_METADATA_JSON, meta_dir / JHMDB_METADATA_JSON)
    with pytest.raises(DataError, match="file not found"):
        JHMDBSentencesDataset(meta_dir, transform=eval_transform())
    ds = JHMDBSentencesDataset(meta_dir, data_root=jhmdb_root.parent, transform=eval_transform())
    assert ds[1].meta["image_id"] == "v_vid_run_1_f_6"


def test_coco_gt_json(jhmdb_root):
    gt = json.loads((jhmdb_root / JHMDB_GT_JSON).read_text())
    assert [img["id"] for img in gt["images"]] == ["v_vid_run_1_f_1", "v_vid_run_1_f_6", "v_vid_run_1_f_3"]
    assert [a["area"] for a in gt["annotations"]] == [float(video_masks()[k].sum()) for k in (0, 5, 2)]


# --- errors -----------------------------------------------------------------------------------------


def mat_path(root: Path) -> Path:
    return root / "puppet_mask" / "run" / "vid_run_1" / "puppet_mask.mat"


def test_corrupt_mat_names_the_file(jhmdb_copy):
    mat_path(jhmdb_copy).write_bytes(b"MATLAB garbage" * 20)
    ds = JHMDBSentencesDataset(jhmdb_copy, transform=eval_transform())
    with pytest.raises(DataError, match="puppet_mask.mat: cannot read MATLAB file"):
        ds[0]


def test_mat_without_part_mask_names_the_file(jhmdb_copy):
    scipy.io.savemat(str(mat_path(jhmdb_copy)), {"other": np.zeros((2, 2))})
    with pytest.raises(DataError, match=r"puppet_mask\.mat: no 'part_mask'"):
        read_puppet_masks(mat_path(jhmdb_copy))


def test_mask_frame_count_mismatch(jhmdb_copy):
    write_puppet_masks(mat_path(jhmdb_copy), video_masks()[:3])
    ds = JHMDBSentencesDataset(jhmdb_copy, transform=eval_transform())
    with pytest.raises(DataError, match="has 3 mask frames"):
        ds[1]


def test_corrupt_png_names_the_file(jhmdb_copy):
    (jhmdb_copy / "Rename_Images" / "run" / "vid_run_1" / "00002.png").write_bytes(b"not a png")
    ds = JHMDBSentencesDataset(jhmdb_copy, transform=eval_transform())
    with pytest.raises(DataError, match="00002.png"):
        ds[0]


@pytest.mark.parametrize("content", ["[[", json.dumps([["vid", "a/b/x.png", "m.mat", 5, "t"]]),
                                     json.dumps([["vid", "a/b/00009.png", "m.mat", 5, "t"]])])
def test_bad_metadata_names_the_file(jhmdb_copy, content):
    (jhmdb_copy / JHMDB_METADATA_JSON).write_text(content)
    with pytest.raises(DataError, match=JHMDB_METADATA_JSON):
        JHMDBSentencesDataset(jhmdb_copy, transform=eval_transform())


def test_skip_bad(jhmdb_copy):
    (jhmdb_copy / "Rename_Images" / "run" / "vid_run_1" / "00002.png").write_bytes(b"not a png")
    ds = JHMDBSentencesDataset(jhmdb_copy, transform=eval_transform(), skip_bad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = ds[0]  # needs frame 2 -> skipped, sample 1 (frames 4..6) loads
    assert s.meta["image_id"] == "v_vid_run_1_f_6"
    assert len(caught) == 1 and "1 bad sample(s)" in str(caught[0].message)
