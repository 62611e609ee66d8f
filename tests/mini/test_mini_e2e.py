"""End to end on the shipped miniature world: a VD-IT head trained for a few minutes on CPU from the shipped
tiny foundation models must clearly beat the text-blind baseline (same budget) on held-out clips.

Measured (docs/miniature.md, "Measured results"): with the `mini_synthetic` recipe the head does NOT yet
use the text within a CPU budget. Heldout J&F, VD-IT vs text-blind, same seed (see MEASURED): on the
earlier foundation, first 20 videos, 150 steps 0.165 vs 0.153 and 450 steps 0.193 vs 0.197; on the
shipped one (retrained text encoder), 600 steps 0.203 vs 0.213 (20 videos), 2000 steps 0.182 vs 0.247
(all 40 videos), one epoch (4623 steps, colour-keeping photometric transform) 0.255 vs 0.217 (all 40
videos; valid 0.212 vs 0.215). The requirement (a clear gap,
MIN_GAP) is asserted as it stands, so the test fails today: it runs only on request (VDIT_E2E=1, ~2 minutes)
and the requirement is listed as not met in README.md and docs/miniature.md until the recipe makes the head
read the text.
"""
import os

import pytest

from vdit.config import MINI_FOUNDATION_DIR

pytestmark = pytest.mark.skipif(
    not all((MINI_FOUNDATION_DIR / part).is_dir() for part in ("t2v", "clip_vision", "text_encoder")),
    reason=f"the shipped mini foundation ({MINI_FOUNDATION_DIR}) is absent: run `vdit mini pretrain "
           f"--out {MINI_FOUNDATION_DIR}`",
)

E2E_STEPS = 150  # optimizer steps per model (the preset: batch 4 clips x 2 frames, lr 8e-4)
E2E_EVAL_VIDEOS = 20  # first videos of the heldout split
# Measured heldout J&F at these steps: (VD-IT, text-blind); see the module docstring for the settings.
MEASURED = {150: (0.1654, 0.1528), 450: (0.1932, 0.1967), 600: (0.203, 0.213), 2000: (0.182, 0.247),
            4623: (0.255, 0.217)}
MIN_GAP = 0.05  # what "clearly beats" means here (fractions of J&F)


@pytest.fixture(scope="module")
def full_bench(tmp_path_factory):
    from vdit.mini.train import ensure_mini_benchmark

    return ensure_mini_benchmark(tmp_path_factory.mktemp("mini_e2e_bench"))


def _train_and_score(bench, out, control):
    from vdit.mini.train import evaluate_mini, mini_run_config, train_mini

    cfg = mini_run_config(data=bench, steps=E2E_STEPS, control=control, overrides=["train.log_every=1000"])
    trained = train_mini(cfg, out / "run")
    assert trained.steps == E2E_STEPS
    return evaluate_mini(trained.weights_dir, bench, out / "eval", splits=("heldout",), limit=E2E_EVAL_VIDEOS)


@pytest.mark.skipif(os.environ.get("VDIT_E2E") != "1",
                    reason="opt-in (VDIT_E2E=1): fails today, the head does not use the text within a CPU budget "
                           f"yet (heldout J&F VD-IT vs text-blind: {MEASURED}); see docs/miniature.md")
def test_vdit_head_beats_text_blind_on_heldout(full_bench, tmp_path):
    vd = _train_and_score(full_bench, tmp_path / "vd_it", None)["heldout"]["J&F"]
    blind = _train_and_score(full_bench, tmp_path / "blind", "text_blind")["heldout"]["J&F"]
    print(f"e2e heldout J&F: VD-IT {vd:.4f}, text-blind {blind:.4f}")
    assert 0.0 < blind < 1.0 and 0.0 < vd < 1.0
    assert vd - blind >= MIN_GAP, f"VD-IT {vd:.3f} vs text-blind {blind:.3f}: gap below {MIN_GAP}"
