"""Benchmark VDITPredictor on the tiny random model (CPU): sharing the text-independent work, and
memory of windowed (streamed) inference on long videos.

1. Throughput. One synthetic video (default 24 frames of 144x192, resized to short side 96, whole
   video as one clip), 1 and 4 referring expressions, three ways side by side in one run:
     none  - every sentence recomputes the CLIP image tokens and VAE latents (the baseline);
     loop  - `VDIT.encode_video` once per window, then one `VDIT.segment` per sentence;
     batch - `encode_video` once, all sentences in one `segment` (VisualFeatures expanded along B).
   Repeats are interleaved (so background load hits every mode alike); the table gives the median
   time, (frame, sentence) pairs per second and the speed-up over `none` at the same sentence count.

2. Memory. Windowed inference (`--window`, default 12 frames) over a frame *generator* of 60 and
   600 frames (240x320, short side 64), each case in a fresh subprocess. Peak RSS is sampled every
   millisecond from /proc/self/statm; the reported delta is peak minus the RSS after loading the
   model and running one warm-up window. `stream` consumes `iter_segment` window by window (masks
   dropped after use, as `vdit segment` does after writing them); `collect` is `.segment`, which keeps
   every mask of the video (expected to grow with the length, shown for contrast); `disk` is the
   whole `vdit segment` path (decode an mp4 written beforehand, PNG masks, overlay mp4, summary).

    python bench/inference.py [--repeats 3] [--threads 1] [--skip-memory]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEXTS = ["the red square moving right", "a dark background", "the object on the left", "a small bright patch"]
MODES = ("none", "loop", "batch")
MEMORY_LENGTHS = (60, 600)
MIB = 2 ** 20


def synthetic_frames(t: int, h: int, w: int, seed: int = 0):
    """Generator of uint8 RGB frames: a moving square on noise (frames are produced on demand)."""
    rng = np.random.default_rng(seed)
    for i in range(t):
        f = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        top, left = (5 + 3 * i) % (h - 30), (7 + 5 * i) % (w - 30)
        f[top:top + 30, left:left + 30] = (220, 40, 40)
        yield f


def build_weights(folder: Path) -> Path:
    from vdit.config import tiny_config
    from vdit.models.vdit import VDIT
    from vdit.testing import build_tiny_foundation

    root = build_tiny_foundation(folder / "foundation", seed=0)
    torch.manual_seed(0)
    return VDIT.from_config(tiny_config(root)).save_pretrained(folder / "weights")


# ---------------------------------------------------------------------------------------------- throughput


def throughput(weights: Path, frames: int, height: int, width: int, short: int, repeats: int) -> list[dict]:
    from vdit.inference.predictor import VDITPredictor
    from vdit.models.vdit import VDIT

    model = VDIT.from_pretrained(weights).eval()
    video = list(synthetic_frames(frames, height, width))
    predictors = {m: VDITPredictor(model=model, device="cpu", short_side=short, sharing=m) for m in MODES}
    configs = [(m, s) for s in (1, 4) for m in MODES]
    times: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    for m, s in configs:  # warm-up (first-call allocations, lazy init)
        predictors[m].segment(video[:2], TEXTS[:s])
    for _ in range(repeats):
        for m, s in configs:
            t0 = time.perf_counter()
            predictors[m].segment(video, TEXTS[:s])
            times[(m, s)].append(time.perf_counter() - t0)
    rows = []
    for m, s in configs:
        med = statistics.median(times[(m, s)])
        base = statistics.median(times[("none", s)])
        rows.append({"mode": m, "sentences": s, "seconds": med, "pairs_per_s": frames * s / med,
                     "speedup": base / med})
    return rows


# ---------------------------------------------------------------------------------------------- memory


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Sample the process RSS in a background thread; `.peak` is the maximum seen."""

    def __init__(self, interval: float = 1e-3):
        self.interval = interval
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def memory_case(weights: Path, frames: int, window: int, mode: str, height: int, width: int, short: int) -> dict:
    """Run in a fresh process: RSS peak delta of windowed inference over a `frames`-frame generator."""
    from vdit.inference.predictor import VDITPredictor

    pred = VDITPredictor(weights=weights, device="cpu", window=window, short_side=short)
    texts = TEXTS[:2]
    pred.segment(list(synthetic_frames(window, height, width, seed=1)), texts)  # warm-up window
    tmp = Path(tempfile.mkdtemp())
    if mode == "disk":  # the input video is written before the baseline is taken
        from vdit.inference.export import segment_to_dir
        from vdit.inference.io import VideoWriter, open_source

        with VideoWriter(tmp / "input.mp4", fps=25) as writer:
            for f in synthetic_frames(frames, height, width):
                writer.write(f)
        source = open_source(tmp / "input.mp4")
    base = _rss()
    t0 = time.perf_counter()
    with PeakRSS() as meter:
        if mode == "disk":
            summary = segment_to_dir(pred, source, texts, tmp / "out")
            fg = int(sum(sum(a) * height * width for a in summary["mask_area"]))
        elif mode == "stream":
            fg = 0
            for win in pred.iter_segment(synthetic_frames(frames, height, width), texts):
                fg += int(win.masks.sum())  # use the masks, then drop them
        else:
            res = pred.segment(synthetic_frames(frames, height, width), texts)
            fg = int(sum(r.masks.sum() for r in res))
    shutil.rmtree(tmp, ignore_errors=True)
    return {"frames": frames, "mode": mode, "peak_delta_mib": (meter.peak - base) / MIB,
            "baseline_mib": base / MIB, "seconds": time.perf_counter() - t0, "foreground_px": fg}


