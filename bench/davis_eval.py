"""Benchmark of the DAVIS evaluator on the shared fixture (8 sequences, both protocols).

    /work/venv/bin/python bench/davis_eval.py [--fixture ../shared/fixtures/davis] [--baseline-sequences judo]

Reports, for `vdit.evaluation.davis.evaluate_davis`:
  * wall time and CPU time per protocol and in total, peak RSS of the process (resource.getrusage);
  * the largest deviation from the official evaluator's figures (expected_public.json);
  * the ratio to the official evaluator's reference cost on this machine (about 270 s for both protocols,
    stated in the fixture README; the official needs OpenCV and scikit-image, which are not installed);
  * a side-by-side ratio against a literal port of the official algorithm (float64 volumes, one
    full-frame J and F per (prediction, object) pair and frame) on `--baseline-sequences`, both measured
    in this run. The literal port is run after ours, so it does not inflate our peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vdit.evaluation.davis import SUMMARY_KEYS, evaluate_davis, object_statistics  # noqa: E402
from vdit.evaluation.jf import boundary_f_measure, region_jaccard  # noqa: E402
from vdit.evaluation.masks_io import read_label_png  # noqa: E402

OFFICIAL_REFERENCE_S = 270.0  # fixture README: "about 4.5 minutes" for both protocols on this machine
METHODS = {"unsupervised": ("osvos", "rvos"), "semi-supervised": ("rvos", "osvos")}


def build_layout(fixture: Path, root: Path, task: str, sequences: list[str]) -> Path:
    """DAVIS root for `task` (symlinked GT masks, empty JPEGs); returns the results folder."""
    gt_method, res_method = METHODS[task]
    folder = "Annotations_unsupervised" if task == "unsupervised" else "Annotations"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")
    for seq in sequences:
        (root / folder / "480p" / seq).mkdir(parents=True)
        (root / "JPEGImages" / "480p" / seq).mkdir(parents=True)
        for png in sorted((fixture / gt_method / seq).glob("*.png")):
            os.symlink(png, root / folder / "480p" / seq / png.name)
            (root / "JPEGImages" / "480p" / seq / f"{png.stem}.jpg").write_bytes(b"")
    return fixture / res_method


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn):
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - wall, cpu_seconds() - cpu


def literal_port_sequence(gt_dir: Path, res_dir: Path, task: str) -> list[tuple]:
    """The official per-sequence computation, written the straightforward way (the baseline)."""
    from scipy.optimize import linear_sum_assignment

    frame_ids = sorted(p.stem for p in gt_dir.glob("*.png"))
    masks = np.stack([read_label_png(gt_dir / f"{f}.png") for f in frame_ids]).astype(np.float64)
    void = masks == 255
    masks[void] = 0
    n_gt = int(masks[0].max())
    gt = np.stack([masks == k for k in range(1, n_gt + 1)])
    if task == "semi-supervised":
        gt, frame_ids, void = gt[:, 1:-1], frame_ids[1:-1], None
    res = np.stack([read_label_png(res_dir / f"{f}.png") for f in frame_ids]).astype(np.float64)
    pred = [res == k for k in range(1, int(res.max()) + 1)]
    pred += [np.zeros_like(res, dtype=bool)] * max(0, n_gt - len(pred))
    n_t = len(frame_ids)

    def pair(i, j):
        vs = [None] * n_t if void is None else list(void)
        return (np.array([region_jaccard(gt[i, t], pred[j][t], vs[t]) for t in range(n_t)]),
                np.array([boundary_f_measure(gt[i, t], pred[j][t], vs[t]) for t in range(n_t)]))

    if task == "semi-supervised":
        return [pair(i, i) for i in range(n_gt)]
    j_all = np.zeros((len(pred), n_gt, n_t))
    f_all = np.zeros_like(j_all)
    for i in range(n_gt):
        for j in range(len(pred)):
            j_all[j, i], f_all[j, i] = pair(i, j)
    rows, cols = linear_sum_assignment(-(j_all.mean(axis=2) + f_all.mean(axis=2)) / 2)
    return list(zip(j_all[rows, cols], f_all[rows, cols]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", default=str(REPO.parent / "shared" / "fixtures" / "davis"))
    parser.add_argument("--baseline-sequences", default="judo",
                        help="comma-separated sequences for the side-by-side literal-port baseline ('' = skip)")
    args = parser.parse_args()
    fixture = Path(args.fixture)
    expected = json.loads((fixture / "expected_public.json").read_text())
    sequences = sorted({n.rsplit("_", 1)[0] for n in expected["unsupervised"]["per_object"]})
    baseline_seqs = [s for s in args.baseline_sequences.split(",") if s]

    with tempfile.TemporaryDirectory() as tmp:
        roots, results = {}, {}
        for task in METHODS:
            roots[task] = Path(tmp) / task
            results[task] = build_layout(fixture, roots[task], task, sequences)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"vdit evaluate_davis on {len(sequences)} fixture sequences ({', '.join(sequences)})")
        total_wall = total_cpu = 0.0
        for task in METHODS:
            got, wall, cpu = timed(lambda: evaluate_davis(roots[task], results[task], task=task))
            total_wall += wall
            total_cpu += cpu
            want = expected[task]
            dev = max([abs(got.summary[k] - want[k]) for k in SUMMARY_KEYS]
                      + [abs(got.per_object[n][m] - v[m]) for n, v in want["per_object"].items() for m in "JF"])
            print(f"  {task:<16} wall {wall:6.2f} s  cpu {cpu:6.2f} s  J&F {got.summary['J&F-Mean']:.6f}  "
                  f"max |dev| vs official {dev:.1e}")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  total            wall {total_wall:6.2f} s  cpu {total_cpu:6.2f} s  "
              f"peak RSS {peak_mb:.0f} MB (before evaluating: {rss_before / 1024:.0f} MB)")
        print(f"  vs official reference ~{OFFICIAL_REFERENCE_S:.0f} s: {OFFICIAL_REFERENCE_S / total_wall:.1f}x faster "
              f"(target >= 10x, i.e. < {OFFICIAL_REFERENCE_S / 10:.0f} s; peak RSS target < 1024 MB)")

        if baseline_seqs:
            print(f"side by side on {', '.join(baseline_seqs)} (both protocols): "
                  f"literal port of the official algorithm")
            ours_t = base_t = 0.0
            for task in METHODS:
                folder = "Annotations_unsupervised" if task == "unsupervised" else "Annotations"
                got, wall, _ = timed(lambda: evaluate_davis(roots[task], results[task], task=task,
                                                            sequences=baseline_seqs))
                ours_t += wall
                for seq in baseline_seqs:
                    pairs, bwall, _ = timed(lambda: literal_port_sequence(
                        roots[task] / folder / "480p" / seq, results[task] / seq, task))
                    base_t += bwall
                    for k, (j, f) in enumerate(pairs):
                        name = f"{seq}_{k + 1}"
                        assert abs(object_statistics(j)[0] - got.per_object[name]["J"]) < 1e-12, name
                        assert abs(object_statistics(f)[0] - got.per_object[name]["F"]) < 1e-12, name
            print(f"  ours {ours_t:.2f} s, literal port {base_t:.2f} s: {base_t / ours_t:.1f}x faster (same figures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
