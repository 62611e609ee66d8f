"""`vdit evaluate`: run a model on a benchmark with its official inference protocol and score it.

    vdit evaluate --preset ytvos|davis|mevis|a2d|jhmdb|refcoco --weights W --data ROOT [--out DIR] [--limit N]

W is a folder written by `VDIT.save_pretrained` (or `vdit convert-official`). The predictions (submission
zip, palette PNGs, COCO predictions) and `metrics.json` go to DIR (default ./eval-<preset>). See
docs/evaluate.md for each benchmark's protocol and outputs.

Past one GPU: `torchrun --nproc_per_node N -m vdit evaluate ...` deals the videos (or samples) out over
N processes, one GPU each (cuda:LOCAL_RANK; gloo processes on the CPU with --device cpu); rank 0 merges
and scores. An interrupted run (Ctrl-C, killed, failed) keeps the videos it finished: the same command
resumes, with any number of processes (--restart starts over).
"""
from __future__ import annotations

import argparse
import sys

from vdit.inference.benchmarks import BENCHMARKS

REFCOCO_SETS = ("refcoco", "refcoco+", "refcocog")
SUMMARY_KEYS = ("J&F", "J", "F", "J&F-Mean", "J-Mean", "F-Mean", "mAP 0.5:0.95", "AP 0.5", "overall_iou",
                "mean_iou", "P@0.5", "n_videos", "n_expressions", "n_samples", "submission_valid", "elapsed_s")


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="run a model on a benchmark (official protocol) and score it",
                              description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True, choices=BENCHMARKS, help="benchmark protocol")
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
    p.add_argument("--compile-vae", action="store_true",
                   help="torch.compile the VAE encoder (H200: 1.2x faster per video after ~15 s of compilation per "
                        "input size; pays on a whole benchmark, not on a few videos)")
    p.add_argument("--restart", action="store_true",
                   help="do not resume an interrupted run in DIR: evaluate every video / sample again")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    p.set_defaults(func=run)


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


def torchrun_world() -> int:
    """The process count torchrun announces (WORLD_SIZE), 1 without torchrun."""
    from vdit.engine.distributed import ENV_WORLD_SIZE, _env_int

    return _env_int(ENV_WORLD_SIZE, 1)


def process_device(device: str | None, world: int) -> str | None:
    """The device of this process: under torchrun each process takes the GPU of its LOCAL_RANK (the
    default when CUDA is available, or --device cuda), or the CPU (--device cpu, gloo)."""
    if world <= 1:
        return device
    import torch

    from vdit.engine.distributed import ENV_LOCAL_RANK, _env_int
    from vdit.errors import ConfigError

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return f"cuda:{_env_int(ENV_LOCAL_RANK, 0)}"
    if device.startswith("cuda:"):
        raise ConfigError(f"--device {device} under torchrun: every process would use that one GPU; pass "
                          "--device cuda (each process takes the GPU of its LOCAL_RANK) or --device cpu")
    return device


def run(args: argparse.Namespace) -> int:
    from vdit.cli.checks import check_output_dir, check_weights_dir, check_weights_foundation
    from vdit.cli.progress import Progress, progress_enabled
    from vdit.engine import distributed as du
    from vdit.fileio import dumps_json
    from vdit.inference.benchmark_session import DONE_DIR, SESSION_DIR, BenchmarkOptions
    from vdit.inference.benchmarks import METRICS_FILE, run_benchmark
    from vdit.inference.predictor import DEFAULT_THRESHOLD, resolve_device
    from vdit.models.vdit import VDIT

    # Everything that can be checked without the model is, before it loads and before any output exists.
    check_weights_dir(args.weights)
    foundation = _foundation(args.foundation_root)
    check_weights_foundation(args.weights, foundation)
    world = torchrun_world()
    device = process_device(args.device, world)
    resolve_device(device)
    options = BenchmarkOptions(
        data_root=args.data, out_dir=args.out or f"eval-{args.preset}", limit=args.limit, split=args.split,
        short_side=args.short_side, max_size=args.max_size,
        threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold, device=device,
        amp=args.amp, davis_root=args.davis_root, jhmdb_data_root=args.jhmdb_data_root,
        refcoco_set=args.refcoco_set, resume=not args.restart,
    )
    check_output_dir(options.out_dir)
    info = du.init_distributed("cpu" if resolve_device(device).type == "cpu" else "cuda") if world > 1 else None
    main_rank = info is None or info.is_main
    desc = args.preset if info is None else f"{args.preset} (rank 0 of {info.world_size})"
    progress = Progress(main_rank and progress_enabled(args.quiet), desc=desc)
    options.tracker = progress
    try:
        model = VDIT.from_pretrained(args.weights, foundation=foundation)
        if args.compile_vae:
            model.backbone.compile_vae_encoder()
        metrics = run_benchmark(args.preset, model, options)
        # Every rank past its last collective (rank 0's broadcast of the scores) before any tears the group
        # down: a rank leaving first made gloo abort the other ("terminate called without an active
        # exception", exit -6) in about one run in five on the 2-core machine.
        du.barrier()
    except BaseException:
        progress.close()
        kept = options.out_dir / SESSION_DIR / DONE_DIR
        finished = len(list(kept.glob("*.json"))) if main_rank and kept.is_dir() else 0
        if finished:
            print(f"vdit evaluate: {finished} finished video(s) / sample(s) are kept in {options.out_dir}; the "
                  "same command resumes from them", file=sys.stderr)
        raise
    finally:
        progress.close()
        if info is not None:
            du.cleanup()
    if not main_rank:
        return 0
    shown = {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}
    print(dumps_json(shown, indent=2))
    print(f"wrote {options.out_dir / METRICS_FILE}" + (f" ({info.world_size} processes)" if info else ""))
    if metrics.get("submission_valid") is False:
        print("the submission zip is invalid: " + "; ".join(metrics["submission_problems"]), file=sys.stderr)
        return 1
    return 0
