"""`vdit demo`: the built-in model segments a freshly generated clip for two sentences, no download.

    OUT/clip/00000.png ...            the generated input clip (never seen in training: its own random stream)
    OUT/masks/<i>/<frame:05d>.png     predicted masks of sentence i (0 / 255), via `vdit segment`'s writer
    OUT/overlay.mp4                   the clip with both sentences' masks tinted
    OUT/side_by_side.png              per sentence, a few frames: ground truth | prediction
    OUT/summary.json                  segment's summary + "sentences": text, J, F, J&F (fractions), paths

J and F are computed from the PNG masks as written, against the clip's generated ground truth, with the
benchmark scorer (`vdit.evaluation.jf.expression_jf`: DAVIS region and boundary measures, mean over frames).
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw

from vdit.errors import DataError

DEFAULT_OUT = "vdit-demo"
DEMO_SEED = 0
DEMO_STREAM = "vdit-demo"  # random stream name: demo clips never coincide with benchmark videos
NUM_SENTENCES = 2
DEMO_FPS = 6.0  # 12 frames -> a 2 s overlay video
CLIP_DIR = "clip"
SIDE_BY_SIDE = "side_by_side.png"
PICTURE_FRAMES = 4  # frames per sentence in the side-by-side picture
PICTURE_SCALE = 3  # nearest-neighbour upscaling of the 64x64 frames in the picture
PICTURE_GAP = 6
LABEL_HEIGHT = 14
BACKGROUND = (255, 255, 255)
LABEL_COLOUR = (0, 0, 0)


def demo_clip(seed: int = DEMO_SEED) -> tuple[Any, list[Any]]:
    """A generated clip at the miniature benchmark's format and two expressions referring to two
    different objects (the first expression of each of the first two referred objects)."""
    from vdit.data.synthetic import generate_video
    from vdit.mini.data import MINI_BENCHMARK

    video = generate_video(random.Random(f"{DEMO_STREAM}/{seed}"), num_frames=MINI_BENCHMARK.num_frames,
                           height=MINI_BENCHMARK.height, width=MINI_BENCHMARK.width,
                           distinct_colours=MINI_BENCHMARK.distinct_colours)
    chosen, seen = [], set()
    for exp in video.expressions:
        if exp.obj_id not in seen:
            chosen.append(exp)
            seen.add(exp.obj_id)
        if len(chosen) == NUM_SENTENCES:
            break
    return video, chosen


def write_clip(frames: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
    return folder


def read_masks(folder: Path, num_frames: int) -> np.ndarray:
    """The PNG masks written by the segment writer -> bool [T, H, W]."""
    from vdit.evaluation.masks_io import read_label_png

    return np.stack([read_label_png(folder / f"{t:05d}.png", DataError, "predicted mask") > 0
                     for t in range(num_frames)])


def side_by_side(frames: np.ndarray, gts: list[np.ndarray], preds: list[np.ndarray], labels: list[str]) -> Image.Image:
    """Per sentence one row of PICTURE_FRAMES frames, each shown as ground truth | prediction."""
    from vdit.inference.overlay import overlay_masks

    t, h, w = frames.shape[:3]
    picks = np.linspace(0, t - 1, min(PICTURE_FRAMES, t)).round().astype(int)
    ch, cw = h * PICTURE_SCALE, w * PICTURE_SCALE
    cell_w = 2 * cw + PICTURE_GAP // 2
    width = len(picks) * cell_w + (len(picks) + 1) * PICTURE_GAP
    row_h = LABEL_HEIGHT + ch + PICTURE_GAP
    canvas = Image.new("RGB", (width, LABEL_HEIGHT + len(labels) * row_h + PICTURE_GAP), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PICTURE_GAP, 2), "each pair: ground truth | prediction", fill=LABEL_COLOUR)
    for s, label in enumerate(labels):
        y = LABEL_HEIGHT + s * row_h
        draw.text((PICTURE_GAP, y + 1), label, fill=LABEL_COLOUR)
        for k, f in enumerate(picks):
            x = PICTURE_GAP + k * (cell_w + PICTURE_GAP)
            for j, masks in enumerate((gts[s], preds[s])):
                stack = np.zeros((NUM_SENTENCES, h, w), dtype=bool)
                stack[s % NUM_SENTENCES] = masks[f]  # the sentence's own overlay colour
                img = Image.fromarray(overlay_masks(frames[f], stack)).resize((cw, ch), Image.NEAREST)
                canvas.paste(img, (x + j * (cw + PICTURE_GAP // 2), y + LABEL_HEIGHT))
    return canvas


def run_demo(out: str | Path = DEFAULT_OUT, seed: int = DEMO_SEED, device: str = "cpu",
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate the demo clip, segment it with the built-in model, write the outputs (module docstring)
    and return the summary."""
    from vdit.evaluation.jf import expression_jf
    from vdit.fileio import write_text_atomic
    from vdit.inference.export import MASKS_DIR, SUMMARY_NAME, prepare_output, segment_to_dir, summary_json
    from vdit.inference.io import open_source
    from vdit.mini.builtin import builtin_predictor, check_builtin_weights

    start = time.perf_counter()
    check_builtin_weights()
    out_dir, probe = prepare_output(out)
    probe.rmdir()
    video, exps = demo_clip(seed)
    texts = [e.text for e in exps]
    clip = write_clip(video.frames, out_dir / CLIP_DIR)
    predictor = builtin_predictor(device=device, max_size=None, amp=False)  # the model's own input size
    summary = segment_to_dir(predictor, open_source(clip, fps=DEMO_FPS), texts, out_dir,
                             extra={"weights": "built-in", "demo_seed": seed})
    t = video.frames.shape[0]
    gts = [video.masks == e.obj_id for e in exps]
    preds = [read_masks(out_dir / MASKS_DIR / str(i), t) for i in range(len(exps))]
    sentences = []
    for i, (exp, gt, pred) in enumerate(zip(exps, gts, preds)):
        j, f = expression_jf(list(gt), pred)
        sentences.append({"text": exp.text, "J": round(j, 4), "F": round(f, 4), "J&F": round((j + f) / 2, 4),
                          "object_id": exp.obj_id, "masks": summary["paths"]["masks"][i]})
    labels = [f"{i + 1}: {s['text']}  (J&F {100 * s['J&F']:.1f})" for i, s in enumerate(sentences)]
    side_by_side(video.frames, gts, preds, labels).save(out_dir / SIDE_BY_SIDE)
    summary["sentences"] = sentences
    summary["paths"] = {**summary["paths"], "clip": f"{CLIP_DIR}/%05d.png", "side_by_side": SIDE_BY_SIDE}
    summary["demo_elapsed_s"] = round(time.perf_counter() - start, 2)
    write_text_atomic(out_dir / SUMMARY_NAME, summary_json(summary))
    for i, s in enumerate(sentences):
        echo(f"[{i + 1}] {s['text']!r}: J&F {100 * s['J&F']:.1f} (J {100 * s['J']:.1f}, F {100 * s['F']:.1f})")
    echo(f"wrote {out_dir}/ ({CLIP_DIR}/, {MASKS_DIR}/, overlay.mp4, {SIDE_BY_SIDE}, {SUMMARY_NAME}) "
         f"in {summary['demo_elapsed_s']:.1f}s")
    return summary

