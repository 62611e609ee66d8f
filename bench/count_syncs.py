"""Host-device syncs of one inference call (issue 16: none inside a window), counted op by op.

    python bench/count_syncs.py                                   # full preset on cuda if present
    python bench/count_syncs.py --preset tiny --device cpu --frames 2 --size 64 96

Runs `VDITPredictor.segment` once to warm up (first calls upload constant tables), then once under
`vdit.engine.syncs.SyncCounter` and prints every sync with its kind and the innermost vdit source line.
The model runs in fp32 without autocast: the syncs do not depend on the precision, and autocast does not
reach the ops that composite functions such as einsum decompose into under a dispatch mode (PyTorch 2.13).
On a CPU-only machine every tensor counts as device memory, so the count is what an accelerator would
sync, except host->device uploads, which only a CUDA run sees (see vdit/engine/syncs.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fullscale as fs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from vdit.engine.syncs import SyncCounter
    from vdit.inference.predictor import VDITPredictor, resolve_device

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--preset", default="full")
    ap.add_argument("--frames", type=int, default=fs.CLIP_FRAMES)
    ap.add_argument("--size", type=int, nargs=2, default=fs.YTVOS_SIZE)
    ap.add_argument("--sentences", type=int, default=fs.SENTENCES)
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    model = fs.build_model(args.preset, device).eval()
    pred = VDITPredictor(model=model, device=device, window=None, short_side=None, max_size=None, amp=False,
                         sharing="batch", max_text_batch=args.sentences)
    video = torch.rand(args.frames, 3, *args.size, generator=torch.Generator().manual_seed(0))
    texts = list(fs.TEXTS[:args.sentences])
    pred.segment(video, texts)
    with SyncCounter() as syncs:
        pred.segment(video, texts)
    print(f"== host syncs of one predictor call ({args.preset}, {device.type}, {args.frames} frames "
          f"{args.size[0]}x{args.size[1]}, {len(texts)} sentences, one window): {syncs.count} ==")
    for where, n in sorted(syncs.summary().items(), key=lambda kv: -kv[1]):
        print(f"{n:>4}  {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
