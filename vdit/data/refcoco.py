"""RefCOCO / RefCOCO+ / RefCOCOg: REFER conversion, dataset and writers (spec 6.4, 7.5).

Input (the REFER release, next to the COCO 2014 train images):
```
<coco>/train2014/<file_name>.jpg
<coco>/<ds>/refs(unc).p          refcoco, refcoco+   (refs(umd).p for refcocog)
<coco>/<ds>/instances.json       COCO-style images / annotations (polygons) / categories
```
`refs(*).p` is a Python 2 pickle of a list of refs `{ref_id, ann_id, image_id, split, sentences: [{sent,
tokens, raw, sent_id}], category_id, file_name, sent_ids}`. It is read with the restricted unpickler of
`vdit.data.safe_pickle` (plain data only, Python 2 byte strings decoded UTF-8 first, then latin-1).

`convert_refexp_to_coco` writes `<coco>/<ds>/instances_<ds>_<split>.json` with **one COCO image per
referring sentence** (fields of spec 7.5); `RefCOCODataset` reads those. Splits follow REFER's
`getRefIds(split=...)`: train/val match exactly, testA/testB match any test split containing that letter,
test matches any split containing "test".

Samples are single frames (T = 1, valid = [True]). With `num_frames > 1` the dataset instead builds a
pseudo-clip: frame 0 is the image itself and every further frame is an independently jittered copy
(random rotation, translation, scale and brightness shift; the mask follows the geometry). This is our
own, simpler stand-in for the official `refexp2seq` imgaug pipeline (which also uses perspective, motion
blur and hue/saturation changes), meant for joint image + video training.
"""
from __future__ import annotations

import logging
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vdit.data.common import (
    MAX_RESAMPLE, BadSampleSkipper, SampleListDataset, apply_transform, drop_missing, resolve_transform,
)
from vdit.data.safe_pickle import decode_py2_strings, dump_py2_plain, load_plain_pickle
from vdit.data.transforms import normalize_text
from vdit.data.types import ClipSample
from vdit.data.video_io import read_image
from vdit.errors import ConfigError, DataError
from vdit.fileio import dumps_json, read_json

log = logging.getLogger(__name__)

REFCOCO_DATASETS = ("refcoco", "refcoco+", "refcocog")
REFER_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
REFER_SPLITS = {"refcoco": ("train", "val", "testA", "testB"), "refcoco+": ("train", "val", "testA", "testB"),
                "refcocog": ("train", "val", "test")}
REFER_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences", "category_id")
COCO_IMAGE_DIR = "train2014"
REFER_INSTANCES_JSON = "instances.json"
CONVERTED_JSON = "instances_{dataset}_{split}.json"


@dataclass(frozen=True)
class PseudoClipJitter:
    """Per-frame random jitter of a pseudo-clip. Rotation, translation and brightness bounds are those of
    the official refexp2seq augmenter (spec 5.5); the scale range is our own choice."""

    max_rotation_deg: float = 20.0
    max_translate: float = 0.1  # fraction of the image width / height
    scale_range: tuple[float, float] = (0.9, 1.1)
    max_brightness: float = 40.0  # added to 0..255 pixel values


def refer_pickle_path(coco_root: str | Path, dataset: str, split_by: str | None = None) -> Path:
    """`<coco>/<ds>/refs(<split_by>).p`, split_by defaulting to unc (refcoco, refcoco+) or umd (refcocog)."""
    check_dataset_name(dataset)
    return Path(coco_root) / dataset / f"refs({split_by or REFER_SPLIT_BY[dataset]}).p"


def converted_json_path(coco_root: str | Path, dataset: str, split: str) -> Path:
    """`<coco>/<ds>/instances_<ds>_<split>.json`."""
    return Path(coco_root) / dataset / CONVERTED_JSON.format(dataset=dataset, split=split)


def check_dataset_name(dataset: str) -> None:
    if dataset not in REFCOCO_DATASETS:
        raise ConfigError(f"unknown referring-expression dataset {dataset!r} (expected one of {REFCOCO_DATASETS})")


def ref_in_split(ref_split: str, split: str) -> bool:
    """REFER's split filter (`getRefIds(split=...)`)."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


# ---------------------------------------------------------------------------------------------------
# readers


def read_refer_refs(path: str | Path) -> list[dict]:
    """Read a REFER `refs(*).p` (plain data only) and check the fields the converter needs."""
    refs = decode_py2_strings(load_plain_pickle(path, encoding="bytes"))
    if not isinstance(refs, list):
        raise DataError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict) or any(k not in ref for k in REFER_REF_KEYS):
            raise DataError(f"{path}: ref {i} is not a dict with keys {REFER_REF_KEYS}")
        sentences = ref["sentences"]
        if not isinstance(sentences, list) or not all(isinstance(s, dict) and "sent" in s for s in sentences):
            raise DataError(f"{path}: ref {i} (ref_id {ref['ref_id']}): sentences must be dicts with a 'sent'")
    return refs


def read_coco_instances(path: str | Path) -> dict:
    """Read a COCO instances json, checking for images / annotations / categories."""
    data = read_json(path)
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: not a COCO instances json (needs images, annotations and categories lists)")
    return data


# ---------------------------------------------------------------------------------------------------
# converter (spec 7.5)


def build_converted_split(refs: Sequence[dict], instances: dict, dataset: str, split: str,
                          source: str = "<refs>") -> dict:
    """The COCO-style dict of one split: one image + one annotation per referring sentence."""
    images = {img["id"]: img for img in instances["images"]}
    anns = {ann["id"]: ann for ann in instances["annotations"]}
    out = {"info": instances.get("info", ""), "licenses": instances.get("licenses", ""),
           "images": [], "annotations": [], "categories": instances["categories"]}
    sample_id = 0
    for ref in refs:
        if not ref_in_split(str(ref["split"]), split):
            continue
        img, ann = images.get(ref["image_id"]), anns.get(ref["ann_id"])
        if img is None or ann is None:
            missing = f"image {ref['image_id']}" if img is None else f"annotation {ref['ann_id']}"
            raise DataError(f"{source}: ref {ref['ref_id']} points to {missing}, absent from instances.json")
        for sentence in ref["sentences"]:
            sample_id += 1
            out["images"].append({"file_name": img["file_name"], "height": img["height"], "width": img["width"],
                                  "original_id": img["id"], "id": sample_id, "caption": sentence["sent"],
                                  "dataset_name": dataset})
            out["annotations"].append({"segmentation": ann["segmentation"], "area": ann["area"],
                                       "iscrowd": ann.get("iscrowd", 0), "bbox": ann["bbox"], "image_id": sample_id,
                                       "category_id": ann["category_id"], "id": sample_id, "original_id": ann["id"]})
    return out


def convert_refexp_to_coco(coco_root: str | Path, dataset: str, *, split_by: str | None = None,
                           out_dir: str | Path | None = None) -> dict[str, Path]:
    """Convert one REFER dataset into `instances_<ds>_<split>.json` files; returns split -> path.

    Reads `<coco>/<ds>/refs(<split_by>).p` and `<coco>/<ds>/instances.json`; writes into `out_dir`
    (default `<coco>/<ds>/`).
    """
    check_dataset_name(dataset)
    refs_path = refer_pickle_path(coco_root, dataset, split_by)
    refs = read_refer_refs(refs_path)
    instances = read_coco_instances(Path(coco_root) / dataset / REFER_INSTANCES_JSON)
    out_dir = Path(out_dir) if out_dir is not None else Path(coco_root) / dataset
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in REFER_SPLITS[dataset]:
        converted = build_converted_split(refs, instances, dataset, split, source=str(refs_path))
        path = out_dir / CONVERTED_JSON.format(dataset=dataset, split=split)
        path.write_text(dumps_json(converted), encoding="utf-8")
        written[split] = path
        log.info("%s %s: %d expressions -> %s", dataset, split, len(converted["images"]), path)
    return written


# ---------------------------------------------------------------------------------------------------
# masks and pseudo-clips


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """COCO segmentation (polygon list, uncompressed or compressed RLE) -> bool [H, W]."""
    with warnings.catch_warnings():
        # pycocotools' Cython decode trips numpy 2's `copy=` deprecation on every call; harmless.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return _decode_segmentation(segmentation, height, width)


def _decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]  # a polygon needs 3 points
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rles = mask_utils.frPyObjects(polygons, height, width)
        return mask_utils.decode(rles).any(axis=2)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation)
        if isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle).astype(bool)


def clamp_xywh_to_xyxy(bbox: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """xywh -> xyxy clamped to the image, as the official loader does before dropping degenerate boxes."""
    x, y, w, h = (float(v) for v in bbox)
    return (min(max(x, 0.0), width), min(max(y, 0.0), height),
            min(max(x + w, 0.0), width), min(max(y + h, 0.0), height))


def _inverse_affine(width: int, height: int, angle_deg: float, scale: float, tx: float, ty: float) -> tuple:
    """PIL AFFINE coefficients (output -> input) of: rotate by angle and scale about the centre, then shift."""
    cx, cy = width / 2.0, height / 2.0
    a = math.radians(angle_deg)
    cos_a, sin_a = math.cos(a) / scale, math.sin(a) / scale
    # input = c + R(-angle)/s * (output - c - t)
    ox, oy = -cx - tx, -cy - ty
    return (cos_a, sin_a, cx + cos_a * ox + sin_a * oy,
            -sin_a, cos_a, cy - sin_a * ox + cos_a * oy)


def jitter_frame(image: Any, mask: np.ndarray, rng: random.Random, jitter: PseudoClipJitter) -> tuple[Any, np.ndarray]:
    """One randomly jittered copy of (PIL RGB image, bool mask [H, W])."""
    from PIL import Image

    width, height = image.size
    angle = rng.uniform(-jitter.max_rotation_deg, jitter.max_rotation_deg)
    scale = rng.uniform(*jitter.scale_range)
    tx = rng.uniform(-jitter.max_translate, jitter.max_translate) * width
    ty = rng.uniform(-jitter.max_translate, jitter.max_translate) * height
    coeffs = _inverse_affine(width, height, angle, scale, tx, ty)
    warped = image.transform((width, height), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    shift = rng.uniform(-jitter.max_brightness, jitter.max_brightness)
    warped = Image.fromarray(np.clip(np.asarray(warped, dtype=np.float32) + shift, 0, 255).astype(np.uint8))
    mask_img = Image.fromarray(mask.astype(np.uint8) * 255)
    warped_mask = mask_img.transform((width, height), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.NEAREST)
    return warped, np.asarray(warped_mask) > 127


def make_pseudo_clip(image: Any, mask: np.ndarray, num_frames: int, rng: random.Random,
                     jitter: PseudoClipJitter | None = None) -> tuple[list, np.ndarray]:
    """Frame 0 = the image; frames 1..T-1 = independent jittered copies. Returns (frames, masks [T, H, W])."""
    jitter = jitter or PseudoClipJitter()
    frames, masks = [image], [mask]
    for _ in range(num_frames - 1):
        frame, frame_mask = jitter_frame(image, mask, rng, jitter)
        frames.append(frame)
        masks.append(frame_mask)
    return frames, np.stack(masks)


# ---------------------------------------------------------------------------------------------------
# dataset


@dataclass(frozen=True)
class RefExpSample:
    """One referring sentence with its target annotation (from a converted json)."""

    sample_id: int
    file_name: str
    height: int
    width: int
    caption: str
    segmentation: Any
    original_image_id: int | None
    original_ann_id: int | None


def index_converted_json(data: dict, source: str) -> tuple[list[RefExpSample], int]:
    """Pair every image entry with its annotation; drop crowd and degenerate boxes (spec 7.5).

    Returns (samples, number dropped).
    """
    anns_by_image: dict[Any, list[dict]] = {}
    for ann in data["annotations"]:
        anns_by_image.setdefault(ann.get("image_id"), []).append(ann)
    samples, dropped = [], 0
    for img in data["images"]:
        try:
            sample_id, height, width = img["id"], int(img["height"]), int(img["width"])
            caption, file_name = str(img["caption"]), str(img["file_name"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{source}: image entry needs id, height, width, caption and file_name: {img!r}") from None
        kept = []
        for ann in anns_by_image.get(sample_id, []):
            if ann.get("iscrowd", 0):
                continue
            try:
                x1, y1, x2, y2 = clamp_xywh_to_xyxy(ann["bbox"], width, height)
                if "segmentation" not in ann:
                    raise KeyError("segmentation")
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{source}: annotation {ann.get('id')!r} needs a 4-number bbox and a "
                                f"segmentation") from None
            if x2 > x1 and y2 > y1:
                kept.append(ann)
        if not kept:
            dropped += 1
            continue
        if len(kept) > 1:
            raise DataError(f"{source}: sample {sample_id} has {len(kept)} annotations (one per sentence expected)")
        samples.append(RefExpSample(sample_id, file_name, height, width, caption, kept[0]["segmentation"],
                                    img.get("original_id"), kept[0].get("original_id")))
    return samples, dropped


class RefCOCODataset(SampleListDataset):
    """Referring-expression samples from a converted `instances_<ds>_<split>.json` (run the converter first).

    num_frames: 1 gives the official single-image sample; > 1 gives a pseudo-clip (module doc).
    transform: default `build_transforms("refcoco", train=split == "train")`.
    skip_bad: skip samples with missing or corrupt images (warning with a count) instead of raising.
    seed: base of the per-sample random streams (call `set_epoch` every epoch). Train draws resample until
    the target is visible (`SampleListDataset`).
    """

    def __init__(self, coco_root: str | Path, dataset: str = "refcoco", split: str = "train", transform: Any = None,
                 num_frames: int = 1, skip_bad: bool = False, jitter: PseudoClipJitter | None = None, *,
                 seed: int = 0) -> None:
        check_dataset_name(dataset)
        if split not in REFER_SPLITS[dataset]:
            raise ConfigError(f"{dataset}: unknown split {split!r} (expected one of {REFER_SPLITS[dataset]})")
        if num_frames < 1:
            raise ConfigError(f"{dataset}: num_frames must be >= 1, got {num_frames}")
        self.coco_root = Path(coco_root)
        self.dataset = self.dataset_name = dataset
        self.seed = int(seed)
        self.split = split
        self.num_frames = num_frames
        self.jitter = jitter or PseudoClipJitter()
        self.train = split == "train"
        self.image_dir = self.coco_root / COCO_IMAGE_DIR
        self.ann_path = converted_json_path(coco_root, dataset, split)
        if not self.ann_path.is_file():
            raise DataError(f"{self.ann_path}: not found; convert the REFER files first "
                            f"(vdit data convert-refcoco --coco-root {self.coco_root} --datasets {dataset})")
        data = read_json(self.ann_path)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
                or not isinstance(data.get("annotations"), list):
            raise DataError(f"{self.ann_path}: not a converted referring-expression json (images / annotations)")
        samples, self.num_dropped = index_converted_json(data, str(self.ann_path))
        if self.num_dropped:
            log.info("%s %s: dropped %d sample(s) with crowd or degenerate boxes", dataset, split, self.num_dropped)
        self.transform = resolve_transform(transform, "refcoco", self.train)
        name = f"{dataset} {split}"
        self._skipper = BadSampleSkipper(name, skip_bad)
        self.samples: list[RefExpSample] = drop_missing(samples, lambda s: (self.image_dir / s.file_name,), name,
                                                        skip_bad)

    def _no_visible_target(self, index: int, last: int | None) -> str:
        return f"{self.ann_path}: no sample with a visible target after {MAX_RESAMPLE} draws"

    def _load_once(self, idx: int, rng: random.Random) -> ClipSample:
        sample = self.samples[idx]
        path = self.image_dir / sample.file_name
        image = read_image(path)
        if image.size != (sample.width, sample.height):
            raise DataError(f"{path}: image is {image.size[0]}x{image.size[1]} but {self.ann_path} says "
                            f"{sample.width}x{sample.height}")
        try:
            mask = segmentation_to_mask(sample.segmentation, sample.height, sample.width)
        except Exception as exc:  # noqa: BLE001 - pycocotools raises assorted errors on malformed input
            raise DataError(f"{self.ann_path}: bad segmentation for sample {sample.sample_id} ({exc})") from None

        if self.num_frames > 1:
            frames, masks = make_pseudo_clip(image, mask, self.num_frames, rng, self.jitter)
            valid = masks.reshape(len(frames), -1).any(axis=1)
        else:
            frames, masks = [image], mask[np.newaxis]
            valid = np.ones(1, dtype=bool)  # crowd / degenerate targets were dropped at indexing (spec 7.5)
        out = apply_transform(self.transform, frames, masks, valid, normalize_text(sample.caption), rng)
        return ClipSample(
            frames=out[0], masks=out[1], boxes=out[2], valid=out[3], text=out[4],
            orig_size=(sample.height, sample.width), valid_indices=None,
            meta={"dataset": self.dataset, "split": self.split, "image_id": sample.sample_id,
                  "original_image_id": sample.original_image_id, "original_ann_id": sample.original_ann_id,
                  "file_name": sample.file_name, "frame_ids": [f"{i:05d}" for i in range(len(frames))]},
        )


# ---------------------------------------------------------------------------------------------------
# writers (the real REFER layout; tests build small datasets with them)


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons covering a bool mask [H, W]: one rectangle per horizontal pixel run, per block of
    identical rows. pycocotools rasterises them back to exactly the same pixels (small test masks only:
    real COCO polygons trace outlines)."""
    polygons: list[list[float]] = []
    height = mask.shape[0]
    y = 0
    while y < height:
        row = mask[y]
        y_end = y + 1
        while y_end < height and np.array_equal(mask[y_end], row):
            y_end += 1
        xs = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        for x0, x1 in zip(xs[0::2], xs[1::2]):
            polygons.append([float(x0), float(y), float(x1), float(y), float(x1), float(y_end), float(x0), float(y_end)])
        y = y_end
    return polygons


