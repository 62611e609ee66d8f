"""Where the time of a full-scale inference call and training step goes (GPU or CPU), per component.

    python bench/profile_fullscale.py                        # inference + training, 368x640 / 352x640
    python bench/profile_fullscale.py --only inference --variants autocast,native,channels_last
    python bench/profile_fullscale.py --preset tiny --device cpu --frames 2 --size 64 96   # smoke run

For each variant (levers switched on cumulatively, in the order given) it prints the median wall time, and
for the last one a per-component table: inclusive device time of each foundation model, the UNet blocks,
the trainable backbone parts and the head's parts, from CUDA events recorded by forward hooks (host
timer on CPU), next to the counted FLOPs where `bench/fullscale.py` counts them; then the torch profiler's
top kernels and the GPU busy time against the wall time (a large gap means the run waits on the host:
kernel launches, Python, host-device syncs).

Variants: autocast (bf16 frozen weights, every module under bf16 autocast: the frozen ones upcast their
norms to fp32), native (the default: frozen bf16 modules run with autocast off, `DiffusionBackbone._native`),
channels_last (VAE and UNet weights in channels-last memory format),
cudnn (`torch.backends.cudnn.benchmark`), gridsample (the `grid_sample` deformable-attention kernel on
this device instead of `gather`), triton (the fused Triton deformable-attention kernel), hostclip (the
official CLIP preprocessing through the PIL processor on the host, as before issue 16) / deviceclip (the
same pixels computed on the device, the default), compile_vae (`torch.compile` of the VAE encoder only),
compile (`model.backbone.compile_unet()`), fullcompile (compile also the head's deformable transformer).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fullscale as fs  # noqa: E402
from vdit.profiling import TEXTS, build_model, inference_flops, make_batch  # noqa: E402

VARIANTS = ("autocast", "native", "hostclip", "deviceclip", "cudnn", "gridsample", "triton", "channels_last",
            "compile_vae", "compile", "fullcompile")
_NATIVE = None


def component_modules(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Disjoint groups of modules whose forward time is summed (inclusive of their children)."""
    bb = model.backbone
    unet = bb.unet
    groups: dict[str, list[nn.Module]] = {
        "VAE encoder": [bb.vae.encoder, bb.vae.quant_conv],
        "CLIP vision": [bb.clip_vision],
        "T2V text encoder": [bb.t2v_text_encoder],
        "UNet (blocks run)": [m for m in bb.unet_blocks()],
        "UNet time embedding": [unet.time_embedding],
        "prompt projection": [bb.prompt],
        "video noise": [bb.noise],
        "level projections": list(bb.level_projections),
        "RoBERTa + text proj": [model.text_encoder, model.text_proj],
        "queries (text fusion)": [model.queries],
        "input projections": list(model.input_proj),
        "deformable encoder": [model.transformer.encoder],
        "deformable decoder": [model.transformer.decoder],
        "mask head (dynamic)": [model.mask_head],
        "mask refinement (MSO)": [model.mask_optimiser],
    }
    return groups


