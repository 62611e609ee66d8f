"""VD-IT on top of the miniature world: train the head (foundation models frozen) and score it with our J&F.

    cfg = mini_run_config(overrides=["model.text_blind=true"], steps=600)
    result = train_mini(cfg, "runs/mini-blind")           # vdit.engine.Trainer, the `mini_synthetic` preset
    scores = evaluate_mini(result.weights_dir, cfg.data.root, out_dir="runs/mini-blind/eval")

Training is `vdit train`'s code path (`vdit.engine.trainer.Trainer`) with the `mini_synthetic` preset
(vdit/mini/recipe.py): the shipped tiny foundation models (or any `vdit mini pretrain --out` folder),
the generated benchmark they were trained on, AdamW, the paper's losses and matcher. Evaluation is
`run_benchmark("ytvos", ...)`: every video of a split is one clip, each expression picks its best query,
masks are written as a Ref-YouTube-VOS submission and scored against the split's Annotations
(J, F and J&F as fractions in [0, 1]); the inputs keep the benchmark's native 64x64 size.

Two control switches (config fields, so a saved head remembers them and is evaluated the same way):
- `model.text_blind=true`: the model reads the empty caption instead of every text (training and
  evaluation); it can only learn which object is "usually" referred to;
- `model.foundation.unet_init=random` (+ `model.foundation.unet_init_seed`): the frozen UNet at a
  seeded random initialisation, everything else unchanged (does the generative pre-training matter?).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from vdit.config import FOUNDATION_PARTS, RunConfig, apply_overrides
from vdit.errors import ConfigError, ModelLoadError

MINI_PRESET = "mini_synthetic"
EVAL_SPLITS = ("valid", "heldout")
HEAD_SUBDIR = "head"  # <run>/head: the trained head (save_pretrained), whether or not the schedule finished
EVAL_SUBDIR = "eval"
SCORES_FILE = "mini_scores.json"
# The switches of the two control experiments (docs/miniature.md).
CONTROLS: dict[str, tuple[str, ...]] = {
    "text_blind": ("model.text_blind=true",),
    "random_unet": ("model.foundation.unet_init=random",),
}
SCORE_KEYS = ("J&F", "J", "F")


@dataclass
class MiniTrainResult:
    run_dir: Path
    weights_dir: Path  # save_pretrained folder of the head at the end of the run
    steps: int
    finished_schedule: bool
    wall_s: float


def mini_run_config(foundation: str | Path | None = None, data: str | Path | None = None,
                    overrides: Sequence[str] = (), steps: int | None = None, seed: int | None = None,
                    control: str | None = None) -> RunConfig:
    """The `mini_synthetic` preset with a foundation folder (default: the shipped one), a benchmark
    folder (default: $VDIT_CACHE/mini-benchmark-2), a step budget (`train.max_steps`), a seed, a control
    switch (`text_blind` / `random_unet`) and `key=value` overrides, applied in that order."""
    from vdit.engine.recipes import run_preset
    from vdit.mini.recipe import MINI_RUN_PRESETS

    cfg = run_preset(MINI_PRESET, foundation, MINI_RUN_PRESETS)
    if data is not None:
        cfg.data.root = str(Path(data).expanduser())
    sets: list[str] = []
    if steps is not None:
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        sets.append(f"train.max_steps={int(steps)}")
    if seed is not None:
        sets += [f"train.seed={int(seed)}", f"model.foundation.unet_init_seed={int(seed)}"]
    if control is not None:
        if control not in CONTROLS:
            raise ConfigError(f"unknown control {control!r}; choose from {', '.join(CONTROLS)}")
        sets += list(CONTROLS[control])
    return apply_overrides(cfg, sets + list(overrides))


def ensure_mini_benchmark(data_root: str | Path) -> Path:
    """A generated benchmark at `data_root`: the one already there (any size), else the miniature
    world's (`MINI_BENCHMARK`, the foundation models' training data) is written there (~30 s)."""
    from vdit.data.synthetic import INFO_FILE
    from vdit.mini.build import BENCHMARK_SEED
    from vdit.mini.data import ensure_benchmark

    root = Path(data_root).expanduser()
    if (root / INFO_FILE).is_file():
        return root
    root, _ = ensure_benchmark(root, BENCHMARK_SEED)
    return root


def scored_splits(data_root: Path, splits: Sequence[str]) -> list[str]:
    """The requested splits that hold videos in this benchmark."""
    from vdit.data.synthetic import INFO_FILE
    from vdit.fileio import read_json

    counts = read_json(data_root / INFO_FILE)["params"]["videos"]
    return [s for s in splits if counts.get(s, 0) > 0]


def check_foundation(cfg: RunConfig) -> None:
    """A clear error when the foundation folders are missing (e.g. the shipped ones before
    `vdit mini pretrain` wrote them)."""
    for key in FOUNDATION_PARTS:
        path = Path(getattr(cfg.model.foundation, key))
        if not path.is_dir():
            raise ModelLoadError(f"foundation model folder {path} not found: run `vdit mini pretrain` (or pass "
                                 "--foundation DIR, a folder written by `vdit mini pretrain --out DIR`)")


def train_mini(cfg: RunConfig, run_dir: str | Path, resume: bool = False,
               on_step_end: Callable[[Any], None] | None = None, progress: bool = True) -> MiniTrainResult:
    """Train with vdit's Trainer; the head is saved to `<run_dir>/head` (save_pretrained) at the end,
    also when `train.max_steps` stopped the schedule early. `resume=True` continues `<run_dir>`."""
    from vdit.engine.checkpoint import CHECKPOINTS_DIR, LATEST, open_checkpoint
    from vdit.engine.trainer import Trainer

    run_dir = Path(run_dir)
    check_foundation(cfg)
    ensure_mini_benchmark(cfg.data.root)
    ckpt = None
    if resume:
        latest = run_dir / CHECKPOINTS_DIR / LATEST
        if not latest.is_file():
            raise ConfigError(f"--resume: {run_dir} holds no checkpoint ({latest} missing)")
        ckpt = open_checkpoint(run_dir / CHECKPOINTS_DIR / latest.read_text().strip())
    start = time.perf_counter()
    trainer = Trainer(cfg, run_dir, resume=ckpt, progress=progress)
    trainer.on_step_end = on_step_end
    result = trainer.fit()
    weights = run_dir / HEAD_SUBDIR
    trainer.model.save_pretrained(weights, card=head_card_info(
        source=f"Trained with `vdit mini train` ({result.state.global_step} optimizer steps of the "
               f"`{MINI_PRESET}` preset, seed {cfg.train.seed}) on the generated benchmark; foundation "
               "models frozen."))
    return MiniTrainResult(run_dir, weights, result.state.global_step, result.final_dir is not None,
                           round(time.perf_counter() - start, 1))


def _native_side(data_root: Path) -> int:
    from vdit.data.synthetic import INFO_FILE
    from vdit.fileio import read_json

    params = read_json(data_root / INFO_FILE)["params"]
    return int(min(params["height"], params["width"]))


def expression_kinds(data_root: str | Path, split: str) -> dict[str, str]:
    """{"<video>_<exp_id>": kind} (attribute / motion / relation) from the benchmark's record."""
    from vdit.data.synthetic import INFO_FILE
    from vdit.fileio import read_json

    info = read_json(Path(data_root) / INFO_FILE)["splits"].get(split, {})
    return {f"{vid}_{e['exp_id']}": e["kind"] for vid, video in info.items() for e in video["expressions"]}


