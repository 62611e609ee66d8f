"""`vdit data ...`: dataset preparation commands.

Each sub-command is one `add_<name>(sub)` function that adds its parser and sets `func`; `register`
calls them in turn, so a new sub-command is one more function plus one call in `register`.
"""
from __future__ import annotations

import argparse
import shutil


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="prepare datasets (convert releases, generate the synthetic benchmark)")
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True
    add_convert_davis(sub)
    add_make_synthetic(sub)
    add_convert_refcoco(sub)


# -- convert-davis --------------------------------------------------------------------------------

def add_convert_davis(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-davis",
        help="build the Ref-YouTube-VOS-layout tree of Ref-DAVIS17 (source files are never moved)",
        description="Convert DAVIS-2017 + davis_text_annotations into the Ref-YTVOS layout. Output files "
                    "are symlinks to (or copies of) the source; the DAVIS tree stays usable by the evaluator.",
    )
    p.add_argument("--davis-root", required=True,
                   help="folder holding DAVIS/ and davis_text_annotations/")
    p.add_argument("--out", default=None, help="output root (default: the --davis-root folder itself)")
    p.add_argument("--link", choices=("symlink", "copy", "hardlink"), default="symlink",
                   help="how output files refer to the source files (default: symlink)")
    p.set_defaults(func=run_convert_davis)


def run_convert_davis(args: argparse.Namespace) -> int:
    from vdit.data.davis import convert_davis_to_ytvos

    from vdit.cli.checks import check_output_dir
    from vdit.fileio import dumps_json

    if args.out is not None:
        check_output_dir(args.out)
    summary = convert_davis_to_ytvos(args.davis_root, args.out, link_mode=args.link)
    print(dumps_json(summary.as_dict(), indent=2))
    return 0


# -- make-synthetic -------------------------------------------------------------------------------

def add_make_synthetic(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-synthetic",
        help="generate the synthetic referring-video benchmark in the Ref-YouTube-VOS layout",
        description="Write train / valid / heldout splits of moving shapes with referring expressions. "
                    "Deterministic: the same arguments produce byte-identical files.",
    )
    p.add_argument("--out", required=True,
                   help="output folder (new or empty, or an earlier benchmark with --overwrite)")
    p.add_argument("--seed", type=int, default=0)
    # Defaults (None) are make_synthetic_benchmark's, kept in one place (vdit.data.synthetic).
    p.add_argument("--train", type=int, default=None, help="number of train videos (default 200)")
    p.add_argument("--valid", type=int, default=None, help="number of valid videos (default 40)")
    p.add_argument("--heldout", type=int, default=None,
                   help="number of videos with held-out colour+shape pairs (default 40)")
    p.add_argument("--frames", type=int, default=None, help="frames per video (default 12)")
    p.add_argument("--height", type=int, default=None, help="frame height (default 96)")
    p.add_argument("--width", type=int, default=None, help="frame width (default 160)")
    p.add_argument("--distinct-colours", action="store_true",
                   help="the objects of a video have distinct colours and every expression names its target's "
                        "colour (no relations): the miniature world's variant")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier synthetic benchmark in --out")
    p.set_defaults(func=run_make_synthetic)


def run_make_synthetic(args: argparse.Namespace) -> int:
    from vdit.cli.checks import check_output_dir
    from vdit.data.synthetic import make_synthetic_benchmark
    from vdit.errors import ConfigError
    from vdit.fileio import dumps_json, first_missing

    given = {
        "num_train_videos": args.train, "num_valid_videos": args.valid,
        "num_heldout_videos": args.heldout, "num_frames": args.frames,
        "height": args.height, "width": args.width,
    }
    for name, value in (("--frames", args.frames), ("--height", args.height), ("--width", args.width)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    out = check_output_dir(args.out)
    # A benchmark is complete once its synthetic_benchmark.json is written (last); an interrupted or
    # failed generation removes the folder it created (or empties the empty folder it was given).
    created = first_missing(out)
    was_empty = created is None and not any(out.iterdir())
    try:
        summary = make_synthetic_benchmark(
            out, seed=args.seed, overwrite=args.overwrite, distinct_colours=args.distinct_colours,
            **{k: v for k, v in given.items() if v is not None},
        )
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        elif was_empty:
            for entry in out.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        raise
    print(dumps_json(summary, indent=2))
    return 0


# -- convert-refcoco ------------------------------------------------------------------------------

def add_convert_refcoco(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-refcoco",
        help="convert REFER pickles + instances.json into per-sentence COCO jsons (RefCOCO/+/g)",
        description="Read <coco-root>/<ds>/refs(unc|umd).p and instances.json; write "
                    "<coco-root>/<ds>/instances_<ds>_<split>.json with one COCO image per referring sentence.",
    )
    p.add_argument("--coco-root", required=True, help="folder holding train2014/ and the refcoco* folders")
    p.add_argument("--datasets", default="refcoco,refcoco+,refcocog",
                   help="comma-separated subset of refcoco,refcoco+,refcocog (default: all three)")
    p.set_defaults(func=run_convert_refcoco)


def run_convert_refcoco(args: argparse.Namespace) -> int:
    from vdit.data.refcoco import check_dataset_name, convert_refexp_to_coco
    from vdit.fileio import dumps_json

    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    for name in names:  # reject a typo before converting anything
        check_dataset_name(name)
    written = {name: {split: str(path) for split, path in convert_refexp_to_coco(args.coco_root, name).items()}
               for name in names}
    print(dumps_json(written, indent=2))
    return 0
