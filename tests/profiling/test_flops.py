"""vdit.profiling.flops: the full-size FLOP count against issue 6's figures."""
from __future__ import annotations

import pytest

from vdit.profiling import inference_flops

# Issue 6, counted with torch.utils.flop_counter at 368x640 (TFLOP per frame).
ISSUE_VAE, ISSUE_CLIP, ISSUE_UNET, ISSUE_UNET_NO_TAIL = 1.00, 0.33, 1.17, 0.93
FLOP_RTOL = 0.02
YTVOS_SIZE = (368, 640)


def test_full_preset_flops_match_the_issue():
    """VAE encoder, CLIP-H, UNet with and without the tail per frame at 368x640 (2-frame clip: the
    temporal layers' share per frame barely depends on the clip length)."""
    f = inference_flops("full", 2, YTVOS_SIZE)["per_frame"]
    assert f["vae_encoder"] == pytest.approx(ISSUE_VAE, rel=FLOP_RTOL)
    assert f["clip_vision"] == pytest.approx(ISSUE_CLIP, rel=0.03)
    assert f["unet"] == pytest.approx(ISSUE_UNET, rel=FLOP_RTOL)
    assert f["unet_no_tail"] == pytest.approx(ISSUE_UNET_NO_TAIL, rel=FLOP_RTOL)
    assert 0.03 < f["rest"] < 0.1  # prompt projection, noise, level projections, head
