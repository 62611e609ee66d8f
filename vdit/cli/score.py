"""`vdit score ...`: score saved predictions with the benchmarks' official metrics (see docs/evaluation.md).

    vdit score davis          --davis-root R --results P [--task unsupervised|semi-supervised] [--json OUT]
    vdit score ref-davis      --davis-root R --results-root P   (P holds anno_0..anno_3)
    vdit score ytvos-validate --zip Z --meta meta_expressions.json [--frames-root R]
    vdit score a2d | jhmdb    --gt COCO_JSON --predictions PRED_JSON [--json OUT]
    vdit score refcoco        --gt instances_<ds>_val.json --predictions PRED_JSON [--json OUT]
    vdit score mevis          --mevis-root valid_u --results P [--json OUT]

`vdit evaluate` runs a model on a benchmark; this command only reads results. Its former name `vdit eval`
(one letter from `evaluate`) still works for one release, with a one-line deprecation note on stderr.

davis, ref-davis and mevis draw a progress bar (sequences / videos scored) when stderr is a terminal;
--quiet (or a log, CI, a pipe) draws none.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vdit.errors import EvaluationError

DAVIS_TASKS = ("unsupervised", "semi-supervised")
DAVIS_SUBSETS = ("train", "val", "test-dev", "test-challenge")
DEFAULT_MAX_PROBLEMS = 100
DEPRECATED_NAME = "eval"  # the former name, an alias for one release


def _write_json(path: str | None, payload: dict) -> None:
    """The figures as strict JSON (a non-finite figure is null)."""
    if not path:
        return
    from vdit.fileio import write_json

    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, payload)
    except OSError as exc:
        raise EvaluationError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}")


def _check_json(path: str | None) -> None:
    """Fail before the evaluation (minutes) when --json cannot be written (nothing is created here)."""
    if not path:
        return
    from vdit.cli.checks import check_output_dir

    out = Path(path)
    if out.is_dir():
        raise EvaluationError(f"--json {out} is a folder; give a file name")
    check_output_dir(out.parent)


def _sequences(arg: str | None) -> list[str] | None:
    if arg is None:
        return None
    names = [s.strip() for s in arg.split(",") if s.strip()]
    if not names:
        raise EvaluationError("--sequences is empty: give comma-separated sequence names")
    return names


def _progress(args: argparse.Namespace, unit: str, per_sequence: int = 1):
    """A bar of scored items (see vdit.cli.progress); its total is known when --sequences lists them."""
    from vdit.cli.progress import Progress, progress_enabled

    names = getattr(args, "sequences", None)
    total = len([s for s in names.split(",") if s.strip()]) * per_sequence if names else None
    progress = Progress(progress_enabled(args.quiet), desc=args.benchmark, unit=unit)
    progress.start(total=total)
    return progress


def _print_summary(title: str, summary: dict[str, float]) -> None:
    from vdit.evaluation.davis import SUMMARY_KEYS

    print(title)
    print("  ".join(f"{k:>9}" for k in SUMMARY_KEYS))
    print("  ".join(f"{summary[k]:>9.4f}" for k in SUMMARY_KEYS))


def _cmd_davis(args: argparse.Namespace) -> int:
    from vdit.evaluation.davis import evaluate_davis

    _check_json(args.json)
    with _progress(args, "sequence") as progress:
        result = evaluate_davis(args.davis_root, args.results, task=args.task, subset=args.set,
                                sequences=_sequences(args.sequences), resolution=args.resolution,
                                progress=progress.callback())
    _print_summary(f"DAVIS-2017 {args.set} ({args.task}), {len(result.per_object)} objects, fractions:",
                   result.summary)
    if args.per_object:
        print(f"{'object':<32} {'J-Mean':>8} {'F-Mean':>8}")
        for name, v in result.per_object.items():
            print(f"{name:<32} {v['J']:>8.4f} {v['F']:>8.4f}")
    _write_json(args.json, result.to_json_dict())
    return 0


def _cmd_ref_davis(args: argparse.Namespace) -> int:
    from vdit.evaluation.davis import evaluate_ref_davis

    _check_json(args.json)
    with _progress(args, "sequence", per_sequence=4) as progress:  # each sequence once per annotation set
        result = evaluate_ref_davis(args.davis_root, args.results_root, subset=args.set,
                                    sequences=_sequences(args.sequences), resolution=args.resolution,
                                    progress=progress.callback())
    for a, res in enumerate(result.per_set):
        _print_summary(f"anno_{a}:", res.summary)
    _print_summary("Ref-DAVIS17, mean of the 4 annotation sets:", result.mean)
    _write_json(args.json, result.to_json_dict())
    return 0


def _cmd_ytvos_validate(args: argparse.Namespace) -> int:
    from vdit.evaluation.ytvos_submission import validate_submission

    report = validate_submission(args.zip, args.meta, args.frames_root, args.exclude_meta)
    if report.ok:
        print(f"OK: {args.zip} holds all {report.n_expected} expected masks, all valid")
        return 0
    shown = report.problems[: args.max_problems]
    for line in shown:
        print(line)
    if len(report.problems) > len(shown):
        print(f"... and {len(report.problems) - len(shown)} more")
    print(f"INVALID: {len(report.problems)} problem(s) in {args.zip} ({report.n_checked} of {report.n_expected} "
          f"expected masks present)")
    return 1


def _cmd_coco(args: argparse.Namespace) -> int:
    from vdit.evaluation.coco_map import evaluate_referring_coco

    _check_json(args.json)
    with_map = not args.no_map if hasattr(args, "no_map") else args.with_map
    metrics = evaluate_referring_coco(args.gt, args.predictions, with_map=with_map)
    print(f"{args.benchmark}: {args.predictions} against {args.gt}")
    for key, value in metrics.items():
        print(f"  {key:<16} {value:.4f}" if isinstance(value, float) else f"  {key:<16} {value}")
    _write_json(args.json, metrics)
    return 0


def _cmd_mevis(args: argparse.Namespace) -> int:
    from vdit.evaluation.mevis import MASK_DICT_FILE, META_FILE, evaluate_mevis

    _check_json(args.json)
    if args.mevis_root is None and (args.meta is None or args.mask_dict is None):
        raise EvaluationError("give --mevis-root (the split folder) or both --meta and --mask-dict")
    root = Path(args.mevis_root) if args.mevis_root else None
    meta = args.meta or root / META_FILE
    mask_dict = args.mask_dict or root / MASK_DICT_FILE
    with _progress(args, "video") as progress:
        result = evaluate_mevis(meta, mask_dict, args.results, missing_as_zero=args.missing_as_zero,
                                progress=progress.callback())
    print(f"MeViS: {len(result.per_expression)} expressions")
    print(f"  J&F {result.jf:.4f}   J {result.j:.4f}   F {result.f:.4f}")
    if result.missing_videos:
        print(f"  {len(result.missing_videos)} video(s) without results scored 0: {', '.join(result.missing_videos)}")
    _write_json(args.json, result.to_json_dict())
    return 0


def _add_progress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    # Before the progress bar, --progress asked for one line per scored item; the bar is now shown on
    # a terminal by default, and the flag stays accepted so that existing scripts keep working.
    p.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)


def _add_davis_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--davis-root", required=True, help="DAVIS folder with JPEGImages, Annotations*, ImageSets")
    p.add_argument("--set", default="val", choices=DAVIS_SUBSETS, help="subset whose ImageSets list is used")
    p.add_argument("--sequences", default=None, help="comma-separated sequences instead of the ImageSets list")
    p.add_argument("--resolution", default="480p")
    p.add_argument("--json", default=None, metavar="OUT", help="write the figures to this JSON file")
    _add_progress_args(p)


def _add_coco_args(p: argparse.ArgumentParser, gt_help: str) -> None:
    """The arguments every COCO-format benchmark (A2D, JHMDB, RefCOCO) shares."""
    p.add_argument("--gt", required=True, help=gt_help)
    p.add_argument("--predictions", required=True, help="json list of {image_id, segmentation RLE, score}")
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(score=_cmd_coco)


def _score(args: argparse.Namespace) -> int:
    if args.command == DEPRECATED_NAME:
        print(f"vdit {DEPRECATED_NAME}: deprecated, use `vdit score` (same arguments); "
              f"`vdit {DEPRECATED_NAME}` goes in the next release", file=sys.stderr)
    return args.score(args)


def register(subparsers) -> None:
    """Add `vdit score` (alias `vdit eval`, deprecated) and its sub-commands; each sets `score`."""
    parser = subparsers.add_parser("score", aliases=[DEPRECATED_NAME],
                                   help="score saved predictions (DAVIS, Ref-DAVIS, YTVOS zip, A2D, ...); "
                                        f"`{DEPRECATED_NAME}` is its deprecated former name",
                                   description=__doc__.splitlines()[0])
    parser.set_defaults(func=_score)
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    sub.required = True

    p = sub.add_parser("davis", help="DAVIS-2017 J&F (semi-supervised or unsupervised protocol)")
    _add_davis_common(p)
    p.add_argument("--results", required=True, help="folder with <sequence>/<frame>.png label maps")
    p.add_argument("--task", default="unsupervised", choices=DAVIS_TASKS)
    p.add_argument("--per-object", action="store_true", help="also print each object's J and F means")
    p.set_defaults(score=_cmd_davis)

    p = sub.add_parser("ref-davis", help="Ref-DAVIS17: unsupervised J&F of anno_0..anno_3 and their mean")
    _add_davis_common(p)
    p.add_argument("--results-root", required=True, help="folder holding anno_0 .. anno_3 result folders")
    p.set_defaults(score=_cmd_ref_davis)

    p = sub.add_parser("ytvos-validate", help="check a Ref-YouTube-VOS submission zip before upload")
    p.add_argument("--zip", required=True, help="submission zip (entries Annotations/<video>/<exp>/<frame>.png)")
    p.add_argument("--meta", required=True, help="meta_expressions.json listing the expected videos/expressions")
    p.add_argument("--frames-root", default=None,
                   help="dataset root (or valid/JPEGImages) to check mask sizes against the frames")
    p.add_argument("--exclude-meta", default=None,
                   help="meta_expressions.json whose videos are not expected (the test split)")
    p.add_argument("--max-problems", type=int, default=DEFAULT_MAX_PROBLEMS, help="problems to print at most")
    p.set_defaults(score=_cmd_ytvos_validate)

    for name, text in (("a2d", "A2D-Sentences"), ("jhmdb", "JHMDB-Sentences")):
        p = sub.add_parser(name, help=f"{text}: mask mAP (COCOeval) + overall/mean IoU + P@K")
        _add_coco_args(p, "COCO-format ground truth json")
        p.add_argument("--no-map", action="store_true", help="skip COCOeval (IoU figures only)")

    p = sub.add_parser("refcoco", help="RefCOCO/+/g: overall IoU (reported) + mean IoU + P@K of the top-1 mask")
    _add_coco_args(p, "instances_<dataset>_<split>.json (one image per expression)")
    p.add_argument("--with-map", action="store_true", help="also run COCOeval mask mAP")

    p = sub.add_parser("mevis", help="MeViS J&F (per-expression means, union of the referred objects)")
    p.add_argument("--mevis-root", default=None, help="split folder with meta_expressions.json and mask_dict.json")
    p.add_argument("--meta", default=None, help="meta_expressions.json (overrides --mevis-root)")
    p.add_argument("--mask-dict", default=None, help="mask_dict.json (overrides --mevis-root)")
    p.add_argument("--results", required=True, help="folder with <video>/<exp_id>/<frame>.png (or Annotations/...)")
    p.add_argument("--missing-as-zero", action="store_true",
                   help="score videos without results 0 (the official behaviour) instead of failing")
    p.add_argument("--json", default=None, metavar="OUT")
    _add_progress_args(p)
    p.set_defaults(score=_cmd_mevis)
