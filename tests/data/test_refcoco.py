"""RefCOCO/+/g: REFER pickle (Python 2 style) + instances.json -> per-sentence COCO json -> dataset."""
from __future__ import annotations

import json
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vdit.data.refcoco import (
    PseudoClipJitter, RefCOCODataset, convert_refexp_to_coco, converted_json_path, make_pseudo_clip,
    mask_to_polygons, read_refer_refs, ref_in_split, refer_pickle_path, segmentation_to_mask, write_coco_image,
    write_refer_dataset,
)
from vdit.data.safe_pickle import loads_plain_pickle
from vdit.data.transforms import build_transforms
from vdit.errors import ConfigError, DataError

H, W = 32, 48
OBJECT_RGB = (200, 30, 40)
BACKGROUND = 60


def rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


MASK_1 = rect(H, W, 6, 20, 10, 30)  # image 100 (32x48)
MASK_2 = rect(W, H, 25, 40, 4, 20)  # image 200 (48x32)


def image_with(mask: np.ndarray) -> np.ndarray:
    img = np.full(mask.shape + (3,), BACKGROUND, dtype=np.uint8)
    img[mask] = OBJECT_RGB
    return img


def ann(ann_id: int, image_id: int, mask: np.ndarray, *, iscrowd: int = 0, bbox=None) -> dict:
    ys, xs = np.nonzero(mask)
    box = bbox or [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "segmentation": mask_to_polygons(mask),
            "area": float(mask.sum()), "bbox": box, "iscrowd": iscrowd}


def sentence(sent_id: int, text: str) -> dict:
    return {"sent": text, "raw": text.capitalize(), "tokens": text.split(), "sent_id": sent_id}


def ref(ref_id: int, ann_id: int, image_id: int, split: str, sentences: list[dict]) -> dict:
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "sentences": sentences,
            "category_id": 1, "file_name": f"COCO_train2014_{image_id:012d}_{ref_id}.jpg",
            "sent_ids": [s["sent_id"] for s in sentences]}


INSTANCES = {
    "info": {"description": "tiny"}, "licenses": [{"id": 1, "name": "x"}],
    "images": [{"id": 100, "file_name": "COCO_train2014_000000000100.jpg", "height": H, "width": W},
               {"id": 200, "file_name": "COCO_train2014_000000000200.jpg", "height": W, "width": H}],
    "annotations": [ann(1, 100, MASK_1), ann(2, 200, MASK_2), ann(3, 100, MASK_1, iscrowd=1),
                    ann(4, 200, MASK_2, bbox=[5.0, 5.0, 0.0, 10.0])],
    "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
}
REFS = [
    ref(10, 1, 100, "train", [sentence(1, "man   on the LEFT"), sentence(2, "the café guy")]),
    ref(11, 2, 200, "val", [sentence(3, "woman")]),
    ref(12, 1, 100, "testA", [sentence(4, "a person")]),
    ref(13, 2, 200, "testB", [sentence(5, "b person")]),
    ref(14, 3, 100, "train", [sentence(6, "crowd")]),
    ref(15, 4, 200, "train", [sentence(7, "degenerate")]),
    ref(16, 2, 200, "train", [sentence(8, "right woman")]),
]


def build_coco(root: Path, dataset: str = "refcoco", refs=REFS, split_by=None) -> Path:
    write_coco_image(root, "COCO_train2014_000000000100.jpg", image_with(MASK_1))
    write_coco_image(root, "COCO_train2014_000000000200.jpg", image_with(MASK_2))
    write_refer_dataset(root, dataset, refs, INSTANCES, split_by)
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory) -> Path:
    root = build_coco(tmp_path_factory.mktemp("refcoco") / "coco")
    convert_refexp_to_coco(root, "refcoco")
    return root


def eval_transform():
    return build_transforms("refcoco", train=False, eval_short_side=H)


# --- REFER pickle -----------------------------------------------------------------------------------


def test_refer_pickle_is_python2_protocol2_with_byte_strings(coco_root):
    path = refer_pickle_path(coco_root, "refcoco")
    assert path.name == "refs(unc).p"
    data = path.read_bytes()
    assert data[:2] == b"\x80\x02" and b"U\x04sent" in data  # SHORT_BINSTRING keys, as Python 2 wrote str
    # plain latin-1 decoding garbles UTF-8 text; the reader decodes UTF-8 first
    assert loads_plain_pickle(data, encoding="latin1")[0]["sentences"][1]["sent"] == "the cafÃ© guy"
    refs = read_refer_refs(path)
    assert refs == REFS


def test_refer_pickle_with_unicode_strings_and_refcocog_name(tmp_path):
    root = tmp_path / "coco"
    refs = [ref(1, 1, 100, "test", [sentence(1, "x")])]
    write_refer_dataset(root, "refcocog", refs, INSTANCES)
    path = refer_pickle_path(root, "refcocog")
    assert path.name == "refs(umd).p"
    assert read_refer_refs(path) == refs


