"""`vdit mini ...`: the miniature world (tiny foundation models trained here on the generated benchmark).

Each sub-command is one `add_<name>(sub)` function that adds its parser and sets `func`; `register`
calls them in turn, so a new sub-command (train, eval) is one more function plus one call in `register`.
Every sub-command draws progress bars when stderr is a terminal (`vdit.cli.progress`); `--quiet` (or a
log, CI, a pipe) draws none.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = "mini-foundation"
DEFAULT_THREADS = 2  # the reference machine's cores


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mini", help="the miniature world: tiny foundation models trained from scratch on the generated benchmark")
    sub = parser.add_subparsers(dest="mini_command", metavar="MINI_COMMAND")
    sub.required = True
    add_pretrain(sub)
    add_train(sub)
    add_eval(sub)
    add_ablations(sub)


# -- pretrain -------------------------------------------------------------------------------------

def add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="train the tiny CLIP, VAE, text-to-video UNet and RoBERTa and save them in the real layouts",
        description="Generate the synthetic referring-video benchmark (if --data holds none), train a CLIP "
                    "(contrastive), a VAE, a text-to-video UNet3D (DDPM, epsilon) and a RoBERTa (masked LM) on "
                    "it, and write OUT/t2v (ModelScope layout), OUT/clip_vision, OUT/text_encoder, the "
                    "manifest and OUT/pretrain_log.jsonl. Same seed and budget -> same models.",
    )
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder (new, empty or an earlier mini foundation; default ./{DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0, help="seed of the models' training (default 0)")
    p.add_argument("--minutes-budget", type=float, default=None,
                   help="scale every stage's step count to this many minutes of the reference 2-core machine "
                        "(default: the full plan, ~20 minutes)")
    p.add_argument("--data", default=None,
                   help="benchmark folder, generated there when absent (default $VDIT_CACHE/mini-benchmark-2, "
                        "VDIT_CACHE defaulting to ~/.cache/vdit)")
    p.add_argument("--samples", default=None,
                   help="PNG grid of generated clips (default: OUT_t2v_samples.png beside OUT)")
    p.add_argument("--sample-steps", type=int, default=None, help="DDIM steps of the sample grid (default 50)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"torch CPU threads (default {DEFAULT_THREADS}; use 1 on a machine shared with other jobs)")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars (there are none anyway when stderr is not a terminal)")
    p.add_argument("--skip-verify", action="store_true",
                   help="do not load the result with VD-IT's loaders and run one forward pass")
    p.set_defaults(func=run_pretrain)


def default_samples_path(out: Path) -> Path:
    return out.parent / f"{out.name}_t2v_samples.png"


def run_pretrain(args: argparse.Namespace) -> int:
    from vdit.errors import ConfigError
    from vdit.mini.build import build_mini_foundation
    from vdit.mini.data import default_data_dir, load_corpus
    from vdit.mini.pretrain import PretrainPlan, plan_for_budget

    from vdit.cli.progress import progress_enabled

    set_threads(args.threads)
    out = Path(args.out).expanduser().resolve()
    samples = Path(args.samples).expanduser().resolve() if args.samples else default_samples_path(out)
    if out == samples or out in samples.parents:
        raise ConfigError(f"--samples {samples} must lie outside --out {out} (the output folder is replaced)")
    plan = plan_for_budget(args.minutes_budget) if args.minutes_budget is not None else PretrainPlan()
    data = Path(args.data).expanduser() if args.data else default_data_dir()
    result = build_mini_foundation(out, data_dir=data, seed=args.seed, plan=plan, samples_path=samples,
                                   sample_steps=args.sample_steps, progress=progress_enabled(args.quiet))
    size = sum(f["bytes"] for f in result["files"].values())
    print(f"saved the mini foundation to {out} ({size / 2**20:.1f} MiB of model files)")
    print("wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in result["wall_s"].items()))
    for stage, metrics in result["final"].items():
        print(f"  {stage}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))
    if not args.skip_verify:
        from vdit.mini.verify import verify_foundation

        check = verify_foundation(out, load_corpus(data, "valid" if result["benchmark"]["num_valid_videos"] else "train"))
        from vdit.fileio import dumps_json

        print("VD-IT forward on the result: " + dumps_json(check))
    return 0


# -- train / eval / ablations (VD-IT's head on the miniature world; vdit.mini.train, vdit.mini.ablations) ---

DEFAULT_RUN = "runs/mini"
DEFAULT_ABLATION_RUNS = "runs/mini-ablations"


def set_threads(n: int) -> None:
    """torch's CPU thread count, checked (the --threads option of the mini commands and `vdit demo`)."""
    import torch

    from vdit.errors import ConfigError

    if n < 1:
        raise ConfigError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)


