"""Benchmark the multi-scale deformable attention implementations side by side.

Default size = VD-IT's encoder self-attention at inference: one 5-frame clip at 360x640 padded to
368x640, four levels s8/s16/s32/s64 = 46x80, 23x40, 12x20, 6x10 (S = 4900 positions per frame),
N = 5 frames, Lq = S queries, M = 8 heads of D = 32, P = 4 points per level.

Inputs are shaped like the encoder's: reference points at every pixel centre, offsets from the
standard ring initialisation plus Gaussian noise (``--offset-noise`` pixels), softmax weights. Every
implementation gets the same inputs; repeats are interleaved so background load hits all alike;
the table reports medians and the ratio to the ``grid_sample`` baseline, then checks that outputs and
gradients agree.

    python bench/deform_attn.py [--repeats 5] [--device cpu|cuda] [--threads N]

The fused Triton kernel (impl ``triton``) is timed only with ``--device cuda`` on a machine where it is
available; on CPU it could only run in Triton's interpreter (tests, not timing), so it is reported as
not timed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdit.models.ops import ms_deform_attn_triton  # noqa: E402
from vdit.models.ops.ms_deform_attn import available_impls, ms_deform_attn  # noqa: E402

LEVEL_SHAPES = [(46, 80), (23, 40), (12, 20), (6, 10)]  # 368x640 at s8, s16, s32, s64
FRAMES, HEADS, HEAD_DIM, POINTS = 5, 8, 32, 4
BASELINE = "grid_sample"
KINK_PX = 1e-3  # pixel-coordinate distance to an integer below which d locations is not compared
TOLERANCE = 1e-4  # relative (to the largest reference entry) agreement required in float32


def make_inputs(
    shapes: list[tuple[int, int]], n: int, m: int, d: int, p: int, noise_px: float, device: str, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Encoder-like inputs: queries at every pixel centre of every level, ring offsets plus noise."""
    g = torch.Generator().manual_seed(seed)
    spatial = torch.tensor(shapes, dtype=torch.long)
    sizes = spatial.prod(1)
    start = torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))
    s = int(sizes.sum())
    centres = []
    for h, w in shapes:
        ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        centres.append(torch.stack((xs.flatten(), ys.flatten()), dim=-1))
    ref = torch.cat(centres)  # [S, 2], same relative place on every level (no padding)
    angles = torch.arange(m) * (2 * math.pi / m)
    ring = torch.stack((angles.cos(), angles.sin()), -1)
    ring = ring / ring.abs().max(-1, keepdim=True).values
    offsets = ring.view(m, 1, 1, 2) * torch.arange(1, p + 1).view(1, 1, p, 1)  # pixels, [M, 1, P, 2]
    offsets = offsets + noise_px * torch.randn(n, s, m, len(shapes), p, 2, generator=g)
    size_wh = spatial.flip(-1).float().view(1, 1, 1, -1, 1, 2)
    loc = ref.view(1, s, 1, 1, 1, 2) + offsets / size_wh
    weights = torch.randn(n, s, m, len(shapes) * p, generator=g).softmax(-1).view(n, s, m, len(shapes), p)
    value = torch.randn(n, s, m, d, generator=g)
    return tuple(t.to(device) for t in (value, spatial, start, loc, weights))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_once(impl: str, inputs: tuple[torch.Tensor, ...], grad_out: torch.Tensor, device: str) -> tuple[float, float]:
    """One forward and one backward, in seconds."""
    value, spatial, start, loc, weights = inputs
    leaves = [t.detach().requires_grad_(True) for t in (value, loc, weights)]
    _sync(device)
    t0 = time.perf_counter()
    out = ms_deform_attn(leaves[0], spatial, start, leaves[1], leaves[2], impl=impl)
    _sync(device)
    t1 = time.perf_counter()
    out.backward(grad_out)
    _sync(device)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def outputs_and_grads(impl: str, inputs: tuple[torch.Tensor, ...], grad_out: torch.Tensor) -> list[torch.Tensor]:
    value, spatial, start, loc, weights = inputs
    leaves = [t.detach().requires_grad_(True) for t in (value, loc, weights)]
    out = ms_deform_attn(leaves[0], spatial, start, leaves[1], leaves[2], impl=impl)
    return [out.detach(), *torch.autograd.grad(out, leaves, grad_out)]


