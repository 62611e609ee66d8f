"""`vdit demo`: segment a freshly generated clip for two sentences with the built-in model (no download,
no training) and write masks, an overlay video, a side-by-side picture and J&F against the ground truth.

    vdit demo [--out vdit-demo] [--seed 0] [--threads 2]

See vdit/mini/demo.py for the output layout.
"""
from __future__ import annotations

import argparse

DEFAULT_THREADS = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment a generated clip for two sentences with the built-in model",
                       description="Generate a clip of the miniature world (never seen in training), segment "
                                   "two referring expressions with the built-in VD-IT model, write PNG masks, "
                                   "overlay.mp4, side_by_side.png and summary.json to --out, and print J&F "
                                   "against the clip's ground truth.")
    p.add_argument("--out", default="vdit-demo", help="output folder (default vdit-demo/)")
    p.add_argument("--seed", type=int, default=0, help="which generated clip (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=f"torch CPU threads (default {DEFAULT_THREADS})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from vdit.errors import ConfigError
    from vdit.mini.demo import run_demo

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    run_demo(args.out, seed=args.seed, device=args.device)
    return 0
