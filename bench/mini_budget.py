"""Time the miniature world's budgeted jobs exactly as a user runs them (one subprocess each):

    python bench/mini_budget.py --work /tmp/mini-budget [--threads 2] [--steps 2000] [--skip-pretrain]

1. `vdit demo` with the shipped model (budget: 60 s);
2. `vdit mini pretrain` of a fresh foundation into WORK/foundation (default plan, seed 0);
3. `vdit mini train` of a head on that foundation (default step budget), with scoring;
   2 + 3 together: budget 45 minutes.
The benchmark is generated before the clock starts (its ~20 s belong to neither job). Prints one row per
job (wall seconds, budget, within or not) and writes WORK/budget.json. `--skip-pretrain` trains the head
on the shipped foundation instead and does not report the pretrain + train sum. The ablation table's
budget (3 hours on CPU) is read from a finished `vdit mini ablations` runs folder with `--ablations RUNS`
(those runs' timings are their own): the sum of its runs' training and scoring seconds, and the wall
time of `--ablation-processes N` (default 2) processes side by side, the runs split greedily.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_BUDGET_S = 60.0
PRETRAIN_TRAIN_BUDGET_S = 45 * 60.0
ABLATIONS_BUDGET_S = 3 * 3600.0


def timed(name: str, args: list[str], work: Path) -> dict:
    log_path = work / f"{name}.log"
    cmd = [sys.executable, "-m", "vdit", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    if rc != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-5:])
        raise SystemExit(f"{name} failed (rc {rc}); last lines of {log_path}:\n{tail}")
    return {"job": name, "command": " ".join(["vdit", *args]), "wall_s": round(wall, 1), "log": str(log_path)}


def ablation_seconds(runs: Path, processes: int) -> list[dict]:
    """The table's cost from a finished runs folder: the sum of its runs' own training + scoring seconds,
    and the wall time of `processes` side-by-side `vdit mini ablations --only ...` processes: the
    longest process when the runs are split greedily, longest first, onto the least-loaded process
    (the runs' times must come from runs made that way, `processes` at a time)."""
    files = sorted(runs.glob("*/seed-*/result.json"))
    if not files:
        raise SystemExit(f"no finished ablation runs under {runs}")
    seconds = sorted((json.loads(f.read_text()) for f in files), key=lambda r: -(r["train_s"] + r["eval_s"]))
    loads = [0.0] * processes
    for r in seconds:
        loads[loads.index(min(loads))] += r["train_s"] + r["eval_s"]
    return [{"job": "ablations (sum of finished runs)", "runs": len(files), "wall_s": round(sum(loads), 1)},
            {"job": f"ablations, {processes} processes", "runs": len(files), "wall_s": round(max(loads), 1),
             "budget_s": ABLATIONS_BUDGET_S}]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="scratch folder (foundation, head, logs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="head steps (default: vdit mini train's)")
    ap.add_argument("--skip-pretrain", action="store_true")
    ap.add_argument("--ablations", default=None, help="a finished `vdit mini ablations` runs folder")
    ap.add_argument("--ablation-processes", type=int, default=2,
                    help="how many `vdit mini ablations` processes ran side by side (default 2)")
    args = ap.parse_args()

    from vdit.mini.data import default_data_dir, ensure_benchmark

    work = Path(args.work).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    ensure_benchmark(default_data_dir())
    threads = ["--threads", str(args.threads)]
    rows = [dict(timed("demo", ["demo", "--out", str(work / "demo"), *threads], work), budget_s=DEMO_BUDGET_S)]
    foundation: list[str] = []
    if not args.skip_pretrain:
        rows.append(timed("pretrain", ["mini", "pretrain", "--out", str(work / "foundation"), *threads], work))
        foundation = ["--foundation", str(work / "foundation")]
    steps = ["--steps", str(args.steps)] if args.steps else []
    rows.append(timed("train", ["mini", "train", "--out", str(work / "head-run"), *foundation, *steps, *threads],
                      work))
    if not args.skip_pretrain:
        rows.append({"job": "pretrain + train", "wall_s": round(rows[1]["wall_s"] + rows[2]["wall_s"], 1),
                     "budget_s": PRETRAIN_TRAIN_BUDGET_S})
    if args.ablations:
        rows += ablation_seconds(Path(args.ablations), args.ablation_processes)
    scores = work / "head-run" / "eval" / "mini_scores.json"
    report = {"threads": args.threads, "rows": rows,
              "head_scores": json.loads(scores.read_text()) if scores.is_file() else None}
    (work / "budget.json").write_text(json.dumps(report, indent=2))
    print(f"{'job':34s} {'wall s':>9s} {'budget s':>9s}  within")
    for r in rows:
        budget = r.get("budget_s")
        ok = "" if budget is None else ("yes" if r["wall_s"] <= budget else "NO")
        print(f"{r['job']:34s} {r['wall_s']:9.1f} {'' if budget is None else f'{budget:9.0f}':>9s}  {ok}")
    print(f"wrote {work / 'budget.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
