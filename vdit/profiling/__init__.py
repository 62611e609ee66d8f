"""Compute and memory of VD-IT at full size without a GPU or weights: a step runs on the meta device under
`meta_accounting`, which counts live storages and FLOPs as CUDA would see them.

    meta_memory       live tensor storages (current / peak bytes) and the values of small meta tensors
    meta_autocast     CUDA's bf16 autocast policy emulated on meta; SDPA routing
    sdpa              the fused SDPA kernels a device picks, callable on meta
    meta_deform_attn  shape-only multi-scale deformable attention (the gather kernel's memory)
    accounting        `meta_accounting`: the above together, plus a FLOP counter
    random_model      VD-IT with random weights at a preset's widths, and a step's inputs
    flops             FLOPs per component and per training step

Used by bench/fullscale.py, bench/profile_fullscale.py and bench/cpu_official_setting.py.
"""
from vdit.profiling.accounting import meta_accounting
from vdit.profiling.flops import count_inference_flops, count_training_flops, inference_flops, training_flops
from vdit.profiling.random_model import (TEXTS, FixedMatcher, build_model, make_batch, meta_training_step,
                                         model_config)
from vdit.profiling.sdpa import sdpa_cpu_flash, sdpa_efficient

__all__ = [
    "TEXTS", "FixedMatcher", "build_model", "count_inference_flops", "count_training_flops", "inference_flops",
    "make_batch", "meta_accounting", "meta_training_step", "model_config", "sdpa_cpu_flash", "sdpa_efficient", "training_flops",
]