def by_kind(per_expression: dict[str, list[float]], kinds: dict[str, str]) -> dict[str, dict[str, float]]:
    """Mean J&F (and count) per expression kind."""
    groups: dict[str, list[float]] = {}
    for key, (j, f) in per_expression.items():
        groups.setdefault(kinds.get(key, "unknown"), []).append((j + f) / 2)
    return {k: {"J&F": float(np.mean(v)), "n": len(v)} for k, v in sorted(groups.items())}


def load_head(weights: str | Path | None = None, device: str = "cpu") -> torch.nn.Module:
    """A trained head (save_pretrained folder; None = the built-in one) with its foundation models."""
    from vdit.mini.builtin import load_builtin_model
    from vdit.models.vdit import VDIT

    model = load_builtin_model() if weights is None else VDIT.from_pretrained(weights)
    return model.to(device).eval()


def evaluate_mini(model: torch.nn.Module | str | Path | None, data_root: str | Path, out_dir: str | Path,
                  splits: Sequence[str] = EVAL_SPLITS, limit: int | None = None, device: str = "cpu",
                  progress: Callable[[str], None] | None = None, tracker: Any = None) -> dict[str, dict[str, Any]]:
    """J&F of a head (model, save_pretrained folder, or None = built-in) on each split, with the
    Ref-YouTube-VOS protocol at the benchmark's native size. Writes `<out_dir>/<split>/metrics.json`
    and `<out_dir>/mini_scores.json`; returns {split: {"J&F", "J", "F", "n_expressions", "by_kind"}}.
    `progress(line)` per finished video, `tracker` a progress bar (BenchmarkOptions.tracker)."""
    from vdit.fileio import write_json
    from vdit.inference.benchmark_session import BenchmarkOptions
    from vdit.inference.benchmarks import run_benchmark

    if not isinstance(model, torch.nn.Module):
        # before the benchmark is generated (~30 s); an absolute path is never looked up on the Hub
        model = load_head(None if model is None else Path(model).expanduser().absolute(), device)
    data_root = ensure_mini_benchmark(data_root)
    model.eval()
    side = _native_side(data_root)
    out_dir = Path(out_dir)
    scores: dict[str, dict[str, Any]] = {}
    todo = scored_splits(data_root, splits)
    if not todo:
        raise ConfigError(f"the benchmark at {data_root} has no videos in {list(splits)}")
    for split in todo:
        opts = BenchmarkOptions(data_root=data_root, out_dir=out_dir / split, split=split, limit=limit,
                                short_side=side, max_size=0, device=device, amp=False, progress=progress,
                                tracker=tracker)
        metrics = run_benchmark("ytvos", model, opts)
        if "J&F" not in metrics:
            raise ConfigError(f"split {split!r} of {data_root} has no Annotations to score against")
        scores[split] = {**{k: metrics[k] for k in SCORE_KEYS}, "n_expressions": metrics["n_expressions_scored"],
                         "by_kind": by_kind(metrics["per_expression"], expression_kinds(data_root, split))}
    write_json(out_dir / SCORES_FILE, scores)
    return scores


