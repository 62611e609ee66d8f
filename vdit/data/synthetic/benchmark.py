"""Writing the synthetic benchmark: train / valid / heldout splits of generated videos in the
Ref-YouTube-VOS layout, plus `synthetic_benchmark.json` (parameters and every video's structure)."""
from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

from vdit.data.synthetic.scene import DEFAULT_HEIGHT, DEFAULT_NUM_FRAMES, DEFAULT_WIDTH, generate_video
from vdit.data.synthetic.world import HELDOUT_PAIRS
from vdit.data.ytvos_writer import write_ytvos_video
from vdit.fileio import write_json
from vdit.errors import ConfigError

SPLIT_NAMES = ("train", "valid", "heldout")
FRAME_NAME_STEP = 5         # frame names 00000, 00005, ... as Ref-YTVOS (every 5th raw frame)
INFO_FILE = "synthetic_benchmark.json"


def video_rng(seed: int, split: str, index: int) -> random.Random:
    """The rng of one benchmark video: a pure function of (seed, split, index)."""
    return random.Random(f"vdit-synthetic/{seed}/{split}/{index}")


def _prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and any(root.iterdir()):
        if not (root / INFO_FILE).is_file():
            raise ConfigError(f"{root} exists, is not empty and is not a synthetic benchmark; choose another folder")
        if not overwrite:
            raise ConfigError(f"{root} already holds a synthetic benchmark (pass overwrite=True / --overwrite)")
        for name in (*SPLIT_NAMES, "meta_expressions"):
            if (root / name).is_dir():
                shutil.rmtree(root / name)
        (root / INFO_FILE).unlink()
    root.mkdir(parents=True, exist_ok=True)


def benchmark_params(*, num_train_videos: int, num_valid_videos: int, num_heldout_videos: int, num_frames: int,
                     height: int, width: int, seed: int, distinct_colours: bool = False) -> dict[str, Any]:
    """The `params` that `make_synthetic_benchmark` records in `synthetic_benchmark.json` for these
    arguments: a folder holds the benchmark of some arguments exactly when its params equal these.
    `distinct_colours` is recorded only when True, so older benchmarks keep their params."""
    params: dict[str, Any] = {
        "num_frames": num_frames, "height": height, "width": width, "seed": seed,
        "videos": {"train": num_train_videos, "valid": num_valid_videos, "heldout": num_heldout_videos},
        "heldout_pairs": sorted([list(p) for p in HELDOUT_PAIRS])}
    if distinct_colours:
        params["distinct_colours"] = True
    return params


def make_synthetic_benchmark(
    root: str | Path,
    *,
    num_train_videos: int = 200,
    num_valid_videos: int = 40,
    num_heldout_videos: int = 40,
    num_frames: int = DEFAULT_NUM_FRAMES,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    seed: int = 0,
    overwrite: bool = False,
    distinct_colours: bool = False,
) -> dict[str, Any]:
    """Write train / valid / heldout splits in the Ref-YouTube-VOS layout; returns a summary dict.
    `distinct_colours`: see `generate_video` (recorded in the parameters only when True)."""
    root = Path(root)
    counts = {"train": num_train_videos, "valid": num_valid_videos, "heldout": num_heldout_videos}
    if any(n < 0 for n in counts.values()):
        raise ConfigError(f"video counts must be >= 0, got {counts}")
    _prepare_root(root, overwrite)
    params = benchmark_params(num_train_videos=num_train_videos, num_valid_videos=num_valid_videos,
                              num_heldout_videos=num_heldout_videos, num_frames=num_frames, height=height,
                              width=width, seed=seed, distinct_colours=distinct_colours)
    info: dict[str, Any] = {"format": "vdit-synthetic-1", "params": params, "splits": {}}
    summary: dict[str, Any] = {"root": str(root), "params": params, "splits": {}}
    names = [f"{FRAME_NAME_STEP * i:05d}" for i in range(num_frames)]
    for split, n in counts.items():
        split_info: dict[str, Any] = {}
        kinds: dict[str, int] = {}
        n_exp = n_obj = 0
        for i in range(n):
            video = generate_video(video_rng(seed, split, i), num_frames=num_frames, height=height,
                                   width=width, heldout=(split == "heldout"),
                                   distinct_colours=distinct_colours)
            vid = f"{split}{i:05d}"
            cats = {o.obj_id: f"{o.colour} {o.shape}" for o in video.objects}
            write_ytvos_video(root, split, vid, video.frames, video.masks, video.expressions_dict(),
                              frame_names=names, categories=cats)
            split_info[vid] = video.info()
            n_exp += len(video.expressions)
            n_obj += len(video.objects)
            for e in video.expressions:
                kinds[e.kind] = kinds.get(e.kind, 0) + 1
        info["splits"][split] = split_info
        summary["splits"][split] = {"videos": n, "objects": n_obj, "expressions": n_exp,
                                    "expression_kinds": dict(sorted(kinds.items()))}
    write_json(root / INFO_FILE, info, indent=None, ensure_ascii=False)
    return summary
