"""Benchmark evaluation drivers: run a model with each benchmark's inference protocol (spec 6), write the
predictions in the official formats and score them with `vdit.evaluation`.

    metrics = run_benchmark("ytvos", model, BenchmarkOptions(data_root="data/ref-youtube-vos", out_dir="out"))

| benchmark | protocol (driver module)                                              | metrics                 |
|-----------|-----------------------------------------------------------------------|-------------------------|
| ytvos     | whole video as one clip, best query, submission zip (benchmarks_video) | J&F when GT is present  |
| davis     | 36-frame clips, per-object probabilities merged, 4 annotation sets    | DAVIS unsupervised J&F  |
| mevis     | as ytvos                                                              | MeViS J&F (valid_u)     |
| a2d/jhmdb | 5-frame window, head on the annotated frame, all queries (benchmarks_coco) | mAP + IoU          |
| refcoco   | one image, all queries                                                | top-1 overall/mean IoU  |

Every driver writes `<out_dir>/metrics.json` (the dict it returns, strict JSON: a non-finite figure is
`null`) next to its predictions, last: metrics.json present means the predictions beside it are complete.
A run that fails removes the output folder when it created it (else it leaves no metrics.json).
The model input's short side defaults to the size the model's config records (`input_short_side`: 64 for
the miniature world's heads), else 360 (the official protocols).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from vdit.data.transforms import EVAL_MAX_SIZE, EVAL_SHORT_SIDE
from vdit.errors import ConfigError, EvaluationError
from vdit.models.backbone.diffusion_backbone import MIN_SIDE

BENCHMARKS = ("ytvos", "davis", "mevis", "a2d", "jhmdb", "refcoco")
METRICS_FILE = "metrics.json"
DEFAULT_THRESHOLD = 0.5  # spec 6.1 / 6.3: sigmoid > 0.5
# Long-side cap of the model input when none is given: the video benchmarks resize the short side only
# (`T.Resize(360)` in inference_ytvos/davis), the frame benchmarks use the dataset's eval resize (max 640).
VIDEO_MAX_SIZE: int | None = None
FRAME_MAX_SIZE = EVAL_MAX_SIZE
NO_CAP = 0  # max_size value meaning "no long-side cap"

ProgressFn = Callable[[str], None]


@dataclass
class BenchmarkOptions:
    """Where the data is, where outputs go, and the knobs of the protocol (defaults = the official ones).

    limit: first N videos (ytvos, davis, mevis) or samples (a2d, jhmdb, refcoco); None = everything.
    split: dataset split (default per benchmark: valid, valid, valid_u, test, -, val).
    max_size: long-side cap of the model input; None = the benchmark's default, 0 = no cap.
    amp: autocast; None = fp16 on CUDA for the video benchmarks (official `--amp`), off for the others.
    davis_root: the raw DAVIS folder scored against (default <data_root>/DAVIS).
    jhmdb_data_root: what the JHMDB metadata paths are relative to (default: the parent of data_root).
    refcoco_set: refcoco, refcoco+ or refcocog.
    short_side: the model input's short side; None = the model config's `input_short_side`, else 360.
    progress: called with one line per finished video / sample; step_progress (default: progress) with
    the steps inside a video (windows, annotation sets), which a terminal may draw over each other.
    """

    data_root: str | Path
    out_dir: str | Path
    limit: int | None = None
    split: str | None = None
    short_side: int | None = None
    max_size: int | None = None
    threshold: float = DEFAULT_THRESHOLD
    device: str | None = None
    amp: bool | None = None
    davis_root: str | Path | None = None
    jhmdb_data_root: str | Path | None = None
    refcoco_set: str = "refcoco"
    progress: ProgressFn | None = None
    step_progress: ProgressFn | None = None

    def __post_init__(self) -> None:
        self.data_root = Path(self.data_root).expanduser()
        self.out_dir = Path(self.out_dir).expanduser()
        if self.limit is not None and int(self.limit) < 1:
            raise ConfigError(f"limit must be a positive number, got {self.limit}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.max_size is not None and int(self.max_size) < 0:
            raise ConfigError(f"max_size must be >= 0 (0 = no cap), got {self.max_size}")
        if self.short_side is not None and int(self.short_side) < MIN_SIDE:
            raise ConfigError(f"short_side={self.short_side}: the model needs frames of at least {MIN_SIDE} pixels")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"output folder {self.out_dir} is a file, not a folder")
        if not self.data_root.exists():
            raise EvaluationError(f"dataset folder not found: {self.data_root}")
        out = self.out_dir.resolve()
        for protected in (self.data_root, self.davis_root):
            if protected is None:
                continue
            base = Path(protected).expanduser().resolve()
            if out == base or base in out.parents:
                # outputs replace their own Annotations folders: never inside a dataset
                raise ConfigError(f"output folder {self.out_dir} lies inside the dataset folder {protected}; "
                                  "choose an output folder outside it")

    def input_max_size(self, default: int | None) -> int | None:
        """The long-side cap to use: the benchmark's default, or the user's (0 = none)."""
        if self.max_size is None:
            return default
        return None if int(self.max_size) == NO_CAP else int(self.max_size)

    def note(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def step(self, message: str) -> None:
        """Progress inside a video (a long video is minutes of work between two `note`s)."""
        fn = self.step_progress or self.progress
        if fn is not None:
            fn(message)

    def for_model(self, model: nn.Module) -> "BenchmarkOptions":
        """These options with `short_side` resolved for `model` (its config's input size, else 360)."""
        if self.short_side is not None:
            return self
        cfg = getattr(model, "cfg", None)
        side = getattr(cfg, "input_short_side", None) or EVAL_SHORT_SIDE
        return dataclasses.replace(self, short_side=int(side))


def limited(items: Sequence[Any], limit: int | None) -> list[Any]:
    return list(items) if limit is None else list(items)[: int(limit)]


def write_json(path: Path, payload: Any) -> Path:
    """Write strict JSON (non-finite numbers as null) atomically (temporary name, then rename)."""
    from vdit.data.common import dumps_json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps_json(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def run_benchmark(name: str, model: nn.Module, options: BenchmarkOptions) -> dict[str, Any]:
    """Run benchmark `name` with `model`; writes `<out_dir>/metrics.json` and returns its content."""
    from vdit.inference import benchmarks_coco, benchmarks_video

    drivers: dict[str, Callable[[nn.Module, BenchmarkOptions], dict[str, Any]]] = {
        "ytvos": benchmarks_video.run_ytvos,
        "davis": benchmarks_video.run_ref_davis,
        "mevis": benchmarks_video.run_mevis,
        "a2d": benchmarks_coco.run_a2d,
        "jhmdb": benchmarks_coco.run_jhmdb,
        "refcoco": benchmarks_coco.run_refcoco,
    }
    if name not in drivers:
        raise ConfigError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    from vdit.cli.checks import first_missing

    options = options.for_model(model)
    created = first_missing(options.out_dir)
    (options.out_dir / METRICS_FILE).unlink(missing_ok=True)  # an older one must not describe new predictions
    try:
        options.out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        metrics = {"benchmark": name, **drivers[name](model, options)}
        metrics["limit"] = options.limit
        metrics["short_side"] = options.short_side
        metrics["elapsed_s"] = round(time.perf_counter() - start, 3)
        write_json(options.out_dir / METRICS_FILE, metrics)
    except BaseException:
        if created is not None:  # nothing half-written stays behind in a folder this run made
            shutil.rmtree(created, ignore_errors=True)
        raise
    return metrics


__all__ = ["BENCHMARKS", "BenchmarkOptions", "METRICS_FILE", "run_benchmark", "limited", "write_json"]
