"""Miniature training speed: one process with N threads vs N processes (torchrun, gloo) with one thread each.

    python bench/mini_train_procs.py                      # 2 cores: 1 x 2 threads vs 2 x 1 thread
    python bench/mini_train_procs.py --steps 150 --procs 2 --repeats 2

Both arms run `vdit train --preset mini_synthetic` for `--steps` optimizer steps of the same global batch
(4 clips x 2 frames: one process with batch 4, or `--procs` processes with batch 4 / procs each, the
gradients averaged by DDP), one after the other in this run, alternating when `--repeats` > 1. The time
per step is read from the runs' own metrics.jsonl (the wall clock between the first logged step from
WARMUP_STEPS on and the last), so start-up, model loading and the first, slower steps are not counted.
Prints seconds per step for each arm and their ratio. Needs a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WARMUP_STEPS = 20
EPOCH_STEPS = 5091  # mini_synthetic: 20364 training clips / batch 4 (docs/miniature.md)


def seconds_per_step(run: Path, skip: int) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("event") == "train" and r["step"] >= skip]
    if len(train) < 2:
        raise SystemExit(f"{run}: fewer than two logged steps from step {skip} on; raise --steps")
    return (train[-1]["time"] - train[0]["time"]) / (train[-1]["step"] - train[0]["step"])


def run_arm(procs: int, threads: int, steps: int, work: Path, batch: int) -> float:
    out = work / f"p{procs}t{threads}"
    shutil.rmtree(out, ignore_errors=True)
    overrides = ["--set", f"train.max_steps={steps}", "--set", "train.log_every=10",
                 "--set", f"train.batch_size={batch // procs}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    if procs == 1:
        cmd = [sys.executable, "-m", "vdit", "train", "--preset", "mini_synthetic", "--out", str(out), *overrides]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "vdit", "train", "--preset", "mini_synthetic", "--out", str(out), *overrides]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return seconds_per_step(out, skip=WARMUP_STEPS)


def main(argv: list[str] | None = None) -> int:
    from vdit.mini.data import default_data_dir, ensure_benchmark
    from vdit.mini.recipe import MINI_BATCH_SIZE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--procs", type=int, default=2, help="processes of the DDP arm (and threads of the other)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    args = ap.parse_args(argv)
    if MINI_BATCH_SIZE % args.procs:
        raise SystemExit(f"--procs {args.procs} does not divide the batch of {MINI_BATCH_SIZE}")
    ensure_benchmark(default_data_dir())  # generated before any clock starts
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vdit-procs-"))
    single, multi = [], []
    for _ in range(args.repeats):
        single.append(run_arm(1, args.procs, args.steps, work, MINI_BATCH_SIZE))
        multi.append(run_arm(args.procs, 1, args.steps, work, MINI_BATCH_SIZE))
    s, m = min(single), min(multi)
    print(f"1 process x {args.procs} threads: {s:.3f} s/step (runs: {', '.join(f'{x:.3f}' for x in single)})")
    print(f"{args.procs} processes x 1 thread: {m:.3f} s/step (runs: {', '.join(f'{x:.3f}' for x in multi)})")
    print(f"ratio: {s / m:.2f}x (DDP over threads); one epoch of {EPOCH_STEPS} steps: {EPOCH_STEPS * s / 60:.1f} vs {EPOCH_STEPS * m / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
