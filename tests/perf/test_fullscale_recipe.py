"""bench/fullscale.py part 4: the Ref-YouTube-VOS recipe's wall time from a step time (pure arithmetic).

References: the official sampler's index restated as a loop (spec 5.4: one sample per expression and
start frame in range(0, n, T)), vdit's EpochBatchSampler for the steps per epoch, and the totals worked
out by hand.
"""
from __future__ import annotations

import pytest

from vdit.engine.sampler import EpochBatchSampler


def test_clips_per_epoch_follow_the_official_index(fullscale):
    frames = [36, 18, 27, 5, 1, 30, 31]  # annotated frames of each expression's video
    index = [(e, f) for e, n in enumerate(frames) for f in range(0, n, 5)]
    assert fullscale.official_clips_per_epoch(frames, 5) == len(index) == 8 + 4 + 6 + 1 + 1 + 6 + 7
    # 3 s / 4.5 s / 6 s videos at 6 annotated fps: 18 / 27 / 36 frames -> 4 / 6 / 8 clips per expression
    assert [fullscale.ytvos_clips_estimate(s, expressions=10) for s in (3.0, 4.5, 6.0)] == [40, 60, 80]
    assert fullscale.ytvos_clips_estimate(4.5) == 12913 * 6


@pytest.mark.parametrize("gpus, batch, accum", [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 1, 4)])
def test_recipe_wall_time(fullscale, gpus, batch, accum):
    samples, step_s, allreduce_s, epochs = 1003, 0.25, 0.002, 9
    est = fullscale.recipe_wall_time(step_s, samples, epochs=epochs, gpus=gpus, batch_per_gpu=batch,
                                     grad_accum=accum, allreduce_s=allreduce_s)
    micro = len(EpochBatchSampler(samples, batch, world_size=gpus, rank=0, grad_accum=accum))
    assert est.steps_per_epoch == micro // accum
    expected = epochs * (micro * step_s + (micro // accum) * (allreduce_s if gpus > 1 else 0.0))
    assert est.total_s == pytest.approx(expected, rel=1e-12)


def test_recipe_hours_by_hand(fullscale):
    # 77,478 clips, 0.483 s per step: 1 GPU 9 x 77,478 x 0.483 s = 93.6 h; 2 GPUs: 38,739 steps per epoch
    one = fullscale.recipe_wall_time(0.483, 77478, gpus=1)
    two = fullscale.recipe_wall_time(0.483, 77478, gpus=2, allreduce_s=0.0012)
    assert one.total_s / 3600 == pytest.approx(9 * 77478 * 0.483 / 3600)
    assert two.steps_per_epoch == 38739
    assert two.total_s / 3600 == pytest.approx(9 * 38739 * (0.483 + 0.0012) / 3600)
    # ring all-reduce: 2 (n - 1) / n of the buffer; one GPU needs none
    assert fullscale.allreduce_seconds(0.12, 2, 100.0) == pytest.approx(0.12 / 100.0)
    assert fullscale.allreduce_seconds(0.12, 8, 100.0) == pytest.approx(2 * 7 / 8 * 0.12 / 100.0)
    assert fullscale.allreduce_seconds(0.12, 1, 100.0) == 0.0


def test_recipe_report_runs_without_a_gpu(fullscale, capsys):
    args = fullscale.parse_args(["--only", "recipe"])
    args.device_name = "cpu"
    out = fullscale.recipe_report(args, [{"label": "bf16 frozen", "sec": 0.5}])
    printed = capsys.readouterr().out
    assert "clips per epoch: 77,478" in printed and "measured here, cpu" in printed
    assert len(out["rows"]) == 4  # the measured row, issue 17's two H200 rows, the 5x target