class ComponentTimer:
    """Forward hooks that record (start, end) CUDA events (or host times) per module group."""

    def __init__(self, groups: dict[str, list[nn.Module]], device: torch.device):
        self.device = device
        self.pairs: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
        self.handles = []
        self.active = False
        for name, mods in groups.items():
            for m in mods:
                self.handles.append(m.register_forward_pre_hook(self._pre(name, m)))
                self.handles.append(m.register_forward_hook(self._post(name, m)))
        self._open: dict[int, Any] = {}

    def _now(self):
        if self.device.type == "cuda":
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def _pre(self, name, m):
        def hook(*_):
            if self.active:
                self._open[id(m)] = self._now()
        return hook

    def _post(self, name, m):
        def hook(*_):
            if self.active and id(m) in self._open:
                self.pairs[name].append((self._open.pop(id(m)), self._now()))
        return hook

    def totals_ms(self, calls: int) -> dict[str, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return {k: ms for k, v in self.pairs.items() if (ms := self._elapsed(v, calls)) is not None}
        return {k: sum((b - a) * 1000 for a, b in v) / calls for k, v in self.pairs.items()}

    @staticmethod
    def _elapsed(pairs: list[tuple[Any, Any]], calls: int) -> float | None:
        """Summed CUDA-event time per call, or None when an event was never recorded (a module whose
        parent is compiled runs inside the graph: its hooks are skipped; its time is in the parent's)."""
        try:
            return sum(a.elapsed_time(b) for a, b in pairs) / calls
        except (RuntimeError, ValueError):
            return None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def apply_variant(name: str, model: nn.Module, device: torch.device) -> None:
    global _NATIVE
    from vdit.models.backbone.diffusion_backbone import DiffusionBackbone
    from vdit.models.ops import ms_deform_attn as msda

    if _NATIVE is None:
        _NATIVE = DiffusionBackbone._native
    if name == "autocast":  # the baseline: frozen bf16 modules under the caller's autocast
        DiffusionBackbone._native = lambda self, module: contextlib.nullcontext()
    elif name == "native":
        DiffusionBackbone._native = _NATIVE
    elif name == "channels_last":
        for part in (model.backbone.vae, model.backbone.unet):  # 2-D convolutions only (Conv3d weights are 5-D)
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
    elif name == "cudnn":
        torch.backends.cudnn.benchmark = True
    elif name == "gridsample":
        msda.set_default_impl("grid_sample", device_type=device.type)
    elif name == "triton":
        msda.set_default_impl("triton", device_type=device.type)
    elif name in ("hostclip", "deviceclip"):
        from vdit.models.backbone import clip_image, diffusion_backbone

        on_device = None if name == "deviceclip" else False
        diffusion_backbone.clip_preprocess_official = functools.partial(clip_image.clip_preprocess_official,
                                                                        on_device=on_device)
    elif name == "compile_vae":
        model.backbone.compile_vae_encoder()
    elif name == "compile":
        model.backbone.compile_unet()
    elif name == "fullcompile":
        model.transformer.encoder.compile()
        model.transformer.decoder.compile()


def profile_table(fn: Callable[[], Any], device: torch.device, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    fs._sync(device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        fn()
        fs._sync(device)
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=rows, max_name_column_width=70))
    if device.type == "cuda":
        busy = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in events) / 1e3
        print(f"GPU busy (sum of kernel times) {busy:.1f} ms vs wall {wall * 1e3:.1f} ms under the profiler")


def print_components(timer: ComponentTimer, calls: int, wall_ms: float, flops: dict[str, float] | None) -> None:
    tot = timer.totals_ms(calls)
    print(f"{'component (forward, inclusive)':<30}{'ms':>9}{'share':>8}{'TFLOP':>9}{'TFLOP/s':>9}")
    for k, v in sorted(tot.items(), key=lambda kv: -kv[1]):
        f = (flops or {}).get(k)
        extra = f"{f:>9.2f}{f / (v / 1e3):>9.0f}" if f else ""
        print(f"{k:<30}{v:>9.1f}{v / wall_ms:>8.1%}{extra}")
    print(f"{'sum of components':<30}{sum(tot.values()):>9.1f}{sum(tot.values()) / wall_ms:>8.1%}")
    print(f"{'wall':<30}{wall_ms:>9.1f}")


def run_inference(args, device: torch.device) -> None:
    from vdit.inference.predictor import VDITPredictor

    t, (h, w), s = args.frames, tuple(args.size), args.sentences
    texts = list(TEXTS[:s])
    video = torch.rand(t, 3, h, w, generator=torch.Generator().manual_seed(0))
    model = build_model(args.preset, device, frozen_dtype=torch.bfloat16).eval()
    pred = VDITPredictor(model=model, device=device, window=None, short_side=None, max_size=None, amp=True,
                         amp_dtype=torch.bfloat16, sharing="batch", max_text_batch=s)
    fn = lambda: pred.segment(video, texts)  # noqa: E731
    print(f"\n== Inference ({args.preset}, {device.type}, bf16 frozen + autocast, shared + batched): "
          f"{t} frames {h}x{w}, {s} sentences ==")
    for v in args.variants:
        apply_variant(v, model, device)
        t0 = time.perf_counter()
        fn()
        fs._sync(device)
        first = time.perf_counter() - t0
        sec, peak, _ = fs.timed(fn, device, args.repeats, args.warmup)
        print(f"+ {v:<12} {sec * 1e3:9.1f} ms/video  {t * s / sec:8.1f} (f,s)/s  peak {peak / fs.GB:6.2f} GB  "
              f"(first call {first:.1f} s)", flush=True)
    fl = None
    if args.flops:
        f = inference_flops(args.preset, t, (h + (-h) % 16, w + (-w) % 16))["clip"]
        fl = {"VAE encoder": f["vae_encoder"], "CLIP vision": f["clip_vision"], "UNet (blocks run)": f["unet_no_tail"] * s}
    timer = ComponentTimer(component_modules(model), device)
    timer.active = True
    calls = 3
    fs._sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    fs._sync(device)
    wall = (time.perf_counter() - t0) / calls * 1e3
    timer.active = False
    print_components(timer, calls, wall, fl)
    timer.remove()
    profile_table(fn, device, args.rows)


