"""bf16 autocast on the meta device, which has no autocast backend: CUDA's cast policy applied by a
torch-function mode (`MetaFunctions`, which also builds `torch.tensor(..., device="meta")` on CPU so its
values are kept, and routes SDPA to a chosen kernel), driven by `torch.autocast(device_type="meta")` regions
(`autocast_on_meta`)."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

# CUDA autocast's cast policy for the ops this model calls (torch/csrc/autocast_mode.cpp): these run in
# the lower precision, ...
_LOWP_FUNCS = {
    F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose2d, F.scaled_dot_product_attention,
    torch.matmul, torch.mm, torch.bmm, torch.baddbmm, torch.addmm, torch.addbmm,
    torch.einsum,  # not listed, but its bmm is cast by autocast below the composite
    Tensor.matmul, Tensor.__matmul__, Tensor.mm, Tensor.bmm, Tensor.baddbmm, Tensor.addmm,
}
# ... and these in fp32 (softmax / log_softmax: fp32 output for lower-precision input without a dtype).
_FP32_FUNCS = {
    F.layer_norm, torch.layer_norm, F.group_norm, torch.group_norm, F.softmax, torch.softmax, Tensor.softmax,
    F.log_softmax, torch.log_softmax, Tensor.log_softmax, F.binary_cross_entropy_with_logits,
    torch.binary_cross_entropy_with_logits, F.softplus, torch.exp, Tensor.exp, torch.log, Tensor.log,
    torch.rsqrt, Tensor.rsqrt, torch.pow, Tensor.pow, torch.cumsum, Tensor.cumsum,
}
_LOWER = (torch.bfloat16, torch.float16)


class MetaFunctions(TorchFunctionMode):
    """Python-level rewrites for a step on the meta device:

    - `torch.tensor` / `torch.as_tensor` with device=meta are built on CPU and copied, so that
      `MemoryAccounting` sees (and keeps) their values;
    - `F.scaled_dot_product_attention` without a mask goes to `sdpa_kernel` (the memory-efficient kernel
      CUDA picks: nothing of size L x S is saved for backward), instead of meta's math fallback;
    - autocast emulation: while enabled, the ops of `_LOWP_FUNCS` get their float inputs cast to the
      autocast dtype (leaf parameters that require grad once per region, as autocast's weight cache)
      and those of `_FP32_FUNCS` their lower-precision inputs cast to fp32. The casts are recorded by
      autograd, so what backward saves (e.g. the bf16 copy of an fp32 frozen weight) is counted.
      `torch.autocast(..., enabled=False)` regions (the deformable attention) pause it.
    """

    def __init__(self, autocast_dtype: torch.dtype | None = None, sdpa_kernel: Callable | None = None):
        super().__init__()
        self.autocast_stack: list[torch.dtype | None] = [autocast_dtype]
        self.sdpa_kernel = sdpa_kernel
        self.weight_cache: dict[int, Tensor] = {}

    def push_autocast(self, dtype: torch.dtype | None, enabled: bool) -> None:
        self.autocast_stack.append((dtype or self.autocast_stack[-1] or torch.bfloat16) if enabled else None)

    def pop_autocast(self) -> None:
        self.autocast_stack.pop()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is Tensor.backward:
            # The mode is off while its handler runs, but backward must run under it (checkpoint
            # recomputation replays the forward, which has to take the same paths): run the engine
            # directly (it is not a torch function) with the mode pushed back.
            loss = args[0]
            grad = kwargs.get("gradient", args[1] if len(args) > 1 else None)
            with self:
                grad = torch.ones_like(loss) if grad is None else grad
                torch.autograd.Variable._execution_engine.run_backward(
                    (loss,), (grad,), bool(kwargs.get("retain_graph")), False, (), allow_unreachable=True,
                    accumulate_grad=True)
            return None
        if func in (torch.tensor, torch.as_tensor):
            device = kwargs.pop("device", None)
            if device is not None and torch.device(device).type == "meta":
                return func(*args, **kwargs).to(device)
            if device is not None:
                kwargs["device"] = device
            return func(*args, **kwargs)
        dtype = self.autocast_stack[-1]
        if dtype is not None and func in _LOWP_FUNCS:
            args, kwargs = tree_map(lambda a: self._cast(a, dtype), (args, kwargs))
        elif dtype is not None and func in _FP32_FUNCS and kwargs.get("dtype") is None:
            args, kwargs = tree_map(
                lambda a: a.float() if isinstance(a, Tensor) and a.dtype in _LOWER else a, (args, kwargs))
        if func is F.scaled_dot_product_attention and self.sdpa_kernel is not None:
            q = args[0] if args else kwargs["query"]
            if q.device.type == "meta" and kwargs.get("attn_mask") is None and len(args) <= 3:
                return self.sdpa_kernel(*args, **kwargs)
        return func(*args, **kwargs)

    def _cast(self, a: Any, dtype: torch.dtype) -> Any:
        if not isinstance(a, Tensor) or not a.is_floating_point() or a.dtype == dtype or a.dtype == torch.float64:
            return a
        if a.is_leaf and a.requires_grad:
            cached = self.weight_cache.get(id(a))
            if cached is None:
                cached = self.weight_cache[id(a)] = a.to(dtype)
            return cached
        return a.to(dtype)


@contextlib.contextmanager
def autocast_on_meta(functions: MetaFunctions) -> Iterator[None]:
    """`torch.autocast(device_type="meta", ...)` (the fp32 regions of the deformable attention and the
    video noise, entered with the tensors' device type) drives the emulation instead of failing or being
    skipped: autocast has no meta backend."""
    real = torch.autocast

    class _Autocast(real):  # type: ignore[misc, valid-type]
        def __init__(self, device_type: str, dtype: torch.dtype | None = None, enabled: bool = True,
                     cache_enabled: bool | None = None):
            self._meta = device_type == "meta"
            if self._meta:
                self._meta_args = (dtype, enabled)
            else:
                super().__init__(device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

        def __enter__(self):
            if self._meta:
                functions.push_autocast(*self._meta_args)
                return self
            return super().__enter__()

        def __exit__(self, *exc):
            if self._meta:
                functions.pop_autocast()
                return False
            return super().__exit__(*exc)

    from vdit.models import precision
    from vdit.models.backbone import unet_features

    real_off = precision.autocast_off
    real_run = unet_features._run

    def run_with_state(fn, use_ckpt, *args, **kwargs):
        # torch.utils.checkpoint replays a block under the autocast state of its forward (captured per
        # device type; meta has none): do the same for the emulated state, or a block run with autocast
        # paused (bf16 frozen weights run natively) would be recomputed under the outer autocast.
        state = functions.autocast_stack[-1]

        def replay(*a, **k):
            functions.autocast_stack.append(state)
            try:
                return fn(*a, **k)
            finally:
                functions.autocast_stack.pop()
        return real_run(replay, use_ckpt, *args, **kwargs)

    torch.autocast = _Autocast
    # vdit's autocast_off skips autocast where it does not exist (meta); here it must pause the emulation
    precision.autocast_off = lambda device_type: torch.autocast(device_type=device_type, enabled=False)
    unet_features._run = run_with_state
    try:
        yield
    finally:
        torch.autocast = real
        precision.autocast_off = real_off
        unet_features._run = real_run
