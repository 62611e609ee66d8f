"""What every benchmark driver shares: `BenchmarkOptions` (where the data is, where outputs go, the
protocol's knobs), `EvalSession` (the ranks of one run and its on-disk records), the per-item seed.

Several processes, resuming (`EvalSession`): the videos (ytvos, davis, mevis) or samples (a2d, jhmdb,
refcoco) are dealt out over the ranks of a torch.distributed group (`torchrun --nproc_per_node N -m
vdit evaluate ...`: rank r takes items r, r + N, ...). Each rank writes its items' outputs, then a
record per finished item, `<out_dir>/.vdit-evaluate/done/<item>.json`, atomically (temporary name, then
rename); rank 0 waits for all ranks, merges the records in dataset order and scores. Every item runs
under its own seed (the crc32 of its name), so a random model part (Gaussian noise, a sampled latent)
gives the same outputs whichever rank runs the item, in whatever order: N processes write the same
files as one. `<out_dir>/.vdit-evaluate/run.json` records the settings (benchmark, options, the
model's config and a hash of its trainable parameters); a run that finds the records of a run with the
same settings and no metrics.json (one that was interrupted, killed or failed) skips the items those
records say are finished. The folder is removed once metrics.json is written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import torch
from torch import nn

from vdit.data.transforms import EVAL_MAX_SIZE, EVAL_SHORT_SIDE
from vdit.errors import ConfigError, EvaluationError
from vdit.fileio import write_json
from vdit.inference.predictor import DEFAULT_THRESHOLD
from vdit.models.backbone.diffusion_backbone import MIN_SIDE

# Long-side cap of the model input when none is given: the video benchmarks resize the short side only
# (`T.Resize(360)` in inference_ytvos/davis), the frame benchmarks use the dataset's eval resize (max 640).
VIDEO_MAX_SIZE: int | None = None
FRAME_MAX_SIZE = EVAL_MAX_SIZE
NO_CAP = 0  # max_size value meaning "no long-side cap"

ProgressFn = Callable[[str], None]
# Beside the predictions: what lets an interrupted run resume (removed once metrics.json is written).
SESSION_DIR = ".vdit-evaluate"
SESSION_FILE = "run.json"
DONE_DIR = "done"
SESSION_FORMAT = 1


class ProgressTracker(Protocol):
    """A progress display the drivers drive (`vdit.cli.progress.Progress` is one)."""

    def start(self, total: int | None = None, unit: str | None = None, initial: int = 0) -> None: ...

    def advance(self, message: str | None = None) -> None: ...

    def step(self, message: str) -> None: ...


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
    tracker: a progress bar (start / advance / step), driven alongside those callbacks.
    resume: skip the items an interrupted run with the same settings finished (see the module doc);
    False starts over.
    rank, world_size: this process's share of the items; None = the torch.distributed group's (one
    process without a group). Every rank runs `run_benchmark` with the same options.
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
    tracker: ProgressTracker | None = None
    resume: bool = True
    rank: int | None = None
    world_size: int | None = None
    # Set by run_benchmark: the shared state of this run's ranks (drivers reach it via `session_of`).
    session: "EvalSession | None" = field(default=None, repr=False, compare=False)

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
        if (self.rank is None) != (self.world_size is None):
            raise ConfigError("give both rank and world_size, or neither")
        if self.world_size is not None and not 0 <= int(self.rank) < int(self.world_size):
            raise ConfigError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
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

    def begin(self, total: int, unit: str, done: int = 0) -> None:
        """The tracker's bar: `total` items of this rank, `done` of them finished by an earlier run."""
        if self.tracker is not None:
            self.tracker.start(total=total, unit=unit, initial=done)

    def note(self, message: str) -> None:
        """One item finished."""
        if self.progress is not None:
            self.progress(message)
        if self.tracker is not None:
            self.tracker.advance(message)

    def step(self, message: str) -> None:
        """Progress inside a video (a long video is minutes of work between two `note`s)."""
        fn = self.step_progress or self.progress
        if fn is not None:
            fn(message)
        if self.tracker is not None:
            self.tracker.step(message)

    def for_model(self, model: nn.Module) -> "BenchmarkOptions":
        """These options with `short_side` resolved for `model` (its config's input size, else 360)."""
        if self.short_side is not None:
            return self
        cfg = getattr(model, "cfg", None)
        side = getattr(cfg, "input_short_side", None) or EVAL_SHORT_SIDE
        return dataclasses.replace(self, short_side=int(side))


def limited(items: Sequence[Any], limit: int | None) -> list[Any]:
    return list(items) if limit is None else list(items)[: int(limit)]


# ------------------------------------------------------------------------------------------------ sessions


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of the model's config (when it has a dataclass `cfg`) and of its trainable parameters
    (VDIT: `trainable_named_parameters`; any other module: all parameters), names, dtypes and bytes.
    The frozen foundation models are identified by the locations the config records."""
    from vdit.fileio import dumps_json

    digest = hashlib.sha256()
    cfg = getattr(model, "cfg", None)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        from vdit.config import to_dict

        digest.update(dumps_json(to_dict(cfg), sort_keys=True).encode())
    named = getattr(model, "trainable_named_parameters", None)
    params = named() if callable(named) else dict(model.named_parameters())
    for name in sorted(params):
        t = params[name].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{t.numel()};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def session_settings(name: str, model: nn.Module, options: BenchmarkOptions) -> dict[str, Any]:
    """What must be equal for a run to reuse another run's finished items (not the process count)."""
    from vdit import __version__
    from vdit.inference.predictor import resolve_device

    def path(p: str | Path | None) -> str | None:
        return None if p is None else str(Path(p).expanduser().resolve())

    return {
        "format": SESSION_FORMAT, "benchmark": name, "vdit_version": __version__,
        "model": model_fingerprint(model),
        "options": {
            "data_root": path(options.data_root), "split": options.split, "limit": options.limit,
            "short_side": options.short_side, "max_size": options.max_size, "threshold": float(options.threshold),
            "device_type": resolve_device(options.device).type, "amp": options.amp,
            "davis_root": path(options.davis_root), "jhmdb_data_root": path(options.jhmdb_data_root),
            "refcoco_set": options.refcoco_set,
        },
    }


