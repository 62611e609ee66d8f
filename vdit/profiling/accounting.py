"""`meta_accounting`: a training or inference step run on the meta device (no weights, no compute) with its
live memory, FLOPs, autocast and kernel choices accounted as on a GPU."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Callable, Iterator

import torch

from vdit.profiling.meta_autocast import MetaFunctions, autocast_on_meta
from vdit.profiling.meta_deform_attn import shape_only_deform_attn
from vdit.profiling.meta_memory import MemoryAccounting
from vdit.profiling.sdpa import sdpa_efficient


@contextlib.contextmanager
def meta_accounting(autocast_dtype: torch.dtype | None = None, sdpa_kernel: Callable | None = sdpa_efficient,
                    count_flops: bool = True, device_type: str = "meta",
                    deform_impl: str | None = "shape_only") -> Iterator[SimpleNamespace]:
    """Everything a step on the meta device needs; yields `acc` with `acc.memory` (MemoryAccounting) and
    `acc.flops` (FlopCounterMode or None). `device_type="cpu"` tracks a real CPU run the same way (to
    check the meta accounting against it)."""
    from torch.utils.flop_counter import FlopCounterMode

    from vdit.models.ops import ms_deform_attn as msda

    saved_default = msda._DEFAULTS.get("meta")
    if deform_impl == "shape_only":
        if "shape_only" not in msda.available_impls():
            msda.register_impl("shape_only", shape_only_deform_attn)
        msda.set_default_impl("shape_only", device_type="meta")
    elif deform_impl is not None:
        msda.set_default_impl(deform_impl, device_type="meta")
    functions = MetaFunctions(autocast_dtype, sdpa_kernel)
    memory = MemoryAccounting(device_type)
    flops = FlopCounterMode(display=False) if count_flops else None
    try:
        with contextlib.ExitStack() as stack:
            if flops is not None:
                stack.enter_context(flops)
            stack.enter_context(autocast_on_meta(functions))
            stack.enter_context(functions)
            stack.enter_context(memory)
            yield SimpleNamespace(memory=memory, flops=flops, functions=functions)
    finally:
        if saved_default is None:
            msda._DEFAULTS.pop("meta", None)
        else:
            msda._DEFAULTS["meta"] = saved_default
