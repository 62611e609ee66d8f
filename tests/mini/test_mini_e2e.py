"""End to end on the shipped miniature world: a VD-IT head trained for a few minutes on CPU from the shipped
tiny foundation models must clearly beat the text-blind baseline (same budget) on held-out clips.

Measured (docs/miniature.md, "Measured results"), heldout J&F on the first 20 videos, VD-IT vs text-blind,
the `mini_synthetic` recipe, seed 42, the shipped foundation (distinct-colour benchmark), one thread: the
checkpoints of the shipped head's 2000-step run and of its text-blind twin give 0.179 vs 0.163 at 500
steps, 0.265 vs 0.163 at 1000 and 0.326 vs 0.236 at 1500 (all 40 videos at 2000: 0.364 vs 0.157). The test
trains both for E2E_STEPS = 1000 and asks for a gap of at least MIN_GAP = 0.05, half the measured one;
run with one thread (OMP_NUM_THREADS=1) it scored 0.2651 vs 0.1631, the checkpoints' numbers, in 23 minutes
beside another training run (~12 minutes expected with two threads on a quiet machine, from the measured
638 s of a 2000-step run there). Beyond the suite's budget, so it runs on request (VDIT_E2E=1).
"""
import os

import pytest

from vdit.config import MINI_FOUNDATION_DIR

pytestmark = pytest.mark.skipif(
    not all((MINI_FOUNDATION_DIR / part).is_dir() for part in ("t2v", "clip_vision", "text_encoder")),
    reason=f"the shipped mini foundation ({MINI_FOUNDATION_DIR}) is absent: run `vdit mini pretrain "
           f"--out {MINI_FOUNDATION_DIR}`",
)

E2E_STEPS = 1000  # optimizer steps per model (the preset: batch 4 clips x 2 frames, lr 8e-4)
E2E_EVAL_VIDEOS = 20  # first videos of the heldout split
# Measured heldout J&F at these steps: (VD-IT, text-blind); see the module docstring for the settings.
MEASURED = {500: (0.179, 0.163), 1000: (0.265, 0.163), 1500: (0.326, 0.236)}
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
                    reason="opt-in (VDIT_E2E=1): two 1000-step trainings, ~12 minutes")
def test_vdit_head_beats_text_blind_on_heldout(full_bench, tmp_path):
    vd = _train_and_score(full_bench, tmp_path / "vd_it", None)["heldout"]["J&F"]
    blind = _train_and_score(full_bench, tmp_path / "blind", "text_blind")["heldout"]["J&F"]
    print(f"e2e heldout J&F: VD-IT {vd:.4f}, text-blind {blind:.4f}")
    assert 0.0 < blind < 1.0 and 0.0 < vd < 1.0
    assert vd - blind >= MIN_GAP, f"VD-IT {vd:.3f} vs text-blind {blind:.3f}: gap below {MIN_GAP}"
