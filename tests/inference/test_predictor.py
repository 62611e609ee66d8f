"""VDITPredictor on the tiny random model: sharing the text-independent work, windows, input forms, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vdit.errors import InputError, ModelLoadError
from vdit.inference.postprocess import logits_to_probs
from vdit.inference.predictor import VDITPredictor
from vdit.inference.windows import iter_windows, window_bounds
from vdit.models.padding import pad_to_divisible
from vdit.models.vdit import WEIGHTS_NAME

SHORT = 64  # the model's minimum side: keeps the tiny model fast
TEXTS = ["the red square", "a dark background on the left", "nothing"]
# Batching sentences changes GEMM shapes, hence float rounding: probabilities agree to this absolute
# tolerance, and masks agree wherever the probability is farther than it from the threshold.
BATCH_PROB_ATOL = 1e-4


def _predictor(model, **kw) -> VDITPredictor:
    kw.setdefault("short_side", SHORT)
    kw.setdefault("device", "cpu")
    return VDITPredictor(model=model, **kw)


def _assert_same(a, b, atol: float = 0.0) -> None:
    assert a.chosen_query == b.chosen_query
    np.testing.assert_allclose(a.frame_scores, b.frame_scores, atol=max(atol, 1e-7), rtol=0)
    if atol == 0.0:
        np.testing.assert_array_equal(a.masks, b.masks)
        return
    np.testing.assert_allclose(a.probs, b.probs, atol=atol, rtol=0)
    decided = np.abs(a.probs - 0.5) > atol
    np.testing.assert_array_equal(a.masks[decided], b.masks[decided])


def test_shared_visual_work_gives_the_per_sentence_masks(tiny_model, make_frames):
    frames = make_frames(5)
    ref = _predictor(tiny_model, sharing="none").segment(frames, TEXTS, return_probs=True)
    looped = _predictor(tiny_model, sharing="loop").segment(frames, TEXTS, return_probs=True)
    batched = _predictor(tiny_model, sharing="batch").segment(frames, TEXTS, return_probs=True)
    assert len(ref) == len(TEXTS) and [r.text for r in ref] == TEXTS
    for r, lo, ba in zip(ref, looped, batched):
        _assert_same(r, lo)  # same computation on the same features: identical
        _assert_same(r, ba, atol=BATCH_PROB_ATOL)
        assert r.masks.any() and not r.masks.all(), "a degenerate mask would make the comparison vacuous"


def test_sentences_in_several_batches_match_one_batch(tiny_model, make_frames):
    frames = make_frames(3)
    one = _predictor(tiny_model, sharing="batch").segment(frames, TEXTS, return_probs=True)
    split = _predictor(tiny_model, sharing="batch", max_text_batch=2).segment(frames, TEXTS, return_probs=True)
    for a, b in zip(one, split):
        _assert_same(a, b, atol=BATCH_PROB_ATOL)


def test_windowed_run_equals_each_window_alone(tiny_model, make_frames):
    frames = make_frames(10)
    texts = TEXTS[:2]
    windowed = _predictor(tiny_model, window=4).segment(frames, texts)
    assert windowed.windows == [(0, 4), (4, 8), (8, 10)] == window_bounds(10, 4)
    whole = _predictor(tiny_model, window=None)
    for w, (s, e) in enumerate(windowed.windows):
        alone = whole.segment(frames[s:e], texts)
        for k in range(len(texts)):
            np.testing.assert_array_equal(windowed[k].masks[s:e], alone[k].masks)
            np.testing.assert_allclose(windowed[k].frame_scores[s:e], alone[k].frame_scores, atol=1e-7, rtol=0)
            assert windowed[k].chosen_query[w] == alone[k].chosen_query[0]
    assert windowed[0].masks.shape == (10, *frames[0].shape[:2])


def test_result_is_at_the_original_resolution_and_consistent(tiny_model, make_frames):
    frames = make_frames(4)
    pred = _predictor(tiny_model, threshold=0.5)
    res = pred.segment(frames, "the red square", return_probs=True)
    r = res[0]
    h, w = frames[0].shape[:2]
    assert r.masks.shape == (4, h, w) and r.masks.dtype == bool
    assert r.probs.shape == (4, h, w) and ((r.probs >= 0) & (r.probs <= 1)).all()
    np.testing.assert_array_equal(r.masks, r.probs > 0.5)
    assert r.frame_scores.shape == (4,) and ((r.frame_scores > 0) & (r.frame_scores < 1)).all()
    win = next(pred.iter_segment(frames, ["the red square"]))
    q = int(win.chosen_query[0])
    assert q == int(np.argmax(win.query_scores[0])) == r.chosen_query[0]
    # the chosen query's per-frame scores average to the score it was selected by
    assert r.frame_scores.mean() == pytest.approx(float(win.query_scores[0, q]), abs=1e-6)
    lower = _predictor(tiny_model, threshold=0.3).segment(frames, "the red square")[0]
    assert (lower.masks >= r.masks).all() and lower.masks.sum() >= r.masks.sum()


def test_input_forms_agree(tiny_model, make_frames):
    frames = make_frames(3)
    pred = _predictor(tiny_model)
    ref = pred.segment(frames, "the red square")[0].masks
    as_pil = pred.segment([Image.fromarray(f) for f in frames], "the red square")[0].masks
    tensor = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # [T,3,H,W] uint8
    as_uint8 = pred.segment(tensor, "the red square")[0].masks
    as_float = pred.segment(tensor.float() / 255.0, "the red square")[0].masks
    for other in (as_pil, as_uint8, as_float):
        np.testing.assert_array_equal(ref, other)


def test_iter_segment_reads_the_stream_one_window_at_a_time(tiny_model, make_frames):
    frames = make_frames(7)
    pulled = []

    def stream():
        for i, f in enumerate(frames):
            pulled.append(i)
            yield f

    it = _predictor(tiny_model, window=3).iter_segment(stream(), ["the red square"])
    first = next(it)
    assert (first.start, first.end) == (0, 3) and len(pulled) == 3
    assert first.masks.shape == (1, 3, *frames[0].shape[:2])
    rest = list(it)
    assert [(w.start, w.end) for w in rest] == [(3, 6), (6, 7)] and len(pulled) == 7


def test_logits_to_probs_crops_padding_then_upsamples():
    logits = torch.full((2, 32, 48), -20.0)
    logits[:, :24, :40] = torch.linspace(-3, 3, 40)  # the unpadded 24 x 40 region
    logits[:, 24:, :] = 50.0  # padding must not leak into the result
    logits[:, :, 40:] = 50.0
    probs = logits_to_probs(logits, (24, 40), (48, 80))
    expected = torch.nn.functional.interpolate(logits[:, None, :24, :40], size=(48, 80), mode="bilinear",
                                               align_corners=False)[:, 0].sigmoid()
    torch.testing.assert_close(probs, expected)
    assert probs.max() < 0.96  # sigmoid(3) ~ 0.953: nothing from the padding


def test_pad_to_divisible_marks_padding():
    x, mask = pad_to_divisible(torch.ones(1, 2, 3, 20, 33))
    assert x.shape == (1, 2, 3, 32, 48) and mask.shape == (1, 2, 32, 48)
    assert not mask[..., :20, :33].any() and mask[..., 20:, :].all() and mask[..., :, 33:].all()
    assert x[..., 20:, :].abs().sum() == 0


def test_pad_to_divisible_keeps_given_padding_and_pads_to_a_size():
    frames, mask = torch.ones(2, 3, 20, 30), torch.zeros(2, 20, 30, dtype=torch.bool)
    mask[:, :, 25:] = True  # a batch's padding, already there
    x, out = pad_to_divisible(frames, 16, pad_mask=mask, size=(33, 30))
    assert x.shape == (2, 3, 48, 32) and out.shape == (2, 48, 32)
    assert out[:, :, 25:].all() and out[:, 20:].all() and not out[:, :20, :25].any()
    same, unchanged = pad_to_divisible(torch.ones(1, 3, 32, 48))
    assert same.shape == (1, 3, 32, 48) and not unchanged.any()
    with pytest.raises(ValueError, match="smaller"):
        pad_to_divisible(frames, 16, size=(10, 30))


def test_the_verbs_give_the_forward_outputs(tiny_model, make_frames):
    """encode_video + segment = forward on the padded clip, for every query or the best one."""
    from vdit.models.inputs import frames_to_tensor

    x = frames_to_tensor(make_frames(2))  # [T,3,72,100]
    texts = TEXTS[:2]
    xp, pad = pad_to_divisible(x[None])
    with torch.inference_mode():
        video = tiny_model.encode_video(x)
        assert video.size == (72, 100) and torch.equal(video.frames, xp) and torch.equal(video.pad_mask, pad)
        for queries in ("best", "all"):
            out = tiny_model.segment(video, texts, queries=queries)
            head = tiny_model(xp.expand(2, -1, -1, -1, -1), texts, pad_mask=pad.expand(2, -1, -1, -1),
                              sizes=torch.tensor([[72, 100]] * 2))
            ref = tiny_model.inference_outputs(head)
            ref_masks = ref.pred_masks if queries == "best" else tiny_model.all_query_masks(head)
            q = ref.pred_logits.shape[2]
            k = 1 if queries == "best" else q
            assert out.mask_logits.shape == (2, 2, k, 80, 112) and out.query_logits.shape == (2, 2, q)
            torch.testing.assert_close(out.mask_logits.reshape(ref_masks.shape), ref_masks, atol=0, rtol=0)
            torch.testing.assert_close(out.scores, ref.scores, atol=0, rtol=0)
            expected = ref.best_query[:, None] if queries == "best" else torch.arange(q).expand(2, q)
            assert torch.equal(out.mask_queries, expected)
            assert torch.equal(out.best_query, out.scores.argmax(-1))
    with pytest.raises(InputError, match=r"\[T,3,H,W\]"):
        tiny_model.encode_video(x[None])


def test_to_host_brings_every_tensor_back_in_one_copy():
    from vdit.engine.syncs import SyncCounter
    from vdit.inference.postprocess import to_host

    values = {"masks": torch.rand(2, 3, 5) > 0.5, "query": torch.arange(4).view(2, 2), "scores": torch.rand(2, 7),
              "empty": torch.zeros(0, 3)}
    with SyncCounter() as syncs:
        host = to_host(values)
    assert syncs.count == 1
    for name, t in values.items():
        assert host[name].dtype == t.numpy().dtype and host[name].shape == tuple(t.shape)
        np.testing.assert_array_equal(host[name], t.numpy())
    with pytest.raises(TypeError, match="bfloat16"):
        to_host({"x": torch.zeros(2, dtype=torch.bfloat16)})


def test_window_helpers():
    assert window_bounds(0, 36) == []
    assert window_bounds(5, None) == [(0, 5)]
    assert window_bounds(72, 36) == [(0, 36), (36, 72)]
    assert [(s, len(c)) for s, c in iter_windows(iter(range(5)), 2)] == [(0, 2), (2, 2), (4, 1)]
    with pytest.raises(InputError, match="window"):
        window_bounds(5, 0)


def test_loading_from_a_weights_folder(tiny_weights, tiny_model, make_frames):
    frames = make_frames(2)
    ref = _predictor(tiny_model).segment(frames, "the red square")[0].masks
    loaded = VDITPredictor(weights=tiny_weights, short_side=SHORT, device="cpu")
    np.testing.assert_array_equal(ref, loaded.segment(frames, "the red square")[0].masks)
    assert not loaded.model.training
    # model + weights: the weights' trainable parameters are loaded into the given model
    with torch.no_grad():
        for p in loaded.model.trainable_named_parameters().values():
            p.zero_()
    reloaded = VDITPredictor(model=loaded.model, weights=tiny_weights / WEIGHTS_NAME, short_side=SHORT, device="cpu")
    np.testing.assert_array_equal(ref, reloaded.segment(frames, "the red square")[0].masks)


@pytest.mark.parametrize("texts, message", [("", "empty"), (["ok", "  "], "text 1 is empty"), ([], "at least one")])
def test_bad_texts(tiny_model, make_frames, texts, message):
    with pytest.raises(InputError, match=message):
        _predictor(tiny_model).segment(make_frames(1), texts)


def test_bad_frames(tiny_model, make_frames):
    pred = _predictor(tiny_model, window=2)
    frames = make_frames(3) + make_frames(1, h=80, w=100)
    with pytest.raises(InputError, match="frame 3 is 100x80 but frame 0 is 100x72"):
        list(pred.iter_segment(frames, "x"))  # the mismatch is in the second window
    with pytest.raises(InputError, match="no frames"):
        pred.segment([], "x")
    with pytest.raises(InputError, match="grey"):
        pred.segment([np.zeros((72, 100), np.uint8)], "x")
    with pytest.raises(InputError, match="single H x W x 3 image"):
        pred.segment(make_frames(1)[0], "x")


def test_bad_settings(tiny_model, monkeypatch, tmp_path):
    import vdit.mini.builtin as builtin_module

    with pytest.raises(InputError, match=r"needs model= or weights=.*vdit\.mini\.builtin\.builtin_predictor\(\)"):
        VDITPredictor()
    monkeypatch.setattr(builtin_module, "BUILTIN_WEIGHTS_DIR", tmp_path / "no_builtin")
    with pytest.raises(ModelLoadError, match="built-in VD-IT weights are missing"):
        builtin_module.builtin_predictor()
    with pytest.raises(InputError, match="at least 64"):
        VDITPredictor(model=tiny_model, short_side=32)
    with pytest.raises(InputError, match="sharing"):
        VDITPredictor(model=tiny_model, sharing="sometimes")
    with pytest.raises(InputError, match="threshold"):
        VDITPredictor(model=tiny_model, threshold=1.5)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            VDITPredictor(model=tiny_model, device="cuda")


def test_default_input_size_comes_from_the_model_config(tiny_model, monkeypatch):
    from vdit.data.transforms import EVAL_SHORT_SIDE

    assert VDITPredictor(model=tiny_model, device="cpu").short_side == EVAL_SHORT_SIDE  # config records none
    monkeypatch.setattr(tiny_model.cfg, "input_short_side", 96)
    pred = VDITPredictor(model=tiny_model, device="cpu")
    assert pred.short_side == 96 and pred.input_size(120, 200) == (96, 160)
    assert VDITPredictor(model=tiny_model, device="cpu", short_side=None).short_side is None
    monkeypatch.setattr(tiny_model.cfg, "input_short_side", 32)
    with pytest.raises(InputError, match="at least 64"):
        VDITPredictor(model=tiny_model, device="cpu")
    with pytest.raises(InputError, match="short_side must be"):
        VDITPredictor(model=tiny_model, device="cpu", short_side="native")