def test_refer_pickle_with_a_class_instance_is_rejected(tmp_path):
    import collections

    path = tmp_path / "refcoco" / "refs(unc).p"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps([collections.OrderedDict(ref_id=1)], protocol=2))
    with pytest.raises(DataError, match=r"refs\(unc\)\.p.*collections\.OrderedDict"):
        read_refer_refs(path)


def test_refer_pickle_with_missing_keys(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}], protocol=2))
    with pytest.raises(DataError, match=r"refs\(unc\)\.p: ref 0"):
        read_refer_refs(path)


def test_ref_split_semantics_follow_refer():
    assert ref_in_split("testA", "testA") and ref_in_split("testAB", "testB") and not ref_in_split("testB", "testA")
    assert ref_in_split("testB", "test") and not ref_in_split("val", "test")
    assert ref_in_split("train", "train") and not ref_in_split("trainval", "train")


# --- converter --------------------------------------------------------------------------------------


def test_converter_writes_one_image_per_sentence(coco_root):
    paths = {s: converted_json_path(coco_root, "refcoco", s) for s in ("train", "val", "testA", "testB")}
    assert all(p.is_file() for p in paths.values())
    train = json.loads(paths["train"].read_text())
    assert [img["caption"] for img in train["images"]] == [
        "man   on the LEFT", "the café guy", "crowd", "degenerate", "right woman"]
    first = train["images"][0]
    assert first == {"file_name": "COCO_train2014_000000000100.jpg", "height": H, "width": W, "original_id": 100,
                     "id": 1, "caption": "man   on the LEFT", "dataset_name": "refcoco"}
    assert [img["id"] for img in train["images"]] == [1, 2, 3, 4, 5]
    a = train["annotations"][1]
    assert a["image_id"] == 2 and a["id"] == 2 and a["original_id"] == 1 and a["category_id"] == 1
    assert a["segmentation"] == INSTANCES["annotations"][0]["segmentation"] and a["iscrowd"] == 0
    assert a["bbox"] == INSTANCES["annotations"][0]["bbox"] and a["area"] == INSTANCES["annotations"][0]["area"]
    for key in ("categories", "info", "licenses"):
        assert train[key] == INSTANCES[key]
    val = json.loads(paths["val"].read_text())
    assert [img["caption"] for img in val["images"]] == ["woman"] and val["images"][0]["id"] == 1


def test_converter_refcocog_splits(tmp_path):
    root = tmp_path / "coco"
    refs = [ref(1, 1, 100, "train", [sentence(1, "a")]), ref(2, 2, 200, "test", [sentence(2, "b")]),
            ref(3, 1, 100, "val", [sentence(3, "c")])]
    write_refer_dataset(root, "refcocog", refs, INSTANCES)
    written = convert_refexp_to_coco(root, "refcocog")
    assert sorted(written) == ["test", "train", "val"]
    assert written["test"].name == "instances_refcocog_test.json"
    assert json.loads(written["test"].read_text())["images"][0]["caption"] == "b"


def test_converter_reports_dangling_ids(tmp_path):
    root = tmp_path / "coco"
    write_refer_dataset(root, "refcoco+", [ref(1, 99, 100, "train", [sentence(1, "a")])], INSTANCES)
    with pytest.raises(DataError, match=r"refs\(unc\)\.p: ref 1 points to annotation 99"):
        convert_refexp_to_coco(root, "refcoco+")


def test_converter_bad_instances_json(tmp_path):
    root = tmp_path / "coco"
    write_refer_dataset(root, "refcoco", REFS, INSTANCES)
    (root / "refcoco" / "instances.json").write_text("{broken")
    with pytest.raises(DataError, match="instances.json"):
        convert_refexp_to_coco(root, "refcoco")
    with pytest.raises(ConfigError, match="unknown referring-expression dataset"):
        convert_refexp_to_coco(root, "refclef")


# --- dataset ----------------------------------------------------------------------------------------


def test_polygons_decode_to_the_drawn_masks():
    assert np.array_equal(segmentation_to_mask(mask_to_polygons(MASK_1), H, W), MASK_1)
    assert np.array_equal(segmentation_to_mask(mask_to_polygons(MASK_2), W, H), MASK_2)


def test_single_frame_samples_drop_crowd_and_degenerate(coco_root):
    ds = RefCOCODataset(coco_root, "refcoco", "train", transform=eval_transform())
    assert len(ds) == 3 and ds.num_dropped == 2
    s = ds[0]
    assert s.frames.shape == (1, 3, H, W) and s.valid.tolist() == [True] and s.valid_indices is None
    assert torch.equal(s.masks[0].bool(), torch.from_numpy(MASK_1))
    assert s.text == "man on the left" and s.orig_size == (H, W)
    assert s.meta["image_id"] == 1 and s.meta["original_image_id"] == 100 and s.meta["dataset"] == "refcoco"
    assert np.allclose(s.boxes[0].tolist(), [20 / W, 13 / H, 20 / W, 14 / H], atol=1e-6)
    tall = ds[2]
    assert tall.frames.shape == (1, 3, W, H) and torch.equal(tall.masks[0].bool(), torch.from_numpy(MASK_2))


