import json

import numpy as np
import pytest
import torch

from vdit.data.mevis import MeViSDataset, decode_rle, encode_rle, write_mevis_video
from vdit.data.transforms import ClipTransform
from vdit.errors import DataError

H, W = 18, 30


def _video(t, seed):
    rs = np.random.RandomState(seed)
    frames = rs.randint(0, 255, (t, H, W, 3), dtype=np.uint8)
    masks = np.zeros((t, H, W), dtype=np.uint8)
    masks[:, 2:8, 2:8] = 1
    masks[:, 10:16, 20:26] = 2
    masks[t - 1, 10:16, 20:26] = 0  # object 2 leaves in the last frame
    return frames, masks


EXPS = {
    "0": {"exp": "the two birds flying away", "obj_id": [1, 2]},
    "1": {"exp": "The bird on the LEFT", "obj_id": [1]},
}


def make_mevis(root):
    for split in ("train", "valid_u"):
        f, m = _video(6, 0)
        write_mevis_video(root, split, "v0", f, m, EXPS)
        f, m = _video(4, 1)
        write_mevis_video(root, split, "v1", f, m, {"0": {"exp": "the right bird", "obj_id": 2}})
    f, _ = _video(3, 2)
    write_mevis_video(root, "valid", "v2", f, None, {"0": {"exp": "a bird", "obj_id": [1]}})
    return root


def test_rle_roundtrip():
    m = np.zeros((5, 7), dtype=bool)
    m[1:4, 2:6] = True
    rle = encode_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [5, 7]
    assert np.array_equal(decode_rle(json.loads(json.dumps(rle)), "x"), m)
    with pytest.raises(DataError, match="where"):
        decode_rle({"counts": "abc"}, "where")


def test_writer_layout(tmp_path):
    make_mevis(tmp_path)
    meta = json.loads((tmp_path / "train" / "meta_expressions.json").read_text())
    e0 = meta["videos"]["v0"]["expressions"]["0"]
    assert e0["obj_id"] == [1, 2] and len(e0["anno_id"]) == 2
    mask_dict = json.loads((tmp_path / "train" / "mask_dict.json").read_text())
    assert len(mask_dict) == 3  # v0: two objects, v1: one
    per_frame = mask_dict[str(e0["anno_id"][1])]
    assert len(per_frame) == 6 and per_frame[-1] is None and per_frame[0] is not None
    assert not (tmp_path / "valid" / "mask_dict.json").exists()
    valid_meta = json.loads((tmp_path / "valid" / "meta_expressions.json").read_text())
    assert "anno_id" not in valid_meta["videos"]["v2"]["expressions"]["0"]


def test_multi_object_union_masks(tmp_path):
    make_mevis(tmp_path)
    ds = MeViSDataset(tmp_path, "valid_u", transform=ClipTransform([]))
    assert not ds.train and len(ds) == 3
    both = ds[0]
    _, m = _video(6, 0)
    assert torch.equal(both.masks.bool(), torch.from_numpy(m > 0))
    assert both.valid.all()
    left = ds[1]
    assert torch.equal(left.masks.bool(), torch.from_numpy(m == 1)) and left.text == "the bird on the left"
    right = ds[2]
    assert right.valid.tolist() == [True, True, True, False]


def test_train_sampling(tmp_path):
    make_mevis(tmp_path)
    ds = MeViSDataset(tmp_path, "train", num_frames=3)
    assert ds.train and len(ds) == 2 * 2 + 2
    s = ds[0]
    assert s.frames.shape[:2] == (3, 3) and s.valid.any() and s.meta["dataset"] == "mevis"


def test_valid_without_masks(tmp_path):
    make_mevis(tmp_path)
    ds = MeViSDataset(tmp_path, "valid")
    s = ds[0]
    assert s.frames.shape[0] == 3 and not s.valid.any() and s.meta["has_annotations"] is False


def test_bad_mevis(tmp_path):
    make_mevis(tmp_path)
    (tmp_path / "valid_u" / "mask_dict.json").write_text("{broken")
    ds = MeViSDataset(tmp_path, "valid_u")
    with pytest.raises(DataError, match="mask_dict.json"):
        ds[0]
    (tmp_path / "valid_u" / "mask_dict.json").write_text("{}")
    with pytest.raises(DataError, match="anno_id"):
        MeViSDataset(tmp_path, "valid_u")[0]
    (tmp_path / "valid_u" / "mask_dict.json").unlink()
    with pytest.raises(DataError, match="mask_dict.json"):
        MeViSDataset(tmp_path, "valid_u")
    meta = tmp_path / "train" / "meta_expressions.json"
    data = json.loads(meta.read_text())
    del data["videos"]["v0"]["expressions"]["1"]["anno_id"]
    meta.write_text(json.dumps(data))
    with pytest.raises(DataError, match="anno_id"):
        MeViSDataset(tmp_path, "train")
