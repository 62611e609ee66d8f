"""CLIP preprocessing, "fast" (tensor) vs "official" (truncated uint8 + PIL processor): pixels, tokens, time.

    python bench/clip_preprocess.py [--videos ../shared/videos/*.mp4] [--frames 20] [--repeats 5]

Frames: real videos (decoded with vdit.data.video_io; as they are and centre-cropped to 16:9; resized as
the predictor does: short side 360, long side at most 640; zero-padded to a multiple of 16 like the model)
and miniature-world clips (64 x 64, vdit.data.synthetic). They go through the backbone's
un-normalisation (spec 2.1), then both paths.
Prints, in 1/255 units of the un-normalised CLIP input: max |fast - official|, mean |.|, mean signed
(fast - official); then the relative change ||tok_fast - tok_off|| / ||tok_off|| of the CLIP image
tokens (last_hidden_state) of the random tiny tower (32 px) and the shipped miniature tower (64 px);
then the CPU time of both paths on `--frames` frames of 368 x 640 (same process, interleaved; median and
minimum of `--repeats`).
"""
from __future__ import annotations

import argparse
import glob
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"  # ../shared beside the checkout
PAD_TO = 16  # the model pads its input to a multiple of 16 (vdit.models.vdit)


def _unit_and_diffusion(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet-normalised [N,3,H,W] -> (x01, x) exactly as DiffusionBackbone.encode_visual computes them."""
    from vdit.models.inputs import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x01 = (frames * std + mean).clamp(0, 1)
    return x01, 2 * x01 - 1


def _video_frames(paths: list[str], n: int, aspect: float | None) -> torch.Tensor:
    """`n` frames spread over each video (centre-cropped to width/height = `aspect` when given), resized
    like the predictor and zero-padded in normalised space like the model."""
    from vdit.data.transforms import EVAL_MAX_SIZE, EVAL_SHORT_SIDE, resized_hw
    from vdit.data.video_io import read_video_frames
    from vdit.models.inputs import frames_to_tensor

    out = []
    for path in paths:
        frames, _ = read_video_frames(path)
        pick = np.linspace(0, len(frames) - 1, n).round().astype(int)
        x = frames_to_tensor([frames[i] for i in pick])
        if aspect is not None:
            h, w = x.shape[-2:]
            ch, cw = (h, round(h * aspect)) if w / h > aspect else (round(w / aspect), w)
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top : top + ch, left : left + cw]
        size = resized_hw(*x.shape[-2:], EVAL_SHORT_SIDE, EVAL_MAX_SIZE)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        ph, pw = (-size[0]) % PAD_TO, (-size[1]) % PAD_TO
        out.append(F.pad(x, (0, pw, 0, ph)))
    return torch.cat(out)


def _mini_frames(n_videos: int) -> torch.Tensor:
    from vdit.data.synthetic import generate_video, video_rng
    from vdit.mini.data import MINI_BENCHMARK
    from vdit.models.inputs import frames_to_tensor
    from PIL import Image

    out = []
    for i in range(n_videos):
        v = generate_video(video_rng(0, "valid", i), num_frames=MINI_BENCHMARK.num_frames,
                           height=MINI_BENCHMARK.height, width=MINI_BENCHMARK.width,
                           distinct_colours=MINI_BENCHMARK.distinct_colours)
        out.append(frames_to_tensor([Image.fromarray(f) for f in v.frames]))
    return torch.cat(out)


def _pixel_stats(fast: torch.Tensor, off: torch.Tensor, spec) -> str:
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    d = (fast.double() - off.double()) * std * 255  # back to 0..255 pixel units
    return f"max {d.abs().max():.2f}  mean {d.abs().mean():.3f}  mean signed {d.mean():+.3f}  (1/255 units)"


def _token_change(tower, fast: torch.Tensor, off: torch.Tensor) -> float:
    with torch.no_grad():
        a = tower(pixel_values=fast).last_hidden_state
        b = tower(pixel_values=off).last_hidden_state
    return float((a - b).norm() / b.norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="+", default=sorted(glob.glob(str(SHARED_VIDEOS / "*.mp4"))))
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--mini-videos", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from transformers import CLIPVisionModel

    from vdit.mini.preset import MINI_FOUNDATION_DIR
    from vdit.models.backbone.clip_image import clip_preprocess_fast, clip_preprocess_official
    from vdit.models.foundation import ClipImageSpec, _clip_image_spec, build_foundation_random, quiet_libraries
    from vdit.models.foundation_arch import CLIP_MEAN, CLIP_STD

    sets = {}
    if args.videos:
        sets["real videos, native aspect"] = _video_frames(args.videos, args.frames, None)
        # The clips are square; a 16:9 centre crop gives the usual 360 x 640 model input (padded to 368).
        sets["real videos, 16:9 crop"] = _video_frames(args.videos, args.frames, 16 / 9)
    sets["miniature clips"] = _mini_frames(args.mini_videos)
    tiny_tower = build_foundation_random("tiny").clip_vision
    mini_dir = MINI_FOUNDATION_DIR / "clip_vision"
    with quiet_libraries():
        mini_tower = CLIPVisionModel.from_pretrained(mini_dir).eval()
    specs = {"ViT-H 224": ClipImageSpec(224, 224, 224, CLIP_MEAN, CLIP_STD),
             "tiny 32": ClipImageSpec(32, 32, 32, CLIP_MEAN, CLIP_STD),
             "mini 64": _clip_image_spec(str(mini_dir))}
    towers = {"tiny 32": tiny_tower, "mini 64": mini_tower}

    for name, frames in sets.items():
        x01, x = _unit_and_diffusion(frames)
        print(f"{name}: {frames.shape[0]} frames {tuple(frames.shape[-2:])}")
        for sname, spec in specs.items():
            fast, off = clip_preprocess_fast(x01, spec), clip_preprocess_official(x, spec)
            line = f"  {sname:10s} pixels: {_pixel_stats(fast, off, spec)}"
            if sname in towers:
                line += f"  | tokens rel. change {_token_change(towers[sname], fast, off):.4f}"
            print(line)

    # Timing: `--frames` frames of 368 x 640 (real frames when given, random otherwise).
    real = sets.get("real videos, 16:9 crop")
    frames = real[: args.frames] if real is not None and real.shape[0] >= args.frames else \
        torch.randn(args.frames, 3, 368, 640)
    x01, x = _unit_and_diffusion(frames)
    spec = specs["ViT-H 224"]
    times: dict[str, list[float]] = {"fast": [], "official": []}
    for _ in range(args.repeats):
        for mode, fn in (("fast", lambda: clip_preprocess_fast(x01, spec)),
                         ("official", lambda: clip_preprocess_official(x, spec))):
            t0 = time.perf_counter()
            fn()
            times[mode].append(time.perf_counter() - t0)
    for stat in (statistics.median, min):  # min: the least disturbed run on a shared machine
        tf, to = stat(times["fast"]), stat(times["official"])
        print(f"CPU time ({stat.__name__} of {args.repeats}), {frames.shape[0]} frames {tuple(frames.shape[-2:])}, "
              f"{torch.get_num_threads()} threads: fast {tf * 1e3:.1f} ms, official {to * 1e3:.1f} ms "
              f"(official / fast = {to / tf:.2f})")


if __name__ == "__main__":
    main()
