"""Count host-device synchronisations of a block of code (issue 17: no host syncs in a training step).

    with SyncCounter() as syncs:
        losses = wrapper(batch)                  # a vdit.training.TrainingWrapper step
    print(syncs.count, syncs.summary())      # e.g. 3, {'scalar read @ criterion.py:72': 1, ...}

A sync is a point where the host waits for the accelerator: it reads a tensor value (`.item()`,
`bool(t)`, `float(t)`, `if t:`, `.tolist()`, `.numpy()`), copies a tensor to the host, uploads a host
tensor with `non_blocking=False` (PyTorch then synchronises the stream), or runs an op whose output
shape depends on the values (`nonzero`, boolean-mask indexing, `masked_select`, `unique`, `bincount`,
...). Each is counted once, with the innermost `vdit` source line on the stack; reading a host copy
again, or what was computed from host copies only, is free.

Two levels see them: a `TorchDispatchMode` (aten ops: `_local_scalar_dense`, `item`, `is_nonzero`,
cross-device copies, data-dependent ops) and a `TorchFunctionMode` for the Python-level host reads that
never reach the dispatcher on CPU (`tolist`, `numpy`, `cpu()` of a CPU tensor). On a CPU-only machine
every tensor counts as device memory, so the count is what an accelerator run of the same code would
sync (on a CUDA machine CPU tensors are host data: `SyncCounter(cpu_is_device=...)`), with two blind
spots there: `x.to(device)` cannot tell an upload from a no-op, so host-to-device
uploads (and `.to("cpu")`) are only counted on an accelerator. A collective
(`torch.distributed.all_reduce`) is not a sync and is not counted.
"""
from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

aten = torch.ops.aten

SCALAR_READ = "scalar read"
TRANSFER = "device->host copy"
UPLOAD = "blocking host->device copy"
DATA_DEPENDENT = "data-dependent shape"
HOST_READ = "host read"

# aten ops that read a value into the host.
_SCALAR_OPS = {aten._local_scalar_dense.default, aten.item.default, aten.is_nonzero.default}
# aten ops whose output size depends on tensor values: the host must learn it before allocating.
_DATA_DEPENDENT_OPS = {
    aten.nonzero.default, aten.masked_select.default, aten._unique2.default, aten.unique_dim.default,
    aten.unique_consecutive.default, aten.repeat_interleave.Tensor, aten.bincount.default,
}
_COPY_OPS = {aten._to_copy.default, aten.copy_.default}
# Tensor methods that read values into Python, seen at the torch-function level (on CPU they never
# dispatch an op).
_HOST_READ_METHODS = {torch.Tensor.tolist, torch.Tensor.numpy}


@dataclass(frozen=True)
class SyncEvent:
    kind: str  # one of SCALAR_READ, TRANSFER, UPLOAD, DATA_DEPENDENT, HOST_READ
    op: str  # the aten op or Tensor method
    where: str  # innermost vdit (else innermost non-torch) source line on the stack, "file.py:123"
    stack: tuple[str, ...] = ()  # every such frame, outermost first, "file.py:123 in function"


def _caller() -> tuple[str, tuple[str, ...]]:
    frames = traceback.extract_stack()
    inside = [f for f in frames if "/vdit/" in f.filename and not f.filename.endswith("/engine/syncs.py")]
    if not inside:
        inside = [f for f in frames if "/torch/" not in f.filename and not f.filename.endswith("/syncs.py")]
    if not inside:
        return "?", ()
    stack = tuple(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in inside)
    return f"{Path(inside[-1].filename).name}:{inside[-1].lineno}", stack


def _device_of(value: Any) -> torch.device | None:
    if isinstance(value, torch.Tensor):
        return value.device
    if isinstance(value, (str, torch.device)):
        return torch.device(value)
    return None


