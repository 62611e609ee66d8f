"""Host-device syncs at inference (issue 16): the eval forward and one predictor window, counted.

Counted with `vdit.engine.syncs.SyncCounter` on a tiny model (on a CPU-only machine every tensor counts
as device memory, so the count is what an accelerator run would sync; uploads are only visible on an
accelerator). Each remaining sync is stated below with its source; a new one anywhere fails the test and
names its line. Events are attributed to the innermost vdit frame outside the CPU-kernel routing (its
`__torch_function__` frame sits under every torch call of an eval forward on the CPU).
"""
from __future__ import annotations

import weakref
from collections import Counter

import numpy as np
import pytest
import torch

from vdit.engine.syncs import SCALAR_READ, TRANSFER, SyncCounter

TEXT = "the red circle moving left"
# What one eval forward still syncs, by file, with `check_values=False` and `clip_preprocess="fast"`:
# RoBERTa's padding-mask check inside transformers (masking_utils: `padding_mask.all()` decides whether
# SDPA may drop the mask), called from head/text.py. Nothing else: the deformable transformer builds its
# level layout from Python shapes (no `tolist`, no upload) and its attention calls skip the value checks.
FORWARD_SYNCS = {"text.py": 1}
# With the defaults: + the frames' finiteness check (vdit.py, `check_values=True`) and the official CLIP
# preprocessing's host round trip (clip_image.py: the PIL processor runs on the host, spec 2.3).
FORWARD_SYNCS_DEFAULTS = {"text.py": 1, "vdit.py": 1, "clip_image.py": 1}
# One predictor window of S sentences, whatever S: the model call reads nothing back but the forward's
# RoBERTa check (once per batch of sentences; the frames come from 8-bit images, so the predictor skips
# their finiteness check), and the results reach the host in one transfer (vdit/inference/postprocess.py).
PREDICTOR_WINDOW_SYNCS = {"text.py": 1, "postprocess.py": 1}


def _where(event) -> str:
    """File of the innermost vdit frame of an event that is not the CPU-kernel routing."""
    frames = [f for f in event.stack if not f.startswith("cpu_kernels.py:")]
    return frames[-1].split(":")[0] if frames else event.where.split(":")[0]


def _per_file(counter: SyncCounter) -> dict[str, int]:
    return dict(Counter(_where(e) for e in counter.events))


def _describe(counter: SyncCounter) -> list[str]:
    return [f"{e.kind} {e.op} @ {' > '.join(e.stack[-3:])}" for e in counter.events]


@pytest.fixture(scope="module")
def tiny_model(tiny_root):
    from vdit.config import apply_overrides, tiny_config
    from vdit.models.vdit import VDIT

    torch.manual_seed(0)
    cfg = apply_overrides(tiny_config(tiny_root), ["backbone.clip_preprocess=fast"])
    return VDIT.from_config(cfg).eval()


