"""`vdit demo`: segment a freshly generated clip for two sentences with the built-in model (no download,
no training) and write masks, an overlay video, a side-by-side picture and J&F against the ground truth.

    vdit demo [--out vdit-demo] [--seed 0] [--threads 2]

See vdit/mini/demo.py for the output layout.
"""
from __future__ import annotations

import argparse

from vdit.cli.mini import DEFAULT_THREADS, set_threads
from vdit.mini.demo import DEFAULT_OUT, DEMO_SEED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment a generated clip for two sentences with the built-in model",
                       description="Generate a clip of the miniature world (never seen in training), segment "
                                   "two referring expressions with the built-in VD-IT model, write PNG masks, "
                                   "overlay.mp4, side_by_side.png and summary.json to --out, and print J&F "
                                   "against the clip's ground truth.")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"which generated clip (default {DEMO_SEED})")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=f"torch CPU threads (default {DEFAULT_THREADS})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vdit.cli.checks import check_output_dir
    from vdit.mini.demo import run_demo

    check_output_dir(args.out)
    set_threads(args.threads)
    run_demo(args.out, seed=args.seed, device=args.device)
    return 0