def _common_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None,
                   help="benchmark folder, generated there when absent (default $VDIT_CACHE/mini-benchmark-2)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"torch CPU threads (default {DEFAULT_THREADS})")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (there are none anyway when stderr is not a terminal)")


def _eval_progress(args: argparse.Namespace, what: str):
    """The bar of a scoring pass (videos of a split); see vdit.cli.progress."""
    from vdit.cli.progress import Progress, progress_enabled

    return Progress(progress_enabled(args.quiet), desc=what, unit="video")


def _data_dir(args: argparse.Namespace) -> Path:
    from vdit.mini.data import default_data_dir

    return Path(args.data).expanduser() if args.data else default_data_dir()


def add_train(sub: argparse._SubParsersAction) -> None:
    from vdit.mini.train import CONTROLS

    p = sub.add_parser(
        "train", help="train VD-IT's head on the generated benchmark (foundation models frozen)",
        description="Train VD-IT with the `mini_synthetic` preset (vdit train's trainer) on the miniature "
                    "world's foundation models, save the head to OUT/head and score it on the valid and "
                    "heldout splits (J&F). --ship copies the head into the package as the built-in model.")
    p.add_argument("--out", default=DEFAULT_RUN, help=f"run folder (default {DEFAULT_RUN})")
    p.add_argument("--foundation", default=None,
                   help="foundation folder (default: the shipped vdit/assets/mini/foundation)")
    p.add_argument("--steps", type=int, default=None,
                   help="stop after this many optimizer steps (default: the preset's whole schedule)")
    p.add_argument("--seed", type=int, default=None, help="train.seed (default: the preset's 42)")
    p.add_argument("--control", choices=sorted(CONTROLS), default=None,
                   help="control experiment: text_blind (empty caption everywhere) or random_unet")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any RunConfig field, e.g. model.backbone.noise.step=5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--no-eval", action="store_true", help="do not score the head after training")
    p.add_argument("--eval-limit", type=int, default=None, help="score only the first N videos of each split")
    p.add_argument("--ship", action="store_true",
                   help="copy the trained head into vdit/assets/mini/head (the built-in model)")
    _common_data_args(p)
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from vdit.mini.train import EVAL_SUBDIR, evaluate_mini, format_scores, mini_run_config, ship_head, train_mini

    from vdit.cli.checks import check_local_dir, check_output_dir

    set_threads(args.threads)
    if args.foundation is not None:
        check_local_dir(args.foundation, "foundation folder", expected="a folder written by `vdit mini pretrain`")
    check_output_dir(args.out)
    cfg = mini_run_config(args.foundation, _data_dir(args), args.overrides, steps=args.steps, seed=args.seed,
                          control=args.control)
    result = train_mini(cfg, args.out, resume=args.resume, progress=not args.quiet)
    print(f"trained {result.steps} steps in {result.wall_s:.0f}s"
          f"{'' if result.finished_schedule else ' (stopped by --steps)'}; head in {result.weights_dir}")
    scores = None
    if not args.no_eval:
        with _eval_progress(args, "mini eval") as progress:
            scores = evaluate_mini(result.weights_dir, cfg.data.root, Path(args.out) / EVAL_SUBDIR,
                                   limit=args.eval_limit, tracker=progress)
        print(format_scores(scores))
    if args.ship:
        source = (f"Trained with `vdit mini train` ({result.steps} optimizer steps, seed {cfg.train.seed}) on the "
                  "shipped foundation and the generated benchmark"
                  + (f"; scored on the first {args.eval_limit} videos of each split." if args.eval_limit else "."))
        print(f"shipped the head to {ship_head(result.weights_dir, scores=scores, source=source)}")
    return 0


