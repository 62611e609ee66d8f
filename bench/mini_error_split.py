"""Split the miniature VD-IT's error (issue 19): the query it chooses vs the query an oracle would choose.

    python bench/mini_error_split.py                         # the built-in head on valid + heldout
    python bench/mini_error_split.py --weights runs/x/final --splits valid

For every expression of each split, the head's masks of ALL its Q queries are scored against the ground
truth (J&F per expression, DAVIS measures, the Ref-YouTube-VOS protocol at the benchmark's native size,
as `vdit mini eval`): (a) the query the model chooses (highest mean class score over the frames, spec
6.1), (b) the best of the Q queries (oracle choice). If (b) is high and (a) low, the head segments the
objects but does not pick the named one (grounding); if (b) is low too, the masks themselves are the
problem. Also printed: how often the choice is the oracle's, how many expressions land on the wrong
object (chosen J&F < 0.2 while the oracle's > 0.5), and with `--colours` a confusion table over both
splits: per colour the sentence names, the colour of the object the chosen mask lies on most (its pixels
over all frames, by the split's `meta.json` categories); with `--objects` chosen and oracle J&F by the
referred object's size (quartiles of its mean area over the frames) and by how often it touches another
object (the share of frames where its mask, grown by one pixel, meets another object's), both splits
together: whether the masks miss small objects or crowded ones.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WRONG_OBJECT = (0.2, 0.5)  # chosen J&F below the first while the oracle's is above the second


def query_jf(gt: np.ndarray, masks: np.ndarray) -> list[float]:
    """J&F ((J + F) / 2, `expression_jf`) of each query's masks against one expression's ground truth
    (gt: [T,H,W] bool, masks: [T,Q,H,W] bool)."""
    from vdit.evaluation.jf import expression_jf

    return [float(np.mean(expression_jf(gt, masks[:, k]))) for k in range(masks.shape[1])]


def split_scores(predictor, root: Path, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """Per expression: J&F of every query [E, Q] and the chosen query [E]."""
    from vdit.data.video_dataset import parse_meta_expressions
    from vdit.data.ytvos import meta_expressions_path

    videos, expressions = parse_meta_expressions(meta_expressions_path(root, split))
    by_video: dict[str, list] = {}
    for e in expressions:
        by_video.setdefault(e.video_id, []).append(e)
    categories = {vid: {int(k): o["category"] for k, o in v["objects"].items()}
                  for vid, v in json.loads((root / split / "meta.json").read_text())["videos"].items()}
    jf_all, chosen, landed, area, contact = [], [], [], [], []
    for n, (vid, exps) in enumerate(by_video.items()):
        if limit is not None and n >= limit:
            break
        frames, ids = read_clip(root, split, vid, videos[vid].frames)
        x, original = predictor.preprocess(list(frames))
        res = predictor.predict_clip(x[0], [e.text for e in exps], original, queries="all", check_values=False)
        for s, e in enumerate(exps):
            gt = np.isin(ids, list(e.obj_ids))
            jf_all.append(query_jf(gt, res.masks[s]))
            pick = int(np.argmax(res.query_scores[s]))
            chosen.append(pick)
            hits = np.bincount(ids[res.masks[s, :, pick]].ravel(), minlength=int(ids.max()) + 1)
            hits[0] = 0  # background
            target = categories[vid][int(next(iter(e.obj_ids)))].split()[0]
            on = categories[vid][int(hits.argmax())].split()[0] if hits.max() > 0 else "background"
            landed.append((target, on))
            area.append(float(gt.mean()))
            contact.append(touch_share(gt, ids))
    return {"jf": np.asarray(jf_all), "chosen": np.asarray(chosen), "landed": landed, "area": np.asarray(area),
            "contact": np.asarray(contact)}


def read_clip(root: Path, split: str, video_id: str, names) -> tuple[np.ndarray, np.ndarray]:
    """One video of a generated split on disk: frames [T,H,W,3] uint8 and object-id maps [T,H,W]."""
    from vdit.data.png import read_index_png
    from vdit.data.video_io import read_image
    from vdit.data.ytvos import FRAME_EXT, MASK_EXT

    frames = np.stack([np.asarray(read_image(root / split / "JPEGImages" / video_id / f"{f}{FRAME_EXT}")) for f in names])
    ids = np.stack([read_index_png(root / split / "Annotations" / video_id / f"{f}{MASK_EXT}") for f in names])
    return frames, ids


def touch_share(gt: np.ndarray, ids: np.ndarray) -> float:
    """Share of frames where the object (gt: [T,H,W] bool), grown by one pixel (the J&F code's disk of
    radius 1: the 4-neighbourhood), meets another object of the label maps (ids: [T,H,W], 0 = background)."""
    from vdit.evaluation.jf import dilate_disk

    others = (ids > 0) & ~gt
    return float(np.mean([(dilate_disk(g, 1) & o).any() for g, o in zip(gt, others)]))


def object_breakdown(scores: list[dict[str, np.ndarray]]) -> str:
    """Chosen / oracle J&F by the referred object's area quartile and by its share of frames touching
    another object."""
    jf = np.concatenate([s["jf"] for s in scores])
    chosen = np.concatenate([s["chosen"] for s in scores])
    area = np.concatenate([s["area"] for s in scores])
    contact = np.concatenate([s["contact"] for s in scores])
    picked, oracle = jf[np.arange(len(chosen)), chosen], jf.max(axis=1)
    edges = np.quantile(area, [0.25, 0.5, 0.75])
    bins = np.digitize(area, edges)
    groups = [(f"area quartile {q + 1} ({100 * area[bins == q].min():.1f}-{100 * area[bins == q].max():.1f} % "
               f"of the frame)", bins == q) for q in range(4)]
    groups += [("touches another object: never", contact == 0),
               ("touches another object: in <= half the frames", (contact > 0) & (contact <= 0.5)),
               ("touches another object: in > half the frames", contact > 0.5)]
    lines = [f"{'referred object':<48}{'n':>5}{'chosen J&F':>12}{'oracle J&F':>12}"]
    for name, m in groups:
        if m.any():
            lines.append(f"{name:<48}{int(m.sum()):>5}{100 * picked[m].mean():>12.1f}{100 * oracle[m].mean():>12.1f}")
    return "\n".join(lines)


def colour_confusion(landed: list[tuple[str, str]]) -> str:
    """Rows: the colour a sentence names; columns: the colour of the object its chosen mask lies on."""
    named = sorted({t for t, _ in landed})
    cols = named + sorted({o for _, o in landed} - set(named))
    lines = [f"{'named / landed on':<18}" + "".join(f"{c:>11}" for c in cols) + f"{'right':>8}"]
    for t in named:
        row = [sum(1 for a, b in landed if a == t and b == c) for c in cols]
        lines.append(f"{t:<18}" + "".join(f"{n:>11}" for n in row) + f"{100 * row[cols.index(t)] / sum(row):>7.0f}%")
    return "\n".join(lines)


def summarize(scores: dict[str, np.ndarray]) -> dict[str, float]:
    jf, chosen = scores["jf"], scores["chosen"]
    picked = jf[np.arange(len(chosen)), chosen]
    oracle = jf.max(axis=1)
    wrong = (picked < WRONG_OBJECT[0]) & (oracle > WRONG_OBJECT[1])
    return {"n": len(chosen), "chosen": 100 * picked.mean(), "oracle": 100 * oracle.mean(),
            "mean_query": 100 * jf.mean(), "same_as_oracle": 100 * (jf.argmax(axis=1) == chosen).mean(),
            "wrong_object": 100 * wrong.mean()}


def main(argv: list[str] | None = None) -> int:
    from vdit.inference.predictor import VDITPredictor
    from vdit.mini.builtin import load_builtin_model
    from vdit.mini.data import default_data_dir
    from vdit.mini.train import ensure_mini_benchmark
    from vdit.models.vdit import VDIT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="a save_pretrained folder (default: the built-in head)")
    ap.add_argument("--data", default=None, help="the generated benchmark (default: vdit mini's)")
    ap.add_argument("--splits", nargs="+", default=["valid", "heldout"])
    ap.add_argument("--limit", type=int, default=None, help="videos per split")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--colours", action="store_true", help="print the colour confusion table of the chosen masks")
    ap.add_argument("--objects", action="store_true",
                    help="print chosen / oracle J&F by the referred object's size and contact with others")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = ensure_mini_benchmark(args.data or default_data_dir())
    model = load_builtin_model() if args.weights is None else VDIT.from_pretrained(Path(args.weights).absolute())
    side = model.cfg.input_short_side
    # as `vdit mini eval`: the benchmark's native size, fp32, whole video as one clip
    predictor = VDITPredictor(model=model, device="cpu", window=None, short_side=side, max_size=None, amp=False)
    print(f"{'split':<10}{'n':>5}{'chosen J&F':>12}{'oracle J&F':>12}{'mean of Q':>11}{'choice=oracle %':>17}"
          f"{'wrong object %':>16}")
    landed, all_scores = [], []
    for split in args.splits:
        scores = split_scores(predictor, root, split, args.limit)
        landed += scores["landed"]
        all_scores.append(scores)
        s = summarize(scores)
        print(f"{split:<10}{s['n']:>5}{s['chosen']:>12.1f}{s['oracle']:>12.1f}{s['mean_query']:>11.1f}"
              f"{s['same_as_oracle']:>17.1f}{s['wrong_object']:>16.1f}", flush=True)
    if args.colours:
        print(colour_confusion(landed))
    if args.objects:
        print(object_breakdown(all_scores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
