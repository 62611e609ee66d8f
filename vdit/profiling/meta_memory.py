"""Live tensor storages of a run, counted op by op (what `torch.cuda.max_memory_allocated` counts, without
the caching allocator's rounding and kernel workspaces), and on the meta device the values of the small
tensors a step reads (sizes, level offsets, pad masks, targets), so that a step runs there at all."""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakTensorKeyDictionary

# Tensors up to this many elements keep their values on the meta device (shapes, indices, masks, the
# inputs of a 20-frame 368x640 clip).
_CONST_LIMIT = 1 << 24

aten = torch.ops.aten
# Factories whose values are defined (not empty/random ones: their "values" would be noise).
_VALUE_FACTORIES = {aten.zeros, aten.ones, aten.full, aten.arange, aten.linspace, aten.scalar_tensor, aten.eye}


class MemoryAccounting(TorchDispatchMode):
    """Runs under every op of a step: (1) tracks live tensor storages on `device_type` (current and peak
    bytes), and (2) on the meta device, carries the *values* of small tensors whose inputs are all known
    (sizes, level offsets, pad masks, targets), so the few places that read tensor values (`tolist`,
    `item`, `nonzero`) work on meta: such ops run on CPU copies, the results go back to meta."""

    def __init__(self, device_type: str = "meta"):
        super().__init__()
        self.device_type = device_type
        self.values = WeakTensorKeyDictionary()  # meta tensor -> CPU tensor with its values
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.unknown_reads: dict[str, int] = {}

    # -- memory
    def track(self, tensors: Any) -> None:
        for t in tree_flatten(tensors)[0]:
            if isinstance(t, Tensor) and t.device.type == self.device_type:
                storage = t.untyped_storage()
                key = storage._cdata
                if key in self.live:
                    continue
                self.live[key] = storage.nbytes()
                self.current += self.live[key]
                self.peak = max(self.peak, self.current)
                weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def reset_peak(self) -> None:
        self.peak = self.current

    def _unknown_scalar(self, t: Tensor) -> Any:
        """A value read of a tensor computed from weights (only sanity checks do that, e.g. "is any
        predicted box degenerate?"): answer 0 / False, the no-problem branch, and remember where."""
        import traceback

        # the innermost line of the model's code (not of this accounting, which is in vdit too)
        where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(traceback.extract_stack())
                      if "/vdit/" in f.filename and "/vdit/profiling/" not in f.filename), "?")
        self.unknown_reads[where] = self.unknown_reads.get(where, 0) + 1
        return False if t.dtype == torch.bool else 0

    # -- dispatch
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = self._run(func, args, kwargs) if self.device_type == "meta" else func(*args, **kwargs)
        self.track(out)
        return out

    def _run(self, func, args, kwargs):
        flat, _ = tree_flatten((args, kwargs))
        metas = [a for a in flat if isinstance(a, Tensor) and a.device.type == "meta"]
        if not metas:
            out = func(*args, **kwargs)
            if isinstance(out, Tensor) and out.device.type == "meta" and out.numel() <= _CONST_LIMIT:
                if func is aten._to_copy.default:  # a CPU tensor copied to meta (torch.tensor(..., device="meta"))
                    self.values[out] = args[0].to(dtype=out.dtype)
                elif func.overloadpacket in _VALUE_FACTORIES:  # zeros, full, arange, ...: the same on CPU
                    self.values[out] = func(*args, **{**kwargs, "device": torch.device("cpu")})
            return out
        if not all(a in self.values for a in metas):
            if func is aten._local_scalar_dense.default:
                return self._unknown_scalar(args[0])
            if func._schema.is_mutable:  # values of mutated tensors are stale now
                for a in metas:
                    self.values.pop(a, None)
            return func(*args, **kwargs)
        cpu = torch.device("cpu")

        def to_cpu(a):
            if isinstance(a, Tensor) and a.device.type == "meta":
                return self.values[a]
            return cpu if isinstance(a, torch.device) and a.type == "meta" else a

        cpu_args, cpu_kwargs = tree_map(to_cpu, (args, kwargs))
        cpu_out = func(*cpu_args, **cpu_kwargs)
        target = kwargs.get("device")
        leaves_to_cpu = target is not None and torch.device(target).type != "meta"
        try:
            out = func(*args, **kwargs)  # shape-only result, with the op's own aliasing
        except (RuntimeError, NotImplementedError) as exc:  # value-dependent on meta: use the CPU result
            if leaves_to_cpu or not isinstance(cpu_out, (Tensor, tuple, list)):
                return cpu_out
            if "meta" not in str(exc) and "data-dependent" not in str(exc) and "Dynamic" not in type(exc).__name__:
                raise
            out = tree_map(lambda o: o.to("meta") if isinstance(o, Tensor) else o, cpu_out)
        out_leaves, _ = tree_flatten(out)
        cpu_leaves, _ = tree_flatten(cpu_out)
        for o, c in zip(out_leaves, cpu_leaves):
            if isinstance(o, Tensor) and o.device.type == "meta" and isinstance(c, Tensor) and c.numel() <= _CONST_LIMIT:
                self.values[o] = c
        return out