def test_default_train_transform(coco_root):
    s = RefCOCODataset(coco_root, "refcoco", "train", seed=0)[1]
    assert s.frames.shape[:2] == (1, 3) and min(s.frames.shape[-2:]) >= 296 and bool(s.valid.all())


def test_pseudo_clip_mode(coco_root):
    ds = RefCOCODataset(coco_root, "refcoco", "train", transform=eval_transform(), num_frames=4, seed=1)
    s = ds[0]
    assert s.frames.shape == (4, 3, H, W) and s.masks.shape == (4, H, W)
    assert torch.equal(s.masks[0].bool(), torch.from_numpy(MASK_1))  # frame 0 is the image itself
    assert any(not torch.equal(s.masks[t], s.masks[0]) for t in range(1, 4))  # the others are jittered
    assert s.valid[0] and s.meta["frame_ids"] == ["00000", "00001", "00002", "00003"]


def test_pseudo_clip_mask_follows_the_image():
    rng = random.Random(5)
    from PIL import Image

    image = Image.fromarray(image_with(MASK_1))
    jitter = PseudoClipJitter(max_brightness=0.0)
    for _ in range(5):
        frames, masks = make_pseudo_clip(image, MASK_1, 3, rng, jitter)
        for frame, mask in zip(frames[1:], masks[1:]):
            pixels = np.asarray(frame)
            assert mask.any()
            # inside the warped mask the pixels keep the object's colour, outside mostly not
            assert np.abs(np.median(pixels[mask], axis=0) - OBJECT_RGB).max() <= 2
            assert (np.abs(pixels[~mask].astype(int) - OBJECT_RGB).max(axis=1) <= 2).mean() < 0.05


def test_pseudo_clip_brightness_jitter_is_per_frame():
    rng = random.Random(2)
    from PIL import Image

    image = Image.fromarray(np.full((H, W, 3), 128, dtype=np.uint8))
    jitter = PseudoClipJitter(max_rotation_deg=0.0, max_translate=0.0, scale_range=(1.0, 1.0))
    frames, _ = make_pseudo_clip(image, np.ones((H, W), bool), 6, rng, jitter)
    levels = [float(np.asarray(f).mean()) for f in frames]
    assert levels[0] == 128 and all(abs(v - 128) <= 40 for v in levels) and len(set(levels)) > 3


def test_dataset_errors(coco_root, tmp_path):
    with pytest.raises(DataError, match="convert-refcoco"):
        RefCOCODataset(tmp_path, "refcoco", "train")
    with pytest.raises(ConfigError, match="split"):
        RefCOCODataset(coco_root, "refcocog", "testA")
    root = Path(shutil.copytree(coco_root, tmp_path / "coco"))
    (root / "train2014" / "COCO_train2014_000000000200.jpg").write_bytes(b"not a jpeg")
    ds = RefCOCODataset(root, "refcoco", "val", transform=eval_transform())
    with pytest.raises(DataError, match="COCO_train2014_000000000200.jpg"):
        ds[0]
    (root / "train2014" / "COCO_train2014_000000000100.jpg").unlink()
    with pytest.raises(DataError, match="COCO_train2014_000000000100.jpg: file not found"):
        RefCOCODataset(root, "refcoco", "train", transform=eval_transform())
    with pytest.warns(RuntimeWarning, match="skipped 2 sample"):
        ds = RefCOCODataset(root, "refcoco", "train", transform=eval_transform(), skip_bad=True)
    assert len(ds) == 1
    converted_json_path(root, "refcoco", "testA").write_text("[")
    with pytest.raises(DataError, match="instances_refcoco_testA.json"):
        RefCOCODataset(root, "refcoco", "testA", transform=eval_transform())


def test_cli_convert_refcoco(tmp_path, capsys):
    from vdit.cli.main import main

    root = build_coco(tmp_path / "coco")
    write_refer_dataset(root, "refcocog", [ref(1, 1, 100, "val", [sentence(1, "a")])], INSTANCES)
    assert main(["data", "convert-refcoco", "--coco-root", str(root), "--datasets", "refcoco, refcocog"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert sorted(printed) == ["refcoco", "refcocog"] and sorted(printed["refcocog"]) == ["test", "train", "val"]
    assert converted_json_path(root, "refcoco", "testB").is_file()
    assert main(["data", "convert-refcoco", "--coco-root", str(root), "--datasets", "refclef"]) == 2
    assert "refclef" in capsys.readouterr().err
