"""Helpers of the engine tests (imported by name, as tests/losses/_loss_helpers.py)."""
from __future__ import annotations

from pathlib import Path

import torch

# Small sizes keep every training step well under a second on one CPU thread.
SYNTH_VIDEOS = 3
SYNTH_FRAMES = 4
SYNTH_SIDE = 64


def tiny_args(tiny_root, synth_root, out, *sets: str) -> list[str]:
    """`vdit train` arguments of a short tiny_synthetic run (8 samples, T=2, batch 2, 2 epochs)."""
    args = ["train", "--preset", "tiny_synthetic", "--foundation-root", str(tiny_root),
            "--data-root", str(synth_root), "--out", str(out),
            "--set", "train.epochs=2", "--set", "data.max_samples=8", "--set", f"data.max_size={SYNTH_SIDE}"]
    for s in sets:
        args += ["--set", s]
    return args


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / "final" / "model.safetensors"))
