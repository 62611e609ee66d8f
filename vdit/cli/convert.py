"""`vdit convert-official CKPT OUT`: turn a released VD-IT checkpoint into a vdit weights folder.

    vdit convert-official vdit_ytvos.pth weights/vdit-ytvos [--foundation-root DIR] [--check-frozen]

The output folder is what `VDIT.from_pretrained`, `vdit segment --weights` and `vdit evaluate --weights`
read (model.safetensors + config.json), plus README.md (the model card: what the weights are, the
foundation models and their licences) and conversion_report.json. See docs/convert.md. A progress bar of
the conversion's stages is drawn when stderr is a terminal (--quiet: never).
"""
from __future__ import annotations

import argparse
import sys

# Keys listed in full before the rest is summarised as "... and N more".
MAX_LISTED = 20


def register(subparsers) -> None:
    p = subparsers.add_parser("convert-official", help="convert an official VD-IT checkpoint (.pth) to a weights folder",
                              description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", metavar="CKPT", help="official checkpoint (torch pickle with 'model' and 'args')")
    p.add_argument("out", metavar="OUT", help="output folder (written by VDIT.save_pretrained)")
    p.add_argument("--foundation-root", metavar="DIR", default=None,
                   help="folder with t2v/, clip_vision/, text_encoder/ to record in the config "
                        "(default: the hub ids of the preset)")
    p.add_argument("--preset", default="full", help="model preset the checkpoint was trained with (default: full)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model config value after the checkpoint's own (repeatable)")
    p.add_argument("--check-frozen", action="store_true",
                   help="load the foundation models and compare the checkpoint's frozen weights with them")
    p.add_argument("--allow-unmapped", action="store_true",
                   help="convert even when some checkpoint keys are not mapped (they are listed)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    p.set_defaults(func=run)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", ... and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def run(args: argparse.Namespace) -> int:
    from vdit.cli.checks import check_output_dir
    from vdit.cli.progress import Progress, progress_enabled
    from vdit.convert.official import REPORT_NAME, conversion_steps, convert_official

    check_output_dir(args.out)  # before a multi-GB checkpoint is read
    with Progress(progress_enabled(args.quiet), desc="convert-official", unit="stage") as progress:
        progress.start(total=conversion_steps(args.check_frozen))
        report = convert_official(args.checkpoint, args.out, foundation_root=args.foundation_root,
                                  preset_name=args.preset, overrides=args.overrides,
                                  check_frozen=args.check_frozen, allow_unmapped=args.allow_unmapped,
                                  progress=progress.advance)
    frozen = sum(report.frozen_keys.values())
    print(f"converted {report.checkpoint}: {report.num_keys} keys -> {report.trainable_parameters} trainable "
          f"parameters ({len(report.duplicates)} duplicate pairs merged), {frozen} frozen foundation keys skipped, "
          f"{report.ignored_buffers} buffers ignored")
    if report.unmapped:
        print(f"warning: {len(report.unmapped)} unmapped key(s): {_listed(report.unmapped)}", file=sys.stderr)
    print(f"wrote {report.out_dir} (model.safetensors, config.json, README.md, {REPORT_NAME})")
    check = report.frozen_check
    if check is None:
        return 0
    print(f"frozen weights: {check['compared']} compared, {len(check['mismatched'])} differ, "
          f"{len(check['not_in_model'])} not held by the loaded models")
    if check["mismatched"]:
        lines = [f"{m['key']} ({m['reason']})" for m in check["mismatched"]]
        print(f"frozen weights that differ from the loaded foundation models: {_listed(lines)}", file=sys.stderr)
        return 1
    return 0