class _Dispatch(TorchDispatchMode):
    def __init__(self, counter: "SyncCounter"):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        c = self.counter
        if func in _SCALAR_OPS:
            if not c.is_host_copy(args[0]):
                c.add(SCALAR_READ, str(func))
        elif func in _DATA_DEPENDENT_OPS:
            if not (func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is not None):
                c.add(DATA_DEPENDENT, str(func))
        elif func is aten.index.Tensor and any(
                isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
            c.add(DATA_DEPENDENT, "aten.index.Tensor (boolean mask)")
        elif func in _COPY_OPS:
            self._copy(func, args, kwargs)
        out = func(*args, **kwargs)
        # Work on tensors that already reached the host stays on the host: its results are host data too.
        inputs = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        if inputs and all(c.is_host_copy(a) for a in inputs):
            for o in tree_flatten(out)[0]:
                if isinstance(o, torch.Tensor):
                    c.mark_host_copy(o)
        return out

    def _copy(self, func, args, kwargs) -> None:
        if func is aten.copy_.default:
            dst, src = args[0].device, args[1].device
            non_blocking = bool(args[2]) if len(args) > 2 else bool(kwargs.get("non_blocking", False))
        else:
            src = args[0].device
            dst = _device_of(kwargs.get("device")) or src
            non_blocking = bool(kwargs.get("non_blocking", False))
        if src == dst or "meta" in (src.type, dst.type):
            return
        if dst.type == "cpu":
            self.counter.add(TRANSFER, str(func))
        elif src.type == "cpu" and not non_blocking:
            self.counter.add(UPLOAD, str(func))


class _Functions(TorchFunctionMode):
    def __init__(self, counter: "SyncCounter"):
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        c = self.counter
        if func in _HOST_READ_METHODS or func is torch.Tensor.cpu:
            src = args[0] if args and isinstance(args[0], torch.Tensor) else None
            # Reads of tensors on an accelerator are seen by the dispatch level (their copy to the host).
            if src is not None and src.device.type == "cpu" and c.cpu_is_device and not c.is_host_copy(src):
                if func is torch.Tensor.cpu:
                    c.add(TRANSFER, "Tensor.cpu")
                    if out is src:  # on a CPU-only machine `cpu()` returns its input; an accelerator copies
                        out = src.clone()
                    c.mark_host_copy(out)
                else:
                    c.add(HOST_READ, f"Tensor.{func.__name__}")
        return out


class SyncCounter:
    """Context manager counting host-device syncs (see the module docstring). `count` and `events`
    afterwards; `summary()` groups them by kind and source line."""

    def __init__(self, cpu_is_device: bool | None = None) -> None:
        """`cpu_is_device`: count host reads of CPU tensors as device reads (what a CPU-only machine needs
        to stand in for an accelerator); default: only where no CUDA device is present (there, CPU tensors
        are host data, e.g. the user's frames, and device reads are seen as copies)."""
        self.cpu_is_device = (not torch.cuda.is_available()) if cpu_is_device is None else cpu_is_device
        self.events: list[SyncEvent] = []
        self._host_copies = WeakIdKeyDictionary()
        self._modes: tuple[TorchFunctionMode, TorchDispatchMode] | None = None

    @property
    def count(self) -> int:
        return len(self.events)

    def add(self, kind: str, op: str) -> None:
        where, stack = _caller()
        self.events.append(SyncEvent(kind, op, where, stack))

    def mark_host_copy(self, tensor: torch.Tensor) -> None:
        """A tensor already counted when it reached the host (or computed from such tensors only):
        reading it later is free."""
        self._host_copies[tensor] = True

    def is_host_copy(self, tensor: Any) -> bool:
        return isinstance(tensor, torch.Tensor) and tensor in self._host_copies

    def summary(self) -> dict[str, int]:
        return dict(Counter(f"{e.kind} @ {e.where}" for e in self.events))

    def __enter__(self) -> "SyncCounter":
        functions, dispatch = _Functions(self), _Dispatch(self)
        functions.__enter__()
        dispatch.__enter__()
        self._modes = (functions, dispatch)
        return self

    def __exit__(self, *exc: Any) -> None:
        functions, dispatch = self._modes  # type: ignore[misc]
        dispatch.__exit__(*exc)
        functions.__exit__(*exc)
        self._modes = None


def count_syncs(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, SyncCounter]:
    """Run `fn(*args, **kwargs)` under a SyncCounter; returns (its result, the counter)."""
    with SyncCounter() as counter:
        result = fn(*args, **kwargs)
    return result, counter


__all__ = ["SyncCounter", "SyncEvent", "count_syncs", "SCALAR_READ", "TRANSFER", "UPLOAD", "DATA_DEPENDENT",
           "HOST_READ"]
