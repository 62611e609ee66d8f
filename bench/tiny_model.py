"""Forward and forward+backward time of the tiny VD-IT preset on CPU (one training step's shape).

    python bench/tiny_model.py [--frames 5] [--size 96 160] [--repeats 5] [--threads 2]

Builds random tiny foundation models in a temp dir (real from_pretrained path), then times, side by
side in one run: inference forward (no grad), training forward (with matching), and training forward +
loss + backward, with and without activation checkpointing of the frozen UNet. Prints medians.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--size", type=int, nargs=2, default=(96, 160))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from vdit.config import apply_overrides, tiny_config
    from vdit.data.types import ClipBatch
    from vdit.models.vdit import VDIT
    from vdit.testing import build_tiny_foundation
    from vdit.training import TrainingWrapper

    root = build_tiny_foundation(tempfile.mkdtemp(prefix="vdit-bench-"))
    t, (h, w) = args.frames, args.size
    frames = torch.randn(1, t, 3, h, w)
    masks = torch.zeros(1, t, h, w)
    masks[..., h // 4 : h // 2, w // 4 : w // 2] = 1
    boxes = torch.tensor([0.375, 0.375, 0.25, 0.25]).expand(1, t, 4).clone()
    text = "the small red circle moving left"
    batch = ClipBatch(frames=frames, pad_mask=torch.zeros(1, t, h, w, dtype=torch.bool), masks=masks, boxes=boxes,
                      valid=torch.ones(1, t, dtype=torch.bool), sizes=torch.tensor([[h, w]]),
                      orig_sizes=torch.tensor([[h, w]]), texts=[text])

    def timed(fn) -> float:
        fn()  # warm-up
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    rows = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = VDIT.from_config(apply_overrides(tiny_config(root), [f"backbone.grad_ckpt={str(ckpt).lower()}"]))
        wrapper = TrainingWrapper.from_model(model)

        def infer():
            model.eval()
            with torch.no_grad():
                model.predict(frames, [text])

        def train_step():
            model.train()
            wrapper(batch)["loss"].backward()

        if not ckpt:
            rows.append(("inference forward", timed(infer)))
        rows.append((f"train fwd+loss+bwd{' (grad ckpt)' if ckpt else ''}", timed(train_step)))

    print(f"tiny preset, 1 clip x {t} frames at {h}x{w}, {args.threads} thread(s), median of {args.repeats}")
    for name, sec in rows:
        print(f"  {name:<36} {sec * 1000:8.1f} ms")
    print(f"  grad-ckpt / plain training step: {rows[2][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
