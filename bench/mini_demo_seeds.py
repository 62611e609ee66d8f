"""Score `vdit demo`'s clips over many seeds (issue 19's demo target), for the built-in head or another.

    python bench/mini_demo_seeds.py                          # the built-in head, seeds 0-9
    python bench/mini_demo_seeds.py --weights runs/x/head --seeds 0 1 2

For each seed, the demo's own clip and two sentences (`vdit.mini.demo.demo_clip`: generated from the
seed, never chosen after looking at results) are segmented with the predictor as `vdit demo` sets it up
(the model's own input size, fp32, default window) and scored like the demo (`expression_jf`: mean over
the frames of the DAVIS region and boundary measures). Per sentence it also counts the frames whose mask
lies on a wrong object: the predicted mask overlaps another object of the clip more than the named one.
It also scores the masks of all Q queries, as `bench/mini_error_split.py` does for the benchmark: the
chosen query (highest mean class score over the frames: the demo's mask) against the best of the Q (an
oracle's choice), so a shortfall reads as choice (grounding) or masks. Prints one row per sentence and the
summary the issue asks for: the mean J&F, the two default sentences (seed 0) and the sentences whose mask
is on a wrong object in most frames, then the oracle's mean. `--json F` writes the rows.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def wrong_object_frames(pred: np.ndarray, ids: np.ndarray, target: int) -> int:
    """Frames where the mask's pixels lie more on one other object than on `target` (ids: [T,H,W] object
    ids, 0 = background; pred: [T,H,W] bool)."""
    wrong = 0
    for p, lab in zip(pred, ids):
        hits = np.bincount(lab[p].ravel(), minlength=int(ids.max()) + 1)
        on_target = hits[target] if target < len(hits) else 0
        others = [hits[o] for o in range(1, len(hits)) if o != target]
        if others and max(others) > on_target:
            wrong += 1
    return wrong


def main(argv: list[str] | None = None) -> int:
    from vdit.evaluation.jf import expression_jf
    from vdit.inference.predictor import VDITPredictor
    from vdit.mini.builtin import builtin_predictor
    from vdit.mini.demo import demo_clip
    from bench.mini_error_split import query_jf

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="a save_pretrained head folder (default: the built-in head)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the per-sentence rows here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"device": "cpu", "max_size": None, "amp": False}  # as `vdit demo`
    predictor = (builtin_predictor(**options) if args.weights is None
                 else VDITPredictor(weights=str(Path(args.weights).absolute()), **options))
    rows = []
    print(f"{'seed':>4} {'J&F':>6} {'oracle':>7} {'wrong frames':>13}  sentence")
    for seed in args.seeds:
        video, exps = demo_clip(seed)
        # `vdit demo` segments the whole clip as one window (`window=None`): one predict_clip call, here
        # with every query's masks, of which the demo's are the chosen query's (highest mean class score)
        x, original = predictor.preprocess(list(video.frames))
        every = predictor.predict_clip(x[0], [e.text for e in exps], original, queries="all", check_values=False)
        for s, exp in enumerate(exps):
            gt = video.masks == exp.obj_id
            chosen = every.masks[s, :, int(np.argmax(every.query_scores[s]))]
            j, f = expression_jf(list(gt), chosen)
            per_query = query_jf(gt, every.masks[s])
            wrong = wrong_object_frames(chosen, video.masks, exp.obj_id)
            rows.append({"seed": seed, "text": exp.text, "J&F": (j + f) / 2, "J": j, "F": f,
                         "oracle_J&F": max(per_query), "wrong_frames": wrong, "frames": int(gt.shape[0])})
            print(f"{seed:>4} {100 * rows[-1]['J&F']:>6.1f} {100 * max(per_query):>7.1f} {wrong:>6}/{gt.shape[0]:<6}  "
                  f"{exp.text}", flush=True)
    mean = float(np.mean([r["J&F"] for r in rows]))
    mostly_wrong = [r for r in rows if r["wrong_frames"] > r["frames"] / 2]
    defaults = [r for r in rows if r["seed"] == 0]
    print(f"mean J&F over {len(rows)} sentences: {100 * mean:.1f}; default demo (seed 0): "
          + ", ".join(f"{100 * r['J&F']:.1f}" for r in defaults)
          + f"; on a wrong object in most frames: {len(mostly_wrong)}"
          + "".join(f"\n  seed {r['seed']}: {r['text']!r} ({r['wrong_frames']}/{r['frames']} frames)"
                    for r in mostly_wrong))
    print("oracle's choice among all the queries: mean J&F "
          f"{100 * float(np.mean([r['oracle_J&F'] for r in rows])):.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "mean": mean, "mostly_wrong": len(mostly_wrong)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
