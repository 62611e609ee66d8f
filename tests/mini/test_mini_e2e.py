"""End to end on the shipped miniature world: a VD-IT head trained for a few minutes on CPU from the shipped
tiny foundation models must clearly beat the text-blind baseline (same recipe, seed and steps) on clips
it never saw.

Both heads are trained by the user's commands, `vdit mini train` then `vdit mini eval`, as two
subprocesses side by side, one torch thread each: on the 2-core machine two 1000-step trainings take
~6-7 minutes that way (0.37 s/step each), against ~9 one after the other with two threads. The recipe
is `mini_synthetic` (batch 4 clips x 2 frames, lr 8e-4, seed 42; its lr drop after step 4000 lies beyond
these budgets).

Two budgets (measured numbers and durations in docs/miniature.md, "Measured results"), on the shipped
foundation (second build of 2026-12-05: CLIP stage of 4000 steps on referring expressions, chroma-weighted
VAE; on the first build the same budgets measured 0.305 vs 0.194 and 0.329 vs 0.172; the foundation of
2026-12-04 needed 1500 steps on heldout):
- `valid` (default suite): 1000 steps, scored on all 40 valid videos (videos unseen in training; their
  colour + shape pairs were seen). Measured J&F 0.346 vs 0.197 (the ablation table's seed-42 runs of
  VD-IT and text-blind are these two trainings; on another machine instance they gave 0.350 vs 0.193).
- `heldout` (on request, VDIT_E2E=1): 1000 steps, scored on the first 20 heldout videos (colour +
  shape pairs never seen in training). Measured 0.361 vs 0.216 (the same two trainings; 0.346 vs
  0.185 on the other machine).
MIN_GAP, the required margin, is less than half of each measured gap.
"""
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from vdit.mini.preset import MINI_FOUNDATION_DIR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all((MINI_FOUNDATION_DIR / part).is_dir() for part in ("t2v", "clip_vision", "text_encoder")),
        reason=f"the shipped mini foundation ({MINI_FOUNDATION_DIR}) is absent: run `vdit mini pretrain "
               f"--out {MINI_FOUNDATION_DIR}`",
    ),
]

MIN_GAP = 0.05  # what "clearly beats" means here (J&F as a fraction)


@dataclass(frozen=True)
class Budget:
    steps: int  # optimizer steps per model
    split: str  # scored split
    videos: int | None  # first videos of the split (None: all)
    measured: tuple[float, float]  # this budget's measured J&F: (VD-IT, text-blind)


BUDGETS = {
    "valid": Budget(steps=1000, split="valid", videos=None, measured=(0.346, 0.197)),
    "heldout": Budget(steps=1000, split="heldout", videos=20, measured=(0.361, 0.216)),
}
ON_REQUEST = {"heldout"}


@pytest.fixture(scope="module")
def full_bench(tmp_path_factory):
    from vdit.mini.train import ensure_mini_benchmark

    return ensure_mini_benchmark(tmp_path_factory.mktemp("mini_e2e_bench"))


def _run_side_by_side(commands: dict[str, list[str]], logs_dir) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    procs = {}
    for name, args in commands.items():
        log = open(logs_dir / f"{name}.log", "a")
        procs[name] = (subprocess.Popen([sys.executable, "-m", "vdit", *args, "--threads", "1"], stdout=log,
                                        stderr=subprocess.STDOUT, env=env), log)
    for name, (proc, log) in procs.items():
        rc = proc.wait()
        log.close()
        assert rc == 0, f"`vdit {' '.join(commands[name][:2])}` for {name} failed ({rc}):\n" \
                        f"{(logs_dir / f'{name}.log').read_text()[-3000:]}"


@pytest.mark.parametrize("budget_name", list(BUDGETS))
def test_vdit_head_beats_text_blind_on_unseen_clips(budget_name, full_bench, tmp_path):
    if budget_name in ON_REQUEST and os.environ.get("VDIT_E2E") != "1":
        pytest.skip("opt-in (VDIT_E2E=1): two 1000-step trainings, ~7 minutes")
    budget = BUDGETS[budget_name]
    controls = {"vd_it": [], "text_blind": ["--control", "text_blind"]}
    _run_side_by_side({name: ["mini", "train", "--out", str(tmp_path / name), "--data", str(full_bench),
                              "--steps", str(budget.steps), "--no-eval", "--set", "train.log_every=1000", *extra]
                       for name, extra in controls.items()}, tmp_path)
    limit = [] if budget.videos is None else ["--limit", str(budget.videos)]
    _run_side_by_side({name: ["mini", "eval", "--weights", str(tmp_path / name / "head"), "--data",
                              str(full_bench), "--split", budget.split, "--out", str(tmp_path / name / "eval"),
                              *limit]
                       for name in controls}, tmp_path)
    vd, blind = (json.loads((tmp_path / n / "eval" / "mini_scores.json").read_text())[budget.split]["J&F"]
                 for n in controls)
    print(f"e2e {budget.steps} steps, {budget.split} J&F: VD-IT {vd:.4f}, text-blind {blind:.4f} "
          f"(measured {budget.measured[0]:.3f} vs {budget.measured[1]:.3f})")
    assert 0.0 < blind < 1.0 and 0.0 < vd < 1.0
    assert vd - blind >= MIN_GAP, f"VD-IT {vd:.3f} vs text-blind {blind:.3f}: gap below {MIN_GAP}"
