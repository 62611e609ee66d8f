"""`vdit app`: a browser demo (Gradio; `pip install 'vdit[app]'`).

    vdit app [--weights DIR] [--host 127.0.0.1] [--port 7860] [--window 36] [--max-frames 300]

Upload a video or pick a bundled sample (the generated miniature-world clip, and ../shared/videos
beside a checkout), type one sentence per line, press Segment: overlay video, frame strip, masks zip
and summary.json. Serves on 127.0.0.1 only unless --host says otherwise; never creates a public share
link and sends no telemetry. See vdit/app/ and docs/inference.md ("Web app").
"""
from __future__ import annotations

import argparse
import signal
import sys

from vdit.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    from vdit.app import DEFAULT_MAX_FRAMES, DEFAULT_WINDOW

    p = sub.add_parser("app", help="browser demo: upload a video, type sentences, see and download the masks",
                       description="Serve a web page (Gradio) to segment referring expressions in uploaded "
                                   "videos. Requires the extra: pip install 'vdit[app]'. No share link is "
                                   "ever created (--share is not offered).")
    p.add_argument("--weights", metavar="DIR",
                   help="folder written by VDIT.save_pretrained, e.g. a converted official checkpoint "
                        "(default: the built-in miniature-world model)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 = any free port)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available, else cpu)")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, metavar="N",
                   help=f"frames per window (default {DEFAULT_WINDOW}; 0 = whole video as one clip)")
    p.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
                   help=f"longest video one request may segment (default {DEFAULT_MAX_FRAMES})")
    p.add_argument("--samples", metavar="DIR", default=None,
                   help="folder of sample videos for the picker (default: ../shared/videos beside a checkout)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vdit.app.ui import launch_app, require_gradio
    from vdit.cli.checks import check_weights

    require_gradio()  # before loading the model: the missing extra is the likeliest first error
    if args.window is not None and args.window < 0:
        raise InputError(f"--window must be >= 0, got {args.window}")
    if args.max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {args.max_frames}")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    check_weights(args.weights)
    # `kill` (SIGTERM) ends the server like Ctrl-C, so the run folders are removed at exit
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        launch_app(weights=args.weights, host=args.host, port=args.port, device=args.device,
                   window=args.window or None, max_frames=args.max_frames, samples_dir=args.samples, block=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