def item_file_name(key: str) -> str:
    """A record's file name: the item's name with anything but letters, digits and -_. escaped."""
    return quote(key, safe="-_.") + ".json"


class EvalSession:
    """The ranks of one evaluation run and its on-disk records (see the module doc).

    Drivers call `prepare(folders)` (every rank, once), `own(keys)`, `finished(key)`, `save(key, record)`
    for their share, then `collect(keys)`: every rank waits there for all the others; rank 0 gets every
    record, the other ranks None."""

    def __init__(self, out_dir: Path, settings: dict[str, Any], device: torch.device, resume: bool = True,
                 rank: int | None = None, world_size: int | None = None):
        from vdit.engine import distributed as du

        self.out_dir = Path(out_dir)
        self.root = self.out_dir / SESSION_DIR
        self.done_dir = self.root / DONE_DIR
        self.settings = settings
        self.device = device
        self.allow_resume = resume
        if rank is None:
            grouped = du.is_initialized()
            rank = torch.distributed.get_rank() if grouped else 0
            world_size = torch.distributed.get_world_size() if grouped else 1
        self.rank, self.world_size = int(rank), int(world_size)
        self.resumed = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare(self, *folders: Path) -> bool:
        """Rank 0: resume when the records on disk come from a run with these settings, otherwise start
        over (remove the old records and the prediction `folders`, create those empty); the other ranks
        wait for it. Returns whether this run resumes (on rank 0; False on the others)."""
        from vdit.fileio import read_json
        from vdit.engine import distributed as du
        from vdit.errors import DataError

        if self.is_main:
            old = None
            if self.allow_resume and (self.root / SESSION_FILE).is_file():
                try:
                    old = read_json(self.root / SESSION_FILE)
                except DataError:  # a damaged record describes nothing reusable
                    old = None
            self.resumed = old == self.settings
            if not self.resumed:
                shutil.rmtree(self.root, ignore_errors=True)
                for folder in folders:
                    if folder.is_dir():
                        shutil.rmtree(folder)
            for folder in folders:
                folder.mkdir(parents=True, exist_ok=True)
            self.done_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.root / SESSION_FILE, self.settings)
        du.barrier()
        return self.resumed

    def own(self, keys: Sequence[Any]) -> list[Any]:
        """This rank's share: items rank, rank + N, rank + 2N, ... (dataset order within each rank)."""
        return list(keys)[self.rank::self.world_size]

    def finished(self, key: str) -> dict[str, Any] | None:
        """The record of item `key` when an earlier run (or rank) finished it, else None."""
        from vdit.fileio import read_json
        from vdit.errors import DataError

        path = self.done_dir / item_file_name(key)
        if not path.is_file():
            return None
        try:
            record = read_json(path)
        except DataError:  # written atomically, so only a foreign hand makes it unreadable: redo the item
            return None
        return record if isinstance(record, dict) and record.get("key") == key else None

    def save(self, key: str, record: dict[str, Any]) -> None:
        """Mark item `key` finished: its outputs are complete on disk (called after writing them)."""
        write_json(self.done_dir / item_file_name(key), {"key": key, **record})

    def collect(self, keys: Sequence[str]) -> dict[str, dict[str, Any]] | None:
        """Wait for every rank; on rank 0 every item's record (EvaluationError naming a missing one)."""
        from vdit.engine import distributed as du

        du.barrier()
        if not self.is_main:
            return None
        records = {}
        for key in keys:
            record = self.finished(key)
            if record is None:
                raise EvaluationError(f"no finished record of {key!r} in {self.done_dir} after all ranks ended")
            records[key] = record
        return records

    def count_finished(self) -> int:
        return len(list(self.done_dir.glob("*.json"))) if self.done_dir.is_dir() else 0

    def close(self) -> None:
        """After metrics.json: nothing is left to resume."""
        shutil.rmtree(self.root, ignore_errors=True)


def session_of(options: BenchmarkOptions, model: nn.Module, name: str) -> EvalSession:
    """The options' session (run_benchmark sets it), or a fresh single-process one for a driver called
    on its own."""
    if options.session is None:
        from vdit.inference.predictor import resolve_device

        options.session = EvalSession(options.out_dir, session_settings(name, model, options),
                                      resolve_device(options.device), options.resume, options.rank,
                                      options.world_size)
    return options.session


@contextlib.contextmanager
def item_seed(key: str, device: torch.device) -> Iterator[None]:
    """Run one item under its own seed (crc32 of its name) without touching the global RNG streams, so a
    model with random parts gives the same output whichever rank runs the item and in whatever order."""
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(zlib.crc32(key.encode("utf-8")))
        yield


__all__ = ["BenchmarkOptions", "DONE_DIR", "EvalSession", "FRAME_MAX_SIZE", "NO_CAP",
           "SESSION_DIR", "VIDEO_MAX_SIZE", "item_seed", "limited", "model_fingerprint", "session_of"]