def run_training(args, device: torch.device) -> None:
    from vdit.training import TrainingWrapper

    t, (h, w) = args.train_frames, tuple(args.train_size)
    model = build_model(args.preset, device, frozen_dtype=torch.bfloat16).train()
    model.backbone.cfg.grad_ckpt = args.grad_ckpt
    train_step = TrainingWrapper.from_model(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = make_batch(torch.randn(1, t, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device))
    marks: dict[str, list] = defaultdict(list)

    def mark():
        if device.type == "cuda":
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def step(record: bool = False):
        m0 = mark() if record else None
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = train_step.matched_outputs(batch)
            m1 = mark() if record else None
            loss = train_step.criterion(out, batch)["loss"]
        m2 = mark() if record else None
        loss.backward()
        m3 = mark() if record else None
        opt.step()
        opt.zero_grad(set_to_none=True)
        if record:
            marks["forward"].append((m0, m1))  # the model, matching and refinement of the matched query
            marks["loss"].append((m1, m2))
            marks["backward"].append((m2, m3))
            marks["optimizer"].append((m3, mark()))
        return loss

    print(f"\n== Training step ({args.preset}, {device.type}, bf16 frozen + autocast, grad ckpt "
          f"{args.grad_ckpt}): batch 1, {t} frames {h}x{w} ==")
    for v in args.variants:
        if v == "fullcompile":
            continue
        apply_variant(v, model, device)
        t0 = time.perf_counter()
        step()
        fs._sync(device)
        first = time.perf_counter() - t0
        sec, peak, _ = fs.timed(step, device, args.repeats, args.warmup)
        print(f"+ {v:<12} {sec * 1e3:9.1f} ms/step  peak {peak / fs.GB:6.2f} GB  (first call {first:.1f} s)",
              flush=True)
    calls = 3
    timer = ComponentTimer(component_modules(model), device)
    timer.active = True
    fs._sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        step(record=True)
    fs._sync(device)
    wall = (time.perf_counter() - t0) / calls * 1e3
    timer.active = False
    if device.type == "cuda":
        phases = {k: sum(a.elapsed_time(b) for a, b in v) / calls for k, v in marks.items()}
    else:
        phases = {k: sum((b - a) * 1e3 for a, b in v) / calls for k, v in marks.items()}
    print("phases: " + ", ".join(f"{k} {v:.1f} ms" for k, v in phases.items()) + f"; wall {wall:.1f} ms")
    print_components(timer, calls, phases["forward"], None)
    timer.remove()
    profile_table(step, device, args.rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--preset", default="full")
    ap.add_argument("--only", choices=("inference", "training"), action="append")
    ap.add_argument("--variants", default="autocast,native",
                    help=f"comma-separated, applied cumulatively, from {VARIANTS}")
    ap.add_argument("--frames", type=int, default=fs.CLIP_FRAMES)
    ap.add_argument("--size", type=int, nargs=2, default=fs.YTVOS_SIZE)
    ap.add_argument("--sentences", type=int, default=fs.SENTENCES)
    ap.add_argument("--train-frames", type=int, default=fs.TRAIN_FRAMES)
    ap.add_argument("--train-size", type=int, nargs=2, default=fs.TRAIN_SIZE)
    ap.add_argument("--grad-ckpt", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rows", type=int, default=25, help="profiler table rows")
    ap.add_argument("--no-flops", dest="flops", action="store_false")
    args = ap.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variants {bad}; choose from {VARIANTS}")
    from vdit.inference.predictor import resolve_device

    device = resolve_device(args.device)
    only = set(args.only or ("inference", "training"))
    if "inference" in only:
        run_inference(args, device)
    if "training" in only:
        run_training(args, device)


if __name__ == "__main__":
    main()
