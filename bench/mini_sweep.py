"""Train several miniature-world VD-IT heads side by side (parallel processes) and print their J&F.

    python bench/mini_sweep.py --jobs 4 --runs /tmp/sweep \
        "vdit: --steps 2000" "blind: --steps 2000 --control text_blind" "lr2e-4: --steps 2000 --set train.lr=2e-4"

Each argument is `NAME: ARGS`, where ARGS go to `vdit mini train` (every run also gets `--out RUNS/NAME`).
The benchmark is generated once before the runs start. On a machine with a GPU the trainer uses it
(`train.device=auto`); scoring runs where `vdit mini train` scores. Prints one row per run (valid and
heldout J&F, J&F per expression kind on valid, wall time) and writes RUNS/sweep.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(name: str, args: list[str], runs: Path, threads: int, timeout: float | None) -> dict:
    out = runs / name
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "vdit", "mini", "train", "--out", str(out), "--threads", str(threads), *args]
    t0 = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        try:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = -9
    wall = time.perf_counter() - t0
    scores_file = out / "eval" / "mini_scores.json"
    scores = json.loads(scores_file.read_text()) if scores_file.is_file() else {}
    tail = (out / "log.txt").read_text().splitlines()[-3:]
    return {"name": name, "args": args, "rc": rc, "wall_s": wall, "scores": scores, "tail": tail}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+", help="NAME: ARGS for `vdit mini train`")
    ap.add_argument("--runs", default="runs/mini-sweep")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    ap.add_argument("--run-timeout", type=float, default=None, help="seconds after which a run is killed")
    args = ap.parse_args(argv)
    from vdit.mini.data import default_data_dir
    from vdit.mini.train import ensure_mini_benchmark

    ensure_mini_benchmark(default_data_dir())
    runs = Path(args.runs)
    specs = []
    for s in args.specs:
        name, _, rest = s.partition(":")
        specs.append((name.strip(), shlex.split(rest)))
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda sp: run(sp[0], sp[1], runs, args.threads, args.run_timeout), specs))
    (runs / "sweep.json").write_text(json.dumps(results, indent=1))
    print(f"\n{'run':<22}{'rc':>4}{'valid J&F':>11}{'heldout':>9}{'wall s':>8}  valid J&F by kind")
    for r in results:
        sc = r["scores"]
        v = sc.get("valid", {}).get("J&F", float("nan")) * 100
        h = sc.get("heldout", {}).get("J&F", float("nan")) * 100
        kinds = sc.get("valid", {}).get("by_kind", {})
        kind_txt = " ".join(f"{k}={(d['J&F'] if isinstance(d, dict) else d) * 100:.1f}" for k, d in kinds.items())
        print(f"{r['name']:<22}{r['rc']:>4}{v:>11.1f}{h:>9.1f}{r['wall_s']:>8.0f}  {kind_txt}")
        if r["rc"]:
            print("   " + " | ".join(r["tail"]))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
