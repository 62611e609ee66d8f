"""Training checkpoints: everything needed to continue a run exactly, with no pickle anywhere.

A run folder holds `checkpoints/step-XXXXXXXX/` directories and a `checkpoints/latest` pointer (a text
file naming the newest complete one). A checkpoint directory:

    model.safetensors       trainable parameters only (`VDIT.save_pretrained` format)
    config.json             the model config (`VDIT.save_pretrained` format)
    optimizer.safetensors   optimiser state tensors, keyed "<param name>::<key>" (exp_avg, exp_avg_sq, step)
    optimizer.json          optimiser non-tensor parts: param groups (lr, betas, ..., parameter names)
    rng.safetensors         per-rank torch CPU / CUDA generator states (uint8), keyed "rank<r>/<generator>"
    rng.json                per-rank python `random` and numpy states
    run_config.yaml         the RunConfig of the run
    state.json              written last: format, TrainState (epoch, position in the epoch, step, ...),
                            scheduler and grad-scaler states, and a manifest (bytes + sha256 per file)

Writes go to `checkpoints/.tmp-<name>/`, which is renamed into place once complete; `latest` is
replaced (write + rename) only after that, so a crash never leaves a half-written checkpoint behind
`latest`. Reading checks the manifest first: a truncated or altered file is a `CheckpointError` naming it.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vdit import __version__
from vdit.engine import distributed as du
from vdit.errors import ModelLoadError

CHECKPOINTS_DIR = "checkpoints"
LATEST = "latest"
CHECKPOINT_PREFIX = "step-"
STEP_DIGITS = 8
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"  # written by VDIT.save_pretrained
MODEL_CONFIG_FILE = "config.json"
OPTIM_TENSORS = "optimizer.safetensors"
OPTIM_META = "optimizer.json"
RNG_TENSORS = "rng.safetensors"
RNG_META = "rng.json"
RUN_CONFIG_FILE = "run_config.yaml"
FORMAT = "vdit-train-checkpoint/1"
KEY_SEP = "::"
HASH_CHUNK = 1 << 20
FINAL_DIR = "final"  # a finished run's weights (save_pretrained folder)


class CheckpointError(ModelLoadError):
    """A training checkpoint is missing, incomplete, truncated or does not fit the run."""


@dataclass
class TrainState:
    """Where a run stands. `batch_in_epoch` micro-batches of `epoch` are done on every rank; a
    checkpoint written at the end of an epoch has `epoch` = the next one and `batch_in_epoch` = 0."""

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0  # optimizer steps attempted (skipped non-finite steps included)
    consecutive_nonfinite: int = 0
    skipped_steps: int = 0
    world_size: int = 1
    batch_size: int = 1
    grad_accum: int = 1


@dataclass
class Checkpoint:
    """A verified checkpoint directory (see `open_checkpoint`)."""

    path: Path
    state: TrainState
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def file(self, name: str) -> Path:
        return self.path / name


# ---------------------------------------------------------------------------------------------------
# run-folder lock


LOCK_FILE = ".lock"


class RunLock:
    """An exclusive advisory lock (`flock`) on `<run>/.lock`, held by the process training in that folder,
    so that a second process (`--resume` against a live run, or the same `--out` twice) fails at once
    instead of interleaving checkpoints. The kernel drops the lock when its holder dies, even by
    SIGKILL, so a killed run never blocks its resumption. The file stays (it names the last holder)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # no flock on this platform: run unlocked
            return self
        import socket

        from vdit.errors import ConfigError

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(f"run folder {self.path.parent} is in use by {holder}; wait for that run to end "
                              "(or stop it) before resuming, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"vdit train pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


# ---------------------------------------------------------------------------------------------------
# JSON encoding of the few non-JSON types in torch state dicts (Counter milestones, tuples)


def to_json(obj: Any) -> Any:
    if isinstance(obj, collections.Counter):
        return {"__counter__": [[to_json(k), v] for k, v in obj.items()]}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if torch.is_tensor(obj):
        raise TypeError("tensors go to safetensors, not JSON")
    return obj


def from_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__counter__"}:
            return collections.Counter({k: v for k, v in obj["__counter__"]})
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return obj


def _write_json(path: Path, data: Any) -> None:
    """Strict JSON; a non-finite number is refused (a checkpoint must restore exactly what was saved)."""
    from vdit.fileio import dumps_json

    try:
        text = dumps_json(data, nonfinite="error", indent=1)
    except ValueError as exc:
        raise CheckpointError(f"{path}: cannot be written: {exc}") from None
    path.write_text(text)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (incomplete checkpoint)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated JSON ({exc})") from None


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (incomplete checkpoint)") from None
    except Exception as exc:  # safetensors raises its own error type on truncated / corrupt files
        raise CheckpointError(f"{path}: unreadable or truncated safetensors ({exc})") from None


# ---------------------------------------------------------------------------------------------------
# optimiser, RNG


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimiser state as (tensors keyed by parameter name, JSON-able rest)."""
    sd = optimizer.state_dict()
    names = _index_names(sd["param_groups"])
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{names[index]}{KEY_SEP}{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(names[index], {})[key] = to_json(value)
    groups = []
    for group in sd["param_groups"]:
        g = {k: to_json(v) for k, v in group.items() if k != "params"}
        g["param_names"] = [names[i] for i in group["params"]]
        groups.append(g)
    return tensors, {"format": FORMAT, "param_groups": groups, "scalars": scalars}


def _index_names(groups: list[dict]) -> dict[int, str]:
    out: dict[int, str] = {}
    for group in groups:
        if "param_names" not in group:
            raise CheckpointError("optimizer param groups carry no parameter names (build it with vdit.engine.optim)")
        out.update(zip(group["params"], group["param_names"]))
    return out


def optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         meta: dict[str, Any], source: Path, rename: Callable[[str], str] = str) -> None:
    """Load what `optimizer_to_files` wrote into an optimiser built over the same parameters; `rename`
    maps the parameter names of `meta` to the current ones (the tensors' keys are already current)."""
    current = optimizer.state_dict()["param_groups"]
    saved = meta.get("param_groups")
    if not isinstance(saved, list) or len(saved) != len(current):
        raise CheckpointError(f"{source}: {len(saved) if isinstance(saved, list) else '?'} parameter groups, "
                              f"the run has {len(current)}")
    scalars = {rename(name): value for name, value in meta.get("scalars", {}).items()}
    groups, state = [], {}
    for cur, old in zip(current, saved):
        names = [rename(name) for name in old.get("param_names", [])]
        if names != list(cur["param_names"]):
            diff = sorted(set(names) ^ set(cur["param_names"]))
            raise CheckpointError(f"{source}: the optimiser was saved for other parameters (e.g. {diff[:3]})")
        group = from_json({k: v for k, v in old.items()})
        group["param_names"] = names
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        group["params"] = list(cur["params"])
        groups.append(group)
        for index, name in zip(cur["params"], cur["param_names"]):
            entry = dict(from_json(scalars.get(name, {})))
            prefix = f"{name}{KEY_SEP}"
            entry.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            if entry:
                state[index] = entry
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: optimiser state does not fit ({exc})") from None


def capture_rng(device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states: torch generators as uint8 tensors, python / numpy as JSON."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["torch_cuda"] = torch.cuda.get_rng_state(device)
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    meta = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss},
        "numpy": {"kind": kind, "keys": [int(k) for k in keys], "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "has_cuda": device.type == "cuda",
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if device.type == "cuda" and "torch_cuda" in tensors:
        torch.cuda.set_rng_state(tensors["torch_cuda"], device)
    py = meta["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    nps = meta["numpy"]
    np.random.set_state((nps["kind"], np.asarray(nps["keys"], dtype=np.uint32), nps["pos"], nps["has_gauss"],
                         nps["cached_gaussian"]))


def _rng_payload(device: torch.device) -> tuple[bytes, bytes]:
    from safetensors.torch import save

    from vdit.fileio import dumps_json

    tensors, meta = capture_rng(device)
    return save({k: v.cpu().contiguous() for k, v in tensors.items()}), dumps_json(meta, nonfinite="error").encode()


# ---------------------------------------------------------------------------------------------------
# writing


def checkpoint_name(global_step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{global_step:0{STEP_DIGITS}d}"


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in chunks (model files need not fit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open directories; the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    state: TrainState,
    run_config: Any,
    dist_info: du.DistInfo,
    keep: int = 0,
) -> Path | None:
    """Write a checkpoint of `state` atomically. Every rank must call it (the RNG states are gathered);
    rank 0 writes. `model` is the bare VDIT (not the DDP wrapper). Returns the directory on rank 0."""
    from safetensors.torch import load as load_bytes
    from safetensors.torch import save_file

    from vdit.config import save_yaml

    rng_tensors_b, rng_meta_b = _rng_payload(dist_info.device)
    all_tensors = du.gather_bytes(rng_tensors_b, dist_info.device)
    all_meta = du.gather_bytes(rng_meta_b, dist_info.device)
    final: Path | None = None
    if dist_info.is_main:
        root = Path(run_dir) / CHECKPOINTS_DIR
        name = checkpoint_name(state.global_step)
        tmp = root / f"{TMP_PREFIX}{name}"
        for stale in root.glob(f"{TMP_PREFIX}*"):  # left by a crash during an earlier save
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        tensors, meta = optimizer_to_files(optimizer)
        save_file(tensors, str(tmp / OPTIM_TENSORS), metadata={"format": FORMAT})
        _write_json(tmp / OPTIM_META, meta)
        rng = {}
        for rank, blob in enumerate(all_tensors or []):
            rng.update({f"rank{rank}/{k}": v for k, v in load_bytes(blob).items()})
        save_file(rng, str(tmp / RNG_TENSORS), metadata={"format": FORMAT})
        _write_json(tmp / RNG_META, {"ranks": [json.loads(b.decode()) for b in all_meta or []]})
        save_yaml(run_config, tmp / RUN_CONFIG_FILE)
        files = sorted(p.name for p in tmp.iterdir())
        manifest = {n: {"bytes": (tmp / n).stat().st_size, "sha256": sha256_file(tmp / n)} for n in files}
        _write_json(tmp / STATE_FILE, {
            "format": FORMAT, "vdit_version": __version__, "name": name,
            "state": dataclasses.asdict(state),
            "scheduler": to_json(scheduler.state_dict()),
            "scaler": to_json(scaler.state_dict()) if scaler is not None else {},
            "files": manifest,
        })
        for n in [*files, STATE_FILE]:
            _fsync_file(tmp / n)
        _fsync_dir(tmp)
        final = root / name
        if final.exists():  # re-saving a step (e.g. after a resume): move the old one aside first
            old = root / f"{OLD_PREFIX}{name}"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, final)
        _fsync_dir(root)
        pointer = root / f"{LATEST}.tmp"
        pointer.write_text(name + "\n")
        _fsync_file(pointer)
        os.replace(pointer, root / LATEST)
        _fsync_dir(root)
        prune_checkpoints(root, keep)
    du.barrier()
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete-looking checkpoint directories under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda p: p.name)


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the `keep` newest checkpoints (0 keeps all); never the one `latest` names."""
    if keep <= 0:
        return
    latest = (root / LATEST).read_text().strip() if (root / LATEST).is_file() else None
    for path in list_checkpoints(root)[:-keep]:
        if path.name != latest:
            shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# reading


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run folder (its `latest`), a checkpoints folder or the directory itself."""
    p = Path(path).expanduser()
    if (p / STATE_FILE).is_file():
        return p
    for root in (p / CHECKPOINTS_DIR, p):
        pointer = root / LATEST
        if pointer.is_file():
            name = pointer.read_text().strip()
            target = root / name
            if not name or not target.is_dir():
                raise CheckpointError(f"{pointer} names {name!r}, which is not a checkpoint folder")
            return target
    if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX):
        raise CheckpointError(f"{p / STATE_FILE}: missing (incomplete checkpoint)")
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {p}: the path does not exist")
    raise CheckpointError(f"no checkpoint at {p}: expected a run folder with {CHECKPOINTS_DIR}/{LATEST} or a "
                          f"checkpoint folder with {STATE_FILE}")


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Resolve and verify a checkpoint: every file of the manifest present with its size and hash."""
    ckpt = resolve_checkpoint(path)
    meta = _read_json(ckpt / STATE_FILE)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{ckpt / STATE_FILE}: not a vdit training checkpoint (format {FORMAT} expected)")
    for name, info in meta.get("files", {}).items():
        file = ckpt / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing (incomplete checkpoint)")
        size = file.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(f"{file}: truncated or altered ({size} bytes, the manifest says {info['bytes']})")
        if sha256_file(file) != info["sha256"]:
            raise CheckpointError(f"{file}: corrupt (sha256 differs from the manifest)")
    try:
        state = TrainState(**meta["state"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{ckpt / STATE_FILE}: bad train state ({exc})") from None
    return Checkpoint(path=ckpt, state=state, scheduler=from_json(meta.get("scheduler", {})),
                      scaler=from_json(meta.get("scaler", {})), meta=meta)


def load_run_config(ckpt: Checkpoint) -> Any:
    from vdit.config import RunConfig, load_yaml
    from vdit.errors import ConfigError

    try:
        return load_yaml(RunConfig, ckpt.file(RUN_CONFIG_FILE)).validate()
    except ConfigError as exc:
        raise CheckpointError(f"{ckpt.file(RUN_CONFIG_FILE)}: {exc}") from None


def load_model_weights(ckpt: Checkpoint, model: nn.Module) -> None:
    try:
        model.load_trainable(ckpt.file(MODEL_FILE))
    except CheckpointError:
        raise
    except ModelLoadError as exc:
        raise CheckpointError(str(exc)) from None


def load_optimizer(ckpt: Checkpoint, optimizer: torch.optim.Optimizer) -> None:
    """Optimiser state of a checkpoint; moments saved in an older weights layout are migrated like the
    parameters they belong to (`vdit.models.vdit.migrate_trainable`), and so are the parameter names of
    optimizer.json (`vdit.models.vdit.migrate_name`)."""
    from vdit.models.vdit import load_model_config, migrate_name, migrate_trainable, weights_layout

    meta = _read_json(ckpt.file(OPTIM_META))
    tensors = _load_tensors(ckpt.file(OPTIM_TENSORS))
    try:
        layout = weights_layout(ckpt.file(MODEL_FILE))
        tensors = migrate_trainable(tensors, layout, load_model_config(ckpt.path))
    except ModelLoadError as exc:
        raise CheckpointError(str(exc)) from None
    optimizer_from_files(optimizer, tensors, meta, ckpt.file(OPTIM_META), rename=lambda n: migrate_name(n, layout))


def load_rng(ckpt: Checkpoint, rank: int, device: torch.device) -> bool:
    """Restore this rank's RNG states; False when the checkpoint has none for this rank."""
    meta = _read_json(ckpt.file(RNG_META))
    ranks = meta.get("ranks", []) if isinstance(meta, dict) else []
    if rank >= len(ranks):
        return False
    prefix = f"rank{rank}/"
    tensors = {k[len(prefix):]: v for k, v in _load_tensors(ckpt.file(RNG_TENSORS)).items() if k.startswith(prefix)}
    if "torch_cpu" not in tensors:
        raise CheckpointError(f"{ckpt.file(RNG_TENSORS)}: no torch CPU generator state for rank {rank}")
    restore_rng(tensors, ranks[rank], device)
    return True


# ---------------------------------------------------------------------------------------------------
# initialisation from pre-trained weights (not a resume)


def init_weights_file(source: str | Path) -> Path:
    """The safetensors file behind `source`: the file itself, a save_pretrained / checkpoint folder,
    or a run folder (its `final/`, else its latest checkpoint)."""
    p = Path(source).expanduser()
    if p.is_file():
        return p
    for candidate in (p / MODEL_FILE, p / FINAL_DIR / MODEL_FILE):
        if candidate.is_file():
            return candidate
    if (p / CHECKPOINTS_DIR / LATEST).is_file():
        return resolve_checkpoint(p) / MODEL_FILE
    raise CheckpointError(f"no weights at {p}: expected a .safetensors file, a folder with {MODEL_FILE}, or a run "
                          f"folder with {FINAL_DIR}/ or {CHECKPOINTS_DIR}/")


def load_init_weights(model: nn.Module, source: str | Path, exclude: tuple[str, ...] = ()) -> dict[str, int]:
    """Copy pre-trained weights into `model` (frozen parameters included, e.g. a text encoder trained in
    pre-training). Names starting with an `exclude` prefix keep their fresh initialisation; any other
    name missing from, or unknown to, the model is an error naming the file."""
    path = init_weights_file(source)
    tensors = _load_tensors(path)
    cfg = getattr(model, "cfg", None)
    if cfg is not None:  # a VDIT: weights written in an older layout are migrated
        from vdit.models.vdit import migrate_trainable, weights_layout

        try:
            tensors = migrate_trainable(tensors, weights_layout(path), cfg)
        except ModelLoadError as exc:
            raise CheckpointError(str(exc)) from None
    params = dict(model.named_parameters())
    wanted = {n: t for n, t in tensors.items() if not n.startswith(tuple(exclude))}
    unknown = sorted(set(wanted) - set(params))
    if unknown:
        raise CheckpointError(f"{path}: {len(unknown)} tensor(s) unknown to this model (e.g. {unknown[:3]}); "
                              "was it trained with another model config?")
    missing = sorted(n for n, p in params.items()
                     if p.requires_grad and n not in wanted and not n.startswith(tuple(exclude)))
    if missing:
        raise CheckpointError(f"{path}: lacks {len(missing)} trainable parameter(s) of this model (e.g. {missing[:3]})")
    with torch.no_grad():
        for name, tensor in wanted.items():
            p = params[name]
            if tensor.shape != p.shape:
                raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, "
                                      f"the model expects {tuple(p.shape)}")
            p.copy_(tensor.to(device=p.device, dtype=p.dtype))
    return {"loaded": len(wanted), "excluded": len(tensors) - len(wanted)}
