"""Host-device syncs (issue 17): the counter itself, then a tiny-preset training step counted with it.

The counter is checked on operations whose sync behaviour is known (a `.item()`, `bool()`, `tolist()`,
a boolean mask, `nonzero`, a transfer and its later reads) and on pure device work (none). Then the
matcher and the loss make no sync once their value checks are left to the host (`check_values=False`,
as the trainer runs them), and a whole tiny training forward + loss makes only the syncs of other
modules, listed in FORWARD_SYNCS_ELSEWHERE (a new sync anywhere makes the test fail and names its line).
"""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from _batch_helpers import box_batch
from vdit.engine.syncs import DATA_DEPENDENT, HOST_READ, SCALAR_READ, TRANSFER, SyncCounter

# Files of the training step whose syncs issue 17 removed: none may appear in a count.
SYNC_FREE_FILES = ("matcher.py", "criterion.py", "text.py", "text_cache.py", "diffusion_backbone.py")
# What a tiny (2 encoder + 2 decoder layers) training forward + loss still syncs, all outside the files
# above (see docs/performance.md "Host syncs"): the frames' finiteness check, the official CLIP
# preprocessing's host round trip, the encoder's reference points from spatial_shapes.tolist(), and the
# deformable attention's two input checks per layer.
FORWARD_SYNCS_ELSEWHERE = {"vdit.py": 1, "clip_image.py": 1, "deformable_transformer.py": 1, "ms_deform_attn.py": 8}


def _kinds(counter: SyncCounter) -> list[str]:
    return [e.kind for e in counter.events]


def test_counts_a_known_item_and_names_its_line():
    x = torch.arange(6.0)
    with SyncCounter() as syncs:
        value = x.sum().item()
    assert value == 15.0
    assert _kinds(syncs) == [SCALAR_READ]
    assert syncs.events[0].where.startswith("test_perf_syncs.py:")


def test_counts_each_kind_of_host_read_once():
    x = torch.tensor([0.5, -1.0, 2.0])
    with SyncCounter() as syncs:
        bool(x.sum() > 0)  # 1: scalar read
        float(x.max())  # 2: scalar read
        x.tolist()  # 3: host read
        x[x > 0]  # 4: boolean mask (output size known only from the values)
        x.nonzero()  # 5: data-dependent shape
        host = x.cpu()  # 6: transfer; what follows reads the host copy: free
        host.numpy()
        torch.isfinite(host).tolist()
        float(host[0])
    assert Counter(_kinds(syncs)) == {SCALAR_READ: 2, HOST_READ: 1, DATA_DEPENDENT: 2, TRANSFER: 1}


def test_device_work_makes_no_sync():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 5, generator=g), torch.randn(5, 3, generator=g)
    with SyncCounter() as syncs:
        c = (a @ b).sigmoid()
        index = c.argmin(dim=1)
        torch.where(torch.isfinite(c), c, torch.full_like(c, float("inf")))
        c[torch.arange(4), index].sum() / c.sum().clamp(min=1.0)
    assert syncs.count == 0


def _matcher_case():
    from vdit.data.types import ClipSample, collate_clips

    g = torch.Generator().manual_seed(0)
    b, t, q, h, w = 2, 3, 4, 16, 16
    samples = []
    for _ in range(b):
        masks = (torch.rand(t, h, w, generator=g) < 0.3).float()
        boxes = torch.cat([torch.rand(t, 2, generator=g) * 0.4 + 0.3, torch.rand(t, 2, generator=g) * 0.3 + 0.1], -1)
        samples.append(ClipSample(frames=torch.zeros(t, 3, h, w), masks=masks, boxes=boxes,
                                  valid=torch.ones(t, dtype=torch.bool), text="x", orig_size=(h, w)))
    batch = collate_clips(samples, size_divisibility=1)
    boxes = torch.cat([torch.rand(b, t, q, 2, generator=g) * 0.5 + 0.25,
                       torch.rand(b, t, q, 2, generator=g) * 0.3 + 0.05], dim=-1)
    layer = {"pred_logits": torch.randn(b, t, q, 1, generator=g), "pred_boxes": boxes,
             "masks_low_all": torch.randn(b, t, q, h // 2, w // 2, generator=g),
             "pred_masks": torch.randn(b, t, h, w, generator=g),
             "pred_masks_low": torch.randn(b, t, h // 2, w // 2, generator=g)}
    return batch, layer


def test_matcher_and_loss_make_no_sync_with_host_checked_targets():
    from vdit.losses import SetCriterion, VideoHungarianMatcher

    batch, layer = _matcher_case()
    for check_values, expect_zero in ((True, False), (False, True)):
        matcher = VideoHungarianMatcher(check_values=check_values)
        criterion = SetCriterion(num_aux_layers=0, check_values=check_values)
        with SyncCounter() as syncs:
            matched = matcher(layer["pred_logits"], layer["pred_boxes"], layer["masks_low_all"], batch)
            criterion({**layer, "matched_query": matched}, batch)["loss"]
        assert (syncs.count == 0) == expect_zero, syncs.summary()


@pytest.fixture(scope="module")
def tiny_model(tiny_root):
    from vdit.config import tiny_config
    from vdit.models.text_cache import TextFeatureCache
    from vdit.models.vdit import VDIT

    torch.manual_seed(0)
    model = VDIT.from_config(tiny_config(tiny_root)).train()
    model.text_encoder.feature_cache = TextFeatureCache(8)
    model.backbone.prompt_cache = TextFeatureCache(8)
    return model


def test_tiny_training_forward_and_loss_syncs(tiny_model):
    from vdit.training import TrainingWrapper

    step = TrainingWrapper.from_model(tiny_model, check_values=False)
    batch = box_batch(torch.randn(1, 2, 3, 64, 96, generator=torch.Generator().manual_seed(1)), ["the red circle"])
    step(batch)  # fills the text caches (a miss encodes)
    with SyncCounter() as syncs:
        step(batch)["loss"]
    ours = [e for e in syncs.events if e.where.split(":")[0] in SYNC_FREE_FILES]
    assert not ours, [(e.kind, e.where) for e in ours]
    per_file = Counter(e.where.split(":")[0] for e in syncs.events)
    new = {f: n for f, n in per_file.items() if n > FORWARD_SYNCS_ELSEWHERE.get(f, 0)}
    assert not new, syncs.summary()  # fewer is fine: each one removed elsewhere lowers the count