def _frames() -> torch.Tensor:
    return torch.randn(1, 2, 3, 64, 96, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("routed", [False, True])
def test_eval_forward_syncs_only_the_stated_one(tiny_model, routed, monkeypatch):
    """`routed`: with every linear and convolution of the tiny model sent through the CPU kernels (their
    size thresholds lowered), as the full-size model runs them: they add no sync either."""
    if routed:
        from vdit.models.ops import cpu_kernels as ck

        if not ck.is_enabled():
            pytest.skip("oneDNN's linear op is not available in this build")
        for name, value in (("MIN_MACS", 0), ("WINOGRAD_MIN_CHANNELS", 0), ("WINOGRAD_MIN_ROWS", 0),
                            ("MIN_WEIGHT_ELEMENTS", 0)):
            monkeypatch.setattr(ck, name, value)
        monkeypatch.setattr(ck, "_worthwhile", weakref.WeakKeyDictionary())
    frames = _frames()
    with torch.inference_mode():
        tiny_model.predict(frames, [TEXT], check_values=False)  # warm-up (lazy imports, caches)
        with SyncCounter() as syncs:
            out = tiny_model.predict(frames, [TEXT], check_values=False)
    assert out.pred_masks.shape == (1, 2, 64, 96)
    assert _per_file(syncs) == FORWARD_SYNCS, _describe(syncs)
    assert [e.op for e in syncs.events] == ["aten.is_nonzero.default"]  # transformers' `mask.all()` in an `if`


def test_eval_forward_with_the_defaults(tiny_model):
    frames = _frames()
    saved = tiny_model.backbone.cfg.clip_preprocess
    tiny_model.backbone.cfg.clip_preprocess = "official"
    try:
        with torch.inference_mode():
            tiny_model.predict(frames, [TEXT])
            with SyncCounter() as syncs:
                tiny_model.predict(frames, [TEXT])
    finally:
        tiny_model.backbone.cfg.clip_preprocess = saved
    assert _per_file(syncs) == FORWARD_SYNCS_DEFAULTS, _describe(syncs)
    kinds = Counter((_where(e), e.kind) for e in syncs.events)
    assert kinds[("vdit.py", SCALAR_READ)] == 1 and kinds[("clip_image.py", TRANSFER)] == 1


def test_deformable_transformer_reads_nothing_back(tiny_model):
    """The head's transformer alone: its level layout comes from Python shapes (fills, not an upload)
    and the attention calls skip their value checks, so it makes no sync at all."""
    tr = tiny_model.transformer
    c = tr.d_model
    g = torch.Generator().manual_seed(1)
    shapes = [(8, 12), (4, 6), (2, 3), (1, 2)]
    srcs = [torch.randn(2, c, h, w, generator=g) for h, w in shapes]
    masks = [torch.zeros(2, h, w, dtype=torch.bool) for h, w in shapes]
    masks[0][:, :, -2:] = True
    pos = [torch.randn(2, c, h, w, generator=g) for h, w in shapes]
    tgt, query_pos = torch.randn(2, 5, c, generator=g), torch.randn(2, 5, c, generator=g)
    with torch.inference_mode():
        with SyncCounter() as syncs:
            tr(srcs, masks, pos, tgt, query_pos)
    assert syncs.count == 0, _describe(syncs)


def test_deformable_attention_value_checks_are_the_only_reads():
    """`check_values=True` (the default for outside callers) reads spatial_shapes and level_start_index
    back (2 syncs) and still rejects a wrong layout; `check_values=False` reads nothing."""
    from vdit.models.ops.ms_deform_attn import MSDeformAttn

    attn = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=2).eval()
    g = torch.Generator().manual_seed(2)
    shapes = torch.tensor([[4, 6], [2, 3]])
    start = torch.tensor([0, 24])
    query, value = torch.randn(1, 5, 32, generator=g), torch.randn(1, 30, 32, generator=g)
    ref = torch.rand(1, 5, 2, 2, generator=g)
    with torch.inference_mode():
        with SyncCounter() as checked:
            a = attn(query, ref, value, shapes, start)
        with SyncCounter() as unchecked:
            b = attn(query, ref, value, shapes, start, check_values=False)
        with pytest.raises(ValueError, match="level_start_index"):
            attn(query, ref, value, shapes, torch.tensor([0, 20]))
    assert checked.count == 2 and unchecked.count == 0
    assert torch.equal(a, b)


def test_predictor_window_syncs(tiny_model):
    from vdit.inference.predictor import VDITPredictor

    predictor = VDITPredictor(model=tiny_model, device="cpu", short_side=None)
    frames = list((np.random.default_rng(0).random((2, 72, 100, 3)) * 255).astype(np.uint8))  # padded to 80x112
    texts = [TEXT, "the blue square", "the green star", "the small one"]
    list(predictor.iter_segment(frames, texts))  # warm-up
    with SyncCounter() as syncs:
        (window,) = list(predictor.iter_segment(frames, texts, return_probs=True))
    assert window.masks.shape == window.probs.shape == (4, 2, 72, 100)
    assert _per_file(syncs) == PREDICTOR_WINDOW_SYNCS, _describe(syncs)
    assert [e.kind for e in syncs.events if _where(e) == "postprocess.py"] == [TRANSFER]