def memory(weights: Path, window: int, height: int, width: int, short: int, threads: int) -> list[dict]:
    rows = []
    for mode in ("stream", "disk", "collect"):
        for n in MEMORY_LENGTHS:
            cmd = [sys.executable, __file__, "--memory-case", str(n), mode, "--weights", str(weights),
                   "--window", str(window), "--threads", str(threads), "--mem-size", str(height), str(width),
                   "--mem-short", str(short)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on a busy box)")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, nargs=2, default=(144, 192), metavar=("H", "W"))
    ap.add_argument("--short-side", type=int, default=96)
    ap.add_argument("--window", type=int, default=12, help="window of the memory benchmark")
    ap.add_argument("--mem-size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    ap.add_argument("--mem-short", type=int, default=64)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--memory-case", nargs=2, metavar=("FRAMES", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.memory_case:  # child process of the memory benchmark
        n, mode = int(args.memory_case[0]), args.memory_case[1]
        print(json.dumps(memory_case(args.weights, n, args.window, mode, *args.mem_size, args.mem_short)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        weights = build_weights(Path(tmp))
        print(f"torch {torch.__version__}, CPU, {args.threads} thread(s), tiny random VD-IT")
        if not args.skip_throughput:
            h, w = args.size
            print(f"\nthroughput: {args.frames} frames {w}x{h} -> short side {args.short_side}, whole video as "
                  f"one clip, median of {args.repeats}")
            print(f"{'mode':<7}{'sentences':>10}{'seconds':>10}{'(frame,sent)/s':>16}{'speed-up':>10}")
            for r in throughput(weights, args.frames, h, w, args.short_side, args.repeats):
                print(f"{r['mode']:<7}{r['sentences']:>10}{r['seconds']:>10.2f}{r['pairs_per_s']:>16.1f}"
                      f"{r['speedup']:>9.2f}x")
        if not args.skip_memory:
            h, w = args.mem_size
            print(f"\nmemory: window {args.window}, frames {w}x{h} -> short side {args.mem_short}, 2 sentences, "
                  "peak RSS minus RSS after a warm-up window (fresh process per row)")
            print(f"{'mode':<9}{'frames':>7}{'peak delta MiB':>16}{'seconds':>10}")
            for r in memory(weights, args.window, h, w, args.mem_short, args.threads):
                print(f"{r['mode']:<9}{r['frames']:>7}{r['peak_delta_mib']:>16.1f}{r['seconds']:>10.1f}")


if __name__ == "__main__":
    main()