def select_impls(requested: list[str] | None, device: str) -> list[str]:
    """Implementations to time: ``requested`` or all registered ones, the Triton kernel only on CUDA."""
    impls = requested or [i for i in available_impls() if i != BASELINE]
    impls = [BASELINE] + [i for i in impls if i != BASELINE]  # every ratio is to the baseline
    name = ms_deform_attn_triton.IMPL_NAME
    if not device.startswith("cuda"):
        print(f"{name}: not timed: the fused Triton kernel needs a GPU for timing (--device cuda); on CPU it "
              "runs only in Triton's interpreter, which is for correctness tests")
        return [i for i in impls if i != name]
    if name not in available_impls():
        print(f"{name}: not timed: {ms_deform_attn_triton.unavailable_reason() or 'not registered'}")
        return [i for i in impls if i != name]
    return impls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--offset-noise", type=float, default=2.0, help="std of offset noise, in pixels")
    parser.add_argument("--impls", nargs="+", default=None, help=f"default: all of {available_impls()}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    impls = select_impls(args.impls, args.device)

    inputs = make_inputs(LEVEL_SHAPES, args.frames, HEADS, HEAD_DIM, POINTS, args.offset_noise, args.device)
    value, _, _, loc, _ = inputs
    s = value.shape[1]
    grad_out = torch.randn(args.frames, s, HEADS * HEAD_DIM, generator=torch.Generator().manual_seed(1)).to(args.device)
    outside = ((loc < 0) | (loc > 1)).any(-1).float().mean().item()
    print(
        f"ms_deform_attn: N={args.frames} Lq=S={s} levels={LEVEL_SHAPES} M={HEADS} D={HEAD_DIM} P={POINTS} "
        f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"points outside map={outside:.1%}"
    )

    for impl in impls:  # warm-up (allocator, lazy init)
        time_once(impl, inputs, grad_out, args.device)
    fwd: dict[str, list[float]] = {i: [] for i in impls}
    bwd: dict[str, list[float]] = {i: [] for i in impls}
    for _ in range(args.repeats):
        for impl in impls:
            f, b = time_once(impl, inputs, grad_out, args.device)
            fwd[impl].append(f)
            bwd[impl].append(b)

    base_f, base_b = statistics.median(fwd[BASELINE]), statistics.median(bwd[BASELINE])
    print(f"\nmedian of {args.repeats} (ratio = {BASELINE} time / impl time; >1 means faster)")
    print(f"{'impl':<14}{'forward ms':>12}{'backward ms':>13}{'total ms':>11}{'fwd x':>8}{'bwd x':>8}{'total x':>9}")
    for impl in impls:
        f, b = statistics.median(fwd[impl]), statistics.median(bwd[impl])
        print(
            f"{impl:<14}{f * 1e3:>12.1f}{b * 1e3:>13.1f}{(f + b) * 1e3:>11.1f}"
            f"{base_f / f:>8.2f}{base_b / b:>8.2f}{(base_f + base_b) / (f + b):>9.2f}"
        )

    reference = outputs_and_grads(BASELINE, inputs, grad_out)
    # The bilinear kernel has a kink where a pixel coordinate is an integer; there the two formulations
    # round the coordinate differently in float32 and may take opposite one-sided derivatives.
    size_wh = inputs[1].flip(-1).to(loc.dtype).view(1, 1, 1, -1, 1, 2)
    pixel = loc * size_wh - 0.5
    smooth = (pixel - pixel.round()).abs() > KINK_PX
    ok = True
    print(
        f"\nagreement with {BASELINE} (max |diff| / max |ref|): output, d value, d locations "
        f"(excluding {int((~smooth).sum())} coordinates within {KINK_PX} px of a kink), d weights"
    )
    for impl in impls:
        if impl == BASELINE:
            continue
        rel = []
        for k, (a, b) in enumerate(zip(outputs_and_grads(impl, inputs, grad_out), reference)):
            if k == 2:
                a, b = a[smooth], b[smooth]
            rel.append(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item())
        good = all(r < TOLERANCE for r in rel)
        ok &= good
        print(f"{impl:<14}" + "  ".join(f"{r:.1e}" for r in rel) + ("  OK" if good else "  MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