def format_scores(scores: dict[str, dict[str, Any]]) -> str:
    """One line per split: J&F, J, F in percent and the per-kind J&F."""
    lines = []
    for split, s in scores.items():
        kinds = ", ".join(f"{k} {100 * v['J&F']:.1f} (n={v['n']})" for k, v in s.get("by_kind", {}).items())
        lines.append(f"{split}: J&F {100 * s['J&F']:.1f}  J {100 * s['J']:.1f}  F {100 * s['F']:.1f}  "
                     f"({s['n_expressions']} expressions; {kinds})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- shipping


# How the model cards of miniature-world heads name the benchmark splits they were scored on.
CARD_SPLIT_NAMES = {"valid": "miniature world, valid", "heldout": "miniature world, heldout (unseen colour+shape)"}
BUILTIN_NOTE = ("This is vdit's built-in model: `vdit segment` without `--weights`, `vdit demo` and "
                "`vdit.mini.builtin.builtin_predictor()` use it. Its `config.json` names the foundation folders package-relatively "
                "(`vdit-package:assets/mini/foundation/...`), so it loads wherever vdit is installed; "
                "`foundation.sha256` is the fingerprint of the foundation weights it was trained on.")


# The shipped head's card (vdit/assets/mini/head/README.md, written by `write_shipped_head_card`): its
# scores on all valid / heldout videos and its recipe, as measured in docs/miniature.md ("Measured
# results"); `vdit mini train --ship` replaces the card with the new head's own.
SHIPPED_HEAD_SCORES = {"valid": {"J&F": 0.721, "J": 0.667, "F": 0.775},
                       "heldout": {"J&F": 0.666, "J": 0.629, "F": 0.702}}
SHIPPED_HEAD_SOURCE = ("Trained with `vdit mini train --threads 1` (the `mini_synthetic` preset: lr 8e-4, x0.1 after "
                       "step 4000, batch 4 x 2 frames, seed 42, one epoch = 5091 optimizer steps) on the shipped "
                       "foundation (pre-trained 2026-12-05, chroma-weighted VAE) and the distinct-colour generated "
                       "benchmark; scored on all valid and heldout videos (docs/miniature.md).")


def head_card_info(source: str | None = None, scores: dict[str, dict[str, Any]] | None = None,
                   builtin: bool = False) -> Any:
    """The model card facts of a miniature-world head (`vdit.models.model_card.ModelCardInfo`); `scores`
    as `evaluate_mini` returns them (fractions)."""
    from vdit.models.model_card import ModelCardInfo

    table = {CARD_SPLIT_NAMES.get(split, split): {k: s[k] for k in SCORE_KEYS if k in s}
             for split, s in (scores or {}).items()}
    return ModelCardInfo(title="VD-IT, miniature world (vdit built-in model)" if builtin else None, source=source,
                         scores=table, location="vdit/assets/mini/head" if builtin else None,
                         notes=(BUILTIN_NOTE,) if builtin else ())


def write_head_card(folder: str | Path, source: str | None = None, scores: dict[str, dict[str, Any]] | None = None,
                    builtin: bool = False) -> Path | None:
    """(Re)write the model card of a head folder from its config.json and weights file."""
    from safetensors import safe_open

    from vdit.config import ModelConfig, from_dict
    from vdit.models.model_card import write_model_card
    from vdit.models.vdit import CONFIG_NAME, WEIGHTS_NAME

    folder = Path(folder)
    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as f:
        count = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    # the config as stored (package-relative foundation paths stay markers, not this machine's paths)
    cfg = from_dict(ModelConfig, json.loads((folder / CONFIG_NAME).read_text())["model"])
    return write_model_card(folder, cfg, count, head_card_info(source, scores, builtin))


def write_shipped_head_card() -> Path | None:
    """The built-in head's model card, from its files and the measured figures above."""
    from vdit.mini.builtin import BUILTIN_WEIGHTS_DIR

    return write_head_card(BUILTIN_WEIGHTS_DIR, source=SHIPPED_HEAD_SOURCE, scores=SHIPPED_HEAD_SCORES, builtin=True)


def ship_head(weights_dir: str | Path, dest: str | Path | None = None,
              scores: dict[str, dict[str, Any]] | None = None, source: str | None = None) -> Path:
    """Copy a trained head into the package (default `vdit/assets/mini/head`) with its foundation paths
    rewritten as package-relative markers (`vdit-package:assets/mini/foundation/t2v`), so the built-in
    model loads wherever vdit is installed, and its model card (README.md: `scores` as `evaluate_mini`
    returns them, `source` where it comes from). The head must have been trained on the shipped
    foundation."""
    from vdit.fileio import dumps_json

    import vdit
    from vdit.mini.builtin import BUILTIN_FOUNDATION_RECORD, BUILTIN_WEIGHTS_DIR, foundation_fingerprint
    from vdit.models.vdit import CONFIG_NAME, PACKAGE_PATH_MARKER, WEIGHTS_NAME, resolve_package_path

    src = Path(weights_dir)
    dest = Path(dest) if dest is not None else BUILTIN_WEIGHTS_DIR
    package = Path(vdit.__file__).resolve().parent
    data = json.loads((src / CONFIG_NAME).read_text())
    foundation = data["model"]["foundation"]
    for key in FOUNDATION_PARTS:
        path = Path(foundation[key]).expanduser().resolve()
        if package not in path.parents:
            raise ConfigError(f"{src}: foundation.{key} = {path} is not inside the vdit package ({package}); "
                              "only a head trained on the shipped foundation can be shipped")
        foundation[key] = PACKAGE_PATH_MARKER + path.relative_to(package).as_posix()
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shutil.copy2(src / WEIGHTS_NAME, tmp / WEIGHTS_NAME)
    (tmp / CONFIG_NAME).write_text(dumps_json(data, nonfinite="error", indent=2) + "\n")
    # lets the loader refuse the head once the shipped foundation weights are replaced
    root = Path(resolve_package_path(foundation["t2v"])).parent
    (tmp / BUILTIN_FOUNDATION_RECORD).write_text(foundation_fingerprint(root) + "\n")
    write_head_card(tmp, source=source, scores=scores, builtin=dest == BUILTIN_WEIGHTS_DIR)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest
