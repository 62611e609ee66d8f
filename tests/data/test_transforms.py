import colorsys
import random

import numpy as np
import pytest
import torch
from PIL import Image

from vdit.data import transforms as T
from vdit.errors import ConfigError, InputError
from vdit.models.inputs import IMAGENET_MEAN, IMAGENET_STD, frames_to_tensor


def _clip(t=3, h=60, w=100, seed=0):
    rs = np.random.RandomState(seed)
    frames = [Image.fromarray(rs.randint(0, 255, (h, w, 3), dtype=np.uint8)) for _ in range(t)]
    masks = np.zeros((t, h, w), dtype=bool)
    masks[:, 10:30, 20:50] = True
    return frames, masks, np.ones(t, dtype=bool)


def _denorm(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x * std + mean


def test_normalize_text():
    assert T.normalize_text("  The  Big\tDOG\n") == "the big dog"


@pytest.mark.parametrize("src,dst", [
    ("the dog on the left", "the dog on the right"),
    ("leftmost man next to the right car", "rightmost man next to the left car"),
    ("a bright light upright", "a bright light upright"),
])
def test_swap_left_right(src, dst):
    assert T.swap_left_right(src) == dst
    assert T.swap_left_right(dst) == src


def test_resized_hw_official_rule():
    assert T.resized_hw(720, 1280, 360, 640) == (360, 640)
    # long/short * 512 > 640 -> short = round(640 * 480 / 854) = 360, long truncated
    assert T.resized_hw(480, 854, 512, 640) == (360, 640)
    assert T.resized_hw(100, 200, 100, None) == (100, 200)
    assert T.resized_hw(200, 100, 50, None) == (100, 50)


@pytest.mark.parametrize("dataset", T.DATASETS)
@pytest.mark.parametrize("train", [True, False])
def test_output_contract(dataset, train):
    frames, masks, valid = _clip()
    tf = T.build_transforms(dataset, train)
    out_frames, out_masks, boxes, out_valid, text = tf(frames, masks, valid, " The LEFT cat ", random.Random(3))
    t, _, h, w = out_frames.shape
    assert t == 3 and out_frames.dtype == torch.float32
    assert out_masks.shape == (t, h, w) and out_masks.dtype == torch.float32
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
    assert boxes.shape == (t, 4) and out_valid.dtype == torch.bool
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert text in ("the left cat", "the right cat")
    if not train:
        assert min(h, w) == (60 if dataset == "synthetic" else T.EVAL_SHORT_SIDE)


def test_deterministic_given_rng():
    frames, masks, valid = _clip()
    tf = T.build_transforms("ytvos", True)
    a = tf(frames, masks, valid, "x", random.Random(7))
    b = tf(frames, masks, valid, "x", random.Random(7))
    for x, y in zip(a[:4], b[:4]):
        assert torch.equal(x, y)
    outs = [tf(frames, masks, valid, "x", random.Random(s))[0].shape for s in range(8)]
    assert len(set(outs)) > 1


def test_geometry_shared_by_all_frames():
    frame = Image.fromarray(np.random.RandomState(1).randint(0, 255, (80, 120, 3), dtype=np.uint8))
    mask = np.zeros((80, 120), dtype=bool)
    mask[20:50, 30:70] = True
    for seed in range(6):
        tf = T.build_transforms("ytvos", True)
        _, m, boxes, valid, _ = tf([frame] * 4, np.stack([mask] * 4), np.ones(4, bool), "a", random.Random(seed))
        assert all(torch.equal(m[0], m[i]) for i in range(4))
        assert all(torch.equal(boxes[0], boxes[i]) for i in range(4))


def test_flip_mirrors_masks_boxes_and_swaps_text():
    frames, masks, valid = _clip(t=2)
    base = T.ClipTransform([])
    flip = T.ClipTransform([T.RandomHorizontalFlip(1.0)])
    f0, m0, b0, v0, t0 = base(frames, masks, valid, "the dog left of the car", random.Random(0))
    f1, m1, b1, v1, t1 = flip(frames, masks, valid, "the dog left of the car", random.Random(0))
    assert t1 == "the dog right of the car"
    assert torch.equal(m1, m0.flip(-1))
    assert torch.allclose(f1, f0.flip(-1))
    assert torch.allclose(b1[:, 0], 1 - b0[:, 0]) and torch.allclose(b1[:, 1:], b0[:, 1:])


def test_boxes_cxcywh_normalised_and_valid_flags():
    frames, masks, _ = _clip(t=4, h=60, w=100)
    masks[1] = False                   # object absent
    valid = np.array([True, True, False, True])  # frame 2 not annotated
    f, m, boxes, v, _ = T.ClipTransform([])(frames, masks, valid, "a", random.Random(0))
    # rows 10..29, cols 20..49 -> x1=20, x2=50, y1=10, y2=30 (right/bottom edges exclusive)
    assert torch.allclose(boxes[0], torch.tensor([35 / 100, 20 / 60, 30 / 100, 20 / 60]))
    assert v.tolist() == [True, False, False, True]
    assert torch.equal(boxes[1], torch.zeros(4)) and torch.equal(boxes[2], torch.zeros(4))
    assert m[2].sum() == 0  # unannotated frames carry no target


def test_crop_removing_object_invalidates_frame():
    frames, masks, valid = _clip(t=2, h=60, w=100)
    crop = T.ClipTransform([lambda clip, rng: T.crop_clip(clip, 40, 60, 20, 40)])
    _, m, boxes, v, _ = crop(frames, masks, valid, "a", random.Random(0))
    assert m.shape == (2, 20, 40) and not v.any() and torch.equal(boxes, torch.zeros(2, 4))


def test_random_size_crop_bounds():
    frames, masks, valid = _clip(t=1, h=500, w=700)
    op = T.RandomSizeCrop(T.CROP_MIN_SIZE, T.CROP_MAX_SIZE)
    for s in range(20):
        clip = op(T._make_clip(frames, masks, valid, "a"), random.Random(s))
        h, w = clip.size
        assert T.CROP_MIN_SIZE <= h <= 500 and T.CROP_MIN_SIZE <= w <= T.CROP_MAX_SIZE


def test_train_scales_and_max_size():
    frames, masks, valid = _clip(t=1, h=720, w=1280)
    tf = T.build_transforms("ytvos", True)
    for s in range(10):
        x = tf(frames, masks, valid, "a", random.Random(s))[0]
        assert max(x.shape[-2:]) <= T.TRAIN_MAX_SIZE


def test_recipe_orders():
    a2d = T.build_transforms("a2d", True).pipeline.ops
    assert isinstance(a2d[0], T.RandomHorizontalFlip) and isinstance(a2d[1], T.PhotometricDistort)
    yt = T.build_transforms("ytvos", True).pipeline.ops
    assert isinstance(yt[0], T.RandomSelect) and isinstance(yt[2], T.PhotometricDistort)
    ref = T.build_transforms("refcoco", True).pipeline.ops
    assert isinstance(ref[0], T.RandomHorizontalFlip) and not any(isinstance(o, T.PhotometricDistort) for o in ref)
    assert list(T.REFCOCO_SCALES) == list(range(480, 769, 32))
    syn = T.build_transforms("synthetic", True).pipeline.ops
    assert syn[2].keep_colours and not yt[2].keep_colours


def test_photometric_keep_colours_saturates_and_keeps_channel_order():
    # A bright yellow (235, 205, 40): contrast 1.2 wraps its red channel to 26 in SgMg's transform; the
    # colour-keeping variant saturates at 255 and never permutes the channels.
    frame = Image.fromarray(np.tile(np.array([235, 205, 40], np.uint8), (4, 4, 1)))
    clip = T._make_clip([frame] * 64, np.zeros((64, 4, 4), bool), np.ones(64, bool), "a")
    kept = T.PhotometricDistort(keep_colours=True)(clip, random.Random(0))
    wrapped = T.PhotometricDistort()(clip, random.Random(0))
    for f in kept.frames:
        r, g, b = (int(v) for v in np.asarray(f)[0, 0])
        assert r >= g > b and r >= 150, (r, g, b)  # still yellow: red and green high, blue low
    assert any(int(np.asarray(f)[0, 0, 0]) < 100 for f in wrapped.frames)


def _grey_photometric_reference(value: int, rng: random.Random) -> int:
    """Spec 5.5 for one uniform grey frame, with the draws of the class docstring in order: brightness
    +-32 (p 0.5, clipped), contrast x U(0.8, 1.2) before or after saturation (each p 0.5), channel
    permutation (p 0.2), truncating uint8 cast. Saturation and channel order leave grey unchanged, but
    their draws are still consumed. float32 as the image array."""
    v = np.float32(value)
    if rng.random() < 0.5:
        v = np.float32(np.clip(v + np.float32(rng.uniform(-32.0, 32.0)), 0.0, 255.0))
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        v = np.float32(v * np.float32(rng.uniform(0.8, 1.2)))
    if rng.random() < 0.5:
        rng.uniform(0.8, 1.2)  # saturation factor: a grey pixel has S = 0
    if not contrast_first and rng.random() < 0.5:
        v = np.float32(v * np.float32(rng.uniform(0.8, 1.2)))
    if rng.random() < 0.2:
        rng.randrange(6)  # channel order: all channels are equal
    return int(np.trunc(v)) % 256


def test_photometric_per_frame_params():
    """Spec 5.5: independent parameters per frame, drawn frame after frame from the clip's generator.
    Each of 8 identical grey frames must carry exactly its own draw (one draw per clip would give 8
    equal frames; reusing or skipping draws would shift the sequence)."""
    frame = Image.fromarray(np.full((16, 16, 3), 120, dtype=np.uint8))
    clip = T._make_clip([frame] * 8, np.zeros((8, 16, 16), bool), np.ones(8, bool), "a")
    out = T.PhotometricDistort()(clip, random.Random(0))
    ref_rng = random.Random(0)
    expected = [_grey_photometric_reference(120, ref_rng) for _ in range(8)]
    assert len(set(expected)) > 2  # the seed gives several distinct draws, so the check is informative
    for f, value in zip(out.frames, expected):
        assert np.array_equal(np.asarray(f), np.full((16, 16, 3), value, dtype=np.uint8)), value


def test_wrap_to_uint8_wraps_like_a_c_cast():
    x = np.array([-1.5, 0.4, 255.9, 256.7, 300.0, -200.2])
    assert T.wrap_to_uint8(x).tolist() == [255, 0, 255, 0, 44, 56]


def test_saturation_closed_form_matches_hsv_round_trip():
    rs = np.random.RandomState(0)
    px = rs.uniform(0, 255, size=(50, 3)).astype(np.float32)
    for k in (0.8, 1.2):
        ours = T._scale_saturation(px[None], k)[0]
        for p, q in zip(px, ours):
            h, s, v = colorsys.rgb_to_hsv(*(p / 255.0))
            ref = np.array(colorsys.hsv_to_rgb(h, s * k, v)) * 255.0
            np.testing.assert_allclose(q, ref, atol=1e-3)


def test_bad_inputs():
    frames, masks, valid = _clip()
    with pytest.raises(ConfigError):
        T.build_transforms("kinetics", True)
    with pytest.raises(InputError):
        T.build_transforms("ytvos", False)(frames, masks[:, :10], valid, "a", random.Random(0))
    with pytest.raises(InputError):
        T.build_transforms("ytvos", False)(frames, masks, valid[:2], "a", random.Random(0))
    with pytest.raises(InputError):
        T.build_transforms("ytvos", False)([], masks[:0], valid[:0], "a", random.Random(0))


def test_normalisation_values():
    frame = Image.fromarray(np.full((8, 8, 3), 255, dtype=np.uint8))
    x = frames_to_tensor([frame])
    assert torch.allclose(_denorm(x), torch.ones_like(x), atol=1e-6)