def write_coco_image(coco_root: str | Path, file_name: str, array: np.ndarray) -> Path:
    """Save an RGB uint8 image as `<coco>/train2014/<file_name>` (JPEG, high quality)."""
    from PIL import Image

    path = Path(coco_root) / COCO_IMAGE_DIR / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, quality=95)
    return path


def write_refer_dataset(coco_root: str | Path, dataset: str, refs: Sequence[dict], instances: dict,
                        split_by: str | None = None) -> tuple[Path, Path]:
    """Write `refs(<split_by>).p` as a Python 2 protocol-2 pickle (byte strings, like the real files) and
    `instances.json`. Returns (pickle path, instances path)."""
    refs_path = dump_py2_plain(list(refs), refer_pickle_path(coco_root, dataset, split_by))
    instances_path = Path(coco_root) / dataset / REFER_INSTANCES_JSON
    instances_path.write_text(dumps_json(instances), encoding="utf-8")
    return refs_path, instances_path


__all__ = [
    "REFCOCO_DATASETS", "REFER_SPLITS", "PseudoClipJitter", "RefCOCODataset", "RefExpSample",
    "convert_refexp_to_coco", "build_converted_split", "converted_json_path", "read_refer_refs",
    "read_coco_instances", "refer_pickle_path", "ref_in_split", "segmentation_to_mask", "make_pseudo_clip",
    "jitter_frame", "mask_to_polygons", "write_coco_image", "write_refer_dataset",
]
