"""`vdit evaluate`: run a model on a benchmark with its official inference protocol and score it.

    vdit evaluate --preset ytvos|davis|mevis|a2d|jhmdb|refcoco --weights W --data ROOT [--out DIR] [--limit N]

W is a folder written by `VDIT.save_pretrained` (or `vdit convert-official`). The predictions (submission
zip, palette PNGs, COCO predictions) and `metrics.json` go to DIR (default ./eval-<preset>). See
docs/evaluate.md for each benchmark's protocol and outputs.
"""
from __future__ import annotations

import argparse
import sys

BENCHMARK_CHOICES = ("ytvos", "davis", "mevis", "a2d", "jhmdb", "refcoco")
REFCOCO_SETS = ("refcoco", "refcoco+", "refcocog")
SUMMARY_KEYS = ("J&F", "J", "F", "J&F-Mean", "J-Mean", "F-Mean", "mAP 0.5:0.95", "AP 0.5", "overall_iou",
                "mean_iou", "P@0.5", "n_videos", "n_expressions", "n_samples", "submission_valid", "elapsed_s")


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="run a model on a benchmark (official protocol) and score it",
                              description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True, choices=BENCHMARK_CHOICES, help="benchmark protocol")
    p.add_argument("--weights", required=True, metavar="W", help="folder written by VDIT.save_pretrained")
    p.add_argument("--data", required=True, metavar="ROOT",
                   help="dataset root: Ref-YTVOS / converted Ref-DAVIS / MeViS / A2D-Sentences / JHMDB-Sentences "
                        "folder, or the COCO root for refcoco")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default ./eval-<preset>)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N videos (ytvos, davis, mevis) or samples (a2d, jhmdb, refcoco)")
    p.add_argument("--split", default=None,
                   help="dataset split (default: valid for ytvos/davis, valid_u for mevis, test for a2d, val for refcoco)")
    p.add_argument("--davis-root", default=None, metavar="DIR",
                   help="raw DAVIS folder with Annotations_unsupervised and ImageSets (default ROOT/DAVIS)")
    p.add_argument("--jhmdb-data-root", default=None, metavar="DIR",
                   help="folder the JHMDB metadata paths are relative to (default: the parent of ROOT)")
    p.add_argument("--refcoco-set", default="refcoco", choices=REFCOCO_SETS)
    p.add_argument("--short-side", type=int, default=None, metavar="PX",
                   help="model input short side (default: the size the weights' config records, 64 for the "
                        "miniature world's heads; 360, the official protocols' size, when it records none)")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="cap on the input long side (default: none for videos, 640 for a2d/jhmdb/refcoco; 0 = none)")
    p.add_argument("--threshold", type=float, default=None, help="mask threshold on probabilities (default 0.5)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    amp = p.add_mutually_exclusive_group()
    amp.add_argument("--amp", dest="amp", action="store_true", default=None,
                     help="autocast (default: fp16 on CUDA for the video benchmarks, off for the others)")
    amp.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--foundation-root", default=None, metavar="DIR",
                   help="load the foundation models from DIR/t2v, DIR/clip_vision, DIR/text_encoder instead of the "
                        "locations recorded in the weights' config")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


class Progress:
    """Progress on stderr: one line per finished video / sample (`line`), and the steps inside a video
    (`step`: windows, annotation sets) drawn over each other on a terminal, as lines elsewhere."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = 0  # width of the step line on screen

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0

    def line(self, message: str) -> None:
        self._clear()
        print(message, file=self.stream, flush=True)

    def step(self, message: str) -> None:
        if not self.tty:
            print(message, file=self.stream, flush=True)
            return
        self._clear()
        self.stream.write(message)
        self.stream.flush()
        self._drawn = len(message)

    def close(self) -> None:
        self._clear()


def _foundation(root: str | None) -> dict[str, str] | None:
    if root is None:
        return None
    from pathlib import Path

    from vdit.config import FOUNDATION_PARTS
    from vdit.errors import ConfigError

    base = Path(root).expanduser()
    missing = [part for part in FOUNDATION_PARTS if not (base / part).is_dir()]
    if missing:
        raise ConfigError(f"foundation root {base} lacks {', '.join(p + '/' for p in missing)}")
    return {part: str(base / part) for part in FOUNDATION_PARTS}


def run(args: argparse.Namespace) -> int:
    from vdit.cli.checks import check_output_dir, check_weights_dir, check_weights_foundation
    from vdit.data.common import dumps_json
    from vdit.inference.benchmarks import DEFAULT_THRESHOLD, METRICS_FILE, BenchmarkOptions, run_benchmark
    from vdit.inference.predictor import resolve_device
    from vdit.models.vdit import VDIT

    # Everything that can be checked without the model is, before it loads and before any output exists.
    check_weights_dir(args.weights)
    foundation = _foundation(args.foundation_root)
    check_weights_foundation(args.weights, foundation)
    resolve_device(args.device)
    progress = None if args.quiet else Progress()
    options = BenchmarkOptions(
        data_root=args.data, out_dir=args.out or f"eval-{args.preset}", limit=args.limit, split=args.split,
        short_side=args.short_side, max_size=args.max_size,
        threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold, device=args.device,
        amp=args.amp, davis_root=args.davis_root, jhmdb_data_root=args.jhmdb_data_root,
        refcoco_set=args.refcoco_set, progress=progress.line if progress else None,
        step_progress=progress.step if progress else None,
    )
    check_output_dir(options.out_dir)
    model = VDIT.from_pretrained(args.weights, foundation=foundation)
    try:
        metrics = run_benchmark(args.preset, model, options)
    finally:
        if progress is not None:
            progress.close()
    shown = {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}
    print(dumps_json(shown, indent=2))
    print(f"wrote {options.out_dir / METRICS_FILE}")
    if metrics.get("submission_valid") is False:
        print("the submission zip is invalid: " + "; ".join(metrics["submission_problems"]), file=sys.stderr)
        return 1
    return 0
