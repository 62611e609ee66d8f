"""`vdit train`: train VD-IT with a named recipe (see docs/training.md).

    vdit train --preset ytvos --data-root data/ref-youtube-vos --out runs/ytvos
    torchrun --nproc_per_node 2 -m vdit train --preset ytvos ...      # DDP (env:// init)
    vdit train --resume runs/ytvos                                     # continue exactly where it stopped
"""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train VD-IT (recipes of the paper's supplementary; DDP via torchrun)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--preset", help="training recipe (see --list-presets); not needed with --resume")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. train.epochs=3 or model.backbone.noise.step=5 (repeatable)")
    p.add_argument("--out", help="run folder (default: runs/<preset>; with --resume: the checkpoint's run folder)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="DIR_OR_CKPT",
                   help="continue a run: its folder (latest checkpoint) or one checkpoint folder "
                        "(no value: the --out folder)")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), help="autocast precision (fp16 uses loss scaling)")
    p.add_argument("--grad-ckpt", action="store_true", help="activation checkpointing of the frozen UNet blocks")
    p.add_argument("--accum", type=int, metavar="N", help="gradient accumulation steps per optimizer step")
    p.add_argument("--foundation-root", metavar="DIR",
                   help="local foundation models: DIR/t2v, DIR/clip_vision, DIR/text_encoder")
    p.add_argument("--data-root", metavar="DIR", help="dataset folder (sets data.root)")
    p.add_argument("--init-from", metavar="DIR",
                   help="initialise from pre-trained weights (a run folder, a save_pretrained folder or a checkpoint)")
    p.add_argument("--list-presets", action="store_true", help="list the training presets and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config (YAML) and exit")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    p.set_defaults(func=run)


def _list_presets() -> int:
    from vdit.cli.presets import run_presets

    presets = run_presets()
    width = max(map(len, presets))
    for name, make in presets.items():
        doc = (make.__doc__ or "").strip().splitlines()[0]
        print(f"{name:<{width}}  {doc}")
    return 0


def resolve_run(args: argparse.Namespace):
    """(RunConfig, run folder, opened checkpoint or None) from the command line."""
    from pathlib import Path

    from vdit.cli.presets import run_presets
    from vdit.config import apply_overrides
    from vdit.engine.checkpoint import CHECKPOINTS_DIR, load_run_config, open_checkpoint
    from vdit.engine.recipes import point_foundation, run_preset
    from vdit.errors import ConfigError

    ckpt = None
    if args.resume is not None:
        target = args.resume or args.out
        if not target:
            raise ConfigError("--resume needs a run folder or checkpoint folder (or --out)")
        ckpt = open_checkpoint(target)
        cfg = load_run_config(ckpt)
        run_dir = Path(args.out) if args.out else _run_dir_of(ckpt.path, CHECKPOINTS_DIR)
        if args.foundation_root:
            point_foundation(cfg.model, args.foundation_root)
    else:
        if not args.preset:
            raise ConfigError("--preset is required for a new run (see --list-presets), or pass --resume")
        cfg = run_preset(args.preset, args.foundation_root, run_presets())
        run_dir = Path(args.out or f"runs/{args.preset}")
    # Paths are set as given (not parsed as YAML values).
    if args.data_root:
        cfg.data.root = args.data_root
    if args.init_from:
        cfg.train.init_from = args.init_from
    flags = []
    if args.amp:
        flags.append(f"train.amp={args.amp}")
    if args.grad_ckpt:
        flags.append("model.backbone.grad_ckpt=true")
    if args.accum is not None:
        flags.append(f"train.grad_accum={args.accum}")
    apply_overrides(cfg, flags + list(args.overrides))
    return cfg, run_dir, ckpt


# Where the error for a missing local foundation points to, per foundation architecture.
FOUNDATION_HINTS = {
    "tiny": ": pass --foundation-root DIR (docs/training.md, 'A tiny foundation for tiny_synthetic', shows how "
            "to make one)",
    "mini": ": run `vdit mini pretrain` or pass --foundation-root DIR",
}


def check_run_inputs(cfg, run_dir) -> None:
    """What a run needs before its folder is created, checked in milliseconds: local foundation folders
    exist (a missing one is never looked up on the Hub), the --init-from weights exist, the run folder
    can be created. The rest (dataset content, weights files) fails inside the Trainer, which then
    removes the run folder it created."""
    from pathlib import Path

    from vdit.cli.checks import check_foundation, check_output_dir
    from vdit.engine.checkpoint import CheckpointError

    check_foundation(cfg.model.foundation, FOUNDATION_HINTS.get(cfg.model.foundation.arch, ""))
    if cfg.train.init_from and not Path(cfg.train.init_from).expanduser().exists():
        raise CheckpointError(f"--init-from {cfg.train.init_from}: not found")
    check_output_dir(run_dir)


def _run_dir_of(ckpt_dir, checkpoints_dir_name: str):
    """<run>/checkpoints/step-N -> <run>."""
    parent = ckpt_dir.parent
    return parent.parent if parent.name == checkpoints_dir_name else parent


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        return _list_presets()
    import yaml

    from vdit.config import to_dict
    from vdit.engine import distributed as du
    from vdit.engine.trainer import Trainer

    cfg, run_dir, ckpt = resolve_run(args)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    check_run_inputs(cfg, run_dir)
    try:
        trainer = Trainer(cfg, run_dir, resume=ckpt, progress=not args.quiet)
        result = trainer.fit()
        if trainer.dist.is_main:
            where = result.final_dir or result.last_checkpoint
            print(f"vdit train: {result.state.global_step} steps, {result.state.skipped_steps} skipped; {where}")
    finally:
        du.cleanup()
    return 0
