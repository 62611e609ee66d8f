"""vdit: referring video object segmentation with a frozen text-to-video diffusion backbone.

The `vdit` command. Each sub-command lives in its own module under vdit/cli/ and exposes
`register(subparsers)`, which adds its parser and sets `func` (called with the parsed args, returns an
exit code). Heavy imports (torch, diffusers) happen inside the command functions, so `vdit --help` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from vdit import __version__
from vdit.errors import VditError

# The shell's code for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130

# One line per command module (keep sorted).
COMMAND_MODULES = [
    "vdit.cli.app",
    "vdit.cli.convert",
    "vdit.cli.data",
    "vdit.cli.demo",
    "vdit.cli.evaluate",
    "vdit.cli.mini",
    "vdit.cli.model_info",
    "vdit.cli.score",
    "vdit.cli.segment",
    "vdit.cli.train",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vdit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vdit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VditError as exc:
        print(f"vdit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the commands already removed their unfinished outputs
        print(f"vdit {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