def add_eval(sub: argparse._SubParsersAction) -> None:
    from vdit.mini.train import EVAL_SPLITS

    p = sub.add_parser("eval", help="score a VD-IT head on the generated benchmark with J&F",
                       description="Segment every expression of the valid / heldout splits (Ref-YouTube-VOS "
                                   "protocol, native 64x64 frames) and print J&F, J, F and J&F per "
                                   "expression kind. Writes OUT/<split>/metrics.json and OUT/mini_scores.json.")
    p.add_argument("--weights", default=None,
                   help="a head folder (save_pretrained, e.g. runs/mini/head); default: the built-in model")
    p.add_argument("--split", action="append", default=None, choices=list(EVAL_SPLITS),
                   help="split(s) to score (default: valid and heldout)")
    p.add_argument("--limit", type=int, default=None, help="only the first N videos of each split")
    p.add_argument("--out", default="runs/mini-eval", help="output folder (default runs/mini-eval)")
    _common_data_args(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from vdit.mini.train import EVAL_SPLITS, evaluate_mini, format_scores

    from vdit.cli.checks import check_output_dir, check_weights_dir, check_weights_foundation

    set_threads(args.threads)
    if args.weights is not None:  # a local folder: a typo must not turn into a minute of Hub retries
        check_weights_foundation(check_weights_dir(args.weights))
    check_output_dir(args.out)
    with _eval_progress(args, "mini eval") as progress:
        scores = evaluate_mini(args.weights, _data_dir(args), args.out, splits=args.split or EVAL_SPLITS,
                               limit=args.limit, tracker=progress)
    print(format_scores(scores))
    return 0


def add_ablations(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablations", help="the paper's ablations in miniature (Table A, Table B, noise, controls) -> markdown",
        description="Train and score every ablation variant for each seed with the same step budget, save each "
                    "run's scores to RUNS/<variant>/seed-<s>/result.json (an interrupted table resumes: finished "
                    "runs are not repeated) and write the tables (mean +- std over seeds) into the markdown "
                    "file between its ablation markers.")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: vdit.mini.ablations)")
    p.add_argument("--runs", default=DEFAULT_ABLATION_RUNS, help=f"runs folder (default {DEFAULT_ABLATION_RUNS})")
    p.add_argument("--out", default="docs/miniature.md", help="markdown file to write the tables into")
    p.add_argument("--only", action="append", default=None, metavar="VARIANT",
                   help="run only these variants (repeatable); the table shows every finished run")
    p.add_argument("--foundation", default=None, help="foundation folder (default: the shipped one)")
    p.add_argument("--eval-limit", type=int, default=None, help="score only the first N videos of each split")
    p.add_argument("--table-only", action="store_true", help="do not train; rewrite the tables from finished runs")
    _common_data_args(p)
    p.set_defaults(func=run_ablations)


def run_ablations(args: argparse.Namespace) -> int:
    from vdit.mini.ablations import DEFAULT_STEPS, run_ablation_table

    from vdit.cli.checks import check_local_dir

    set_threads(args.threads)
    if args.foundation is not None:
        check_local_dir(args.foundation, "foundation folder", expected="a folder written by `vdit mini pretrain`")
    summary = run_ablation_table(
        runs=Path(args.runs), markdown=Path(args.out), seeds=args.seeds,
        steps=args.steps or DEFAULT_STEPS, only=args.only, foundation=args.foundation, data=_data_dir(args),
        eval_limit=args.eval_limit, train=not args.table_only)
    print(f"{summary['done']} of {summary['planned']} runs finished; tables written to {args.out}")
    return 0
