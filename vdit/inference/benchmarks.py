"""Benchmark evaluation drivers: run a model with each benchmark's inference protocol (spec 6), write the
predictions in the official formats and score them with `vdit.evaluation`.

    from vdit.inference.benchmark_session import BenchmarkOptions
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
The model input's short side defaults to the size the model's config records (`input_short_side`: 64 for
the miniature world's heads), else 360 (the official protocols).

A run that fails removes the output folder when it created it and finished nothing; otherwise it
leaves no metrics.json, and its finished items for the next run to resume.

The drivers share `vdit.inference.benchmark_session` (options, ranks, resuming).
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vdit.errors import ConfigError
from vdit.fileio import first_missing, write_json

if TYPE_CHECKING:
    from torch import nn

    from vdit.inference.benchmark_session import BenchmarkOptions

BENCHMARKS = ("ytvos", "davis", "mevis", "a2d", "jhmdb", "refcoco")
METRICS_FILE = "metrics.json"


def run_benchmark(name: str, model: nn.Module, options: BenchmarkOptions) -> dict[str, Any]:
    """Run benchmark `name` with `model`; writes `<out_dir>/metrics.json` and returns its content.

    Under a torch.distributed group every rank calls it with the same options and gets rank 0's metrics
    (the drivers return None on the other ranks); with an explicit `options.rank` > 0 and no group, {}."""
    # The drivers (torch, the model) load on first use, so the CLI's parser can read BENCHMARKS cheaply.
    from vdit.inference import benchmarks_coco, benchmarks_video
    from vdit.inference.benchmark_session import session_of

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
    from vdit.engine import distributed as du

    options = options.for_model(model)
    options = dataclasses.replace(options, session=None)
    session = session_of(options, model, name)
    created = first_missing(options.out_dir) if session.is_main else None
    if session.is_main:
        (options.out_dir / METRICS_FILE).unlink(missing_ok=True)  # an older one must not describe new predictions
    try:
        if session.is_main:
            options.out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        result = drivers[name](model, options)
        metrics: dict[str, Any] = {}
        if session.is_main:
            metrics = {"benchmark": name, **result}
            metrics["limit"] = options.limit
            metrics["short_side"] = options.short_side
            metrics["elapsed_s"] = round(time.perf_counter() - start, 3)
            write_json(options.out_dir / METRICS_FILE, metrics)
            session.close()
    except BaseException:
        # nothing stays behind in a folder this run made, unless it holds finished items to resume
        if created is not None and session.count_finished() == 0:
            shutil.rmtree(created, ignore_errors=True)
        raise
    if du.is_initialized() and session.world_size > 1:
        metrics = du.broadcast_object(metrics, session.device)  # every rank returns the scores
    return metrics


__all__ = ["BENCHMARKS", "METRICS_FILE", "run_benchmark"]
