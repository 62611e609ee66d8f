"""DAVIS-2017 evaluation (semi-supervised and unsupervised protocols), as `davis2017-evaluation` scores it.

Layout read (spec 6.2 / 8), for a DAVIS root R and a results folder P:

    R/JPEGImages/<res>/<seq>/*.jpg              only counted (a sequence must have frames)
    R/Annotations/<res>/<seq>/<frame>.png       ground truth, semi-supervised task
    R/Annotations_unsupervised/<res>/<seq>/...  ground truth, unsupervised task (Ref-DAVIS17)
    R/ImageSets/2017/<subset>.txt               sequence list (ImageSets/2019 for unsupervised test sets)
    P/<seq>/<frame>.png                         results: palette/grey PNG, pixel value = object id

Semantics reproduced from the official code (`davis2017/{davis,evaluation,metrics,utils}.py`):

* GT frames are the PNGs of the GT folder (sorted); results are read for the same frame ids.
* GT value 255 is void: it becomes background. The unsupervised task excludes void pixels from J and F;
  the semi-supervised task passes no void mask (void pixels count as background there).
* GT objects are 1..max(first GT frame); predicted objects are 1..max(value over all result frames).
* semi-supervised: first and last frame dropped, predicted id k scores GT object k, missing ids are
  zero-padded, an id above the number of GT objects is an error.
* unsupervised: at most 20 predicted ids, fewer than the GT objects are zero-padded; J and F of every
  (prediction, GT object) pair, Hungarian assignment maximising mean_t (J+F)/2. As in the official code,
  the k-th matched pair in *prediction* order is reported as object ``<seq>_<k>`` (this only permutes the
  per-object names within a sequence; the averages do not depend on it).
* per-object statistics `object_statistics` (mean, recall, decay with the uint8 index quirk), averaged
  over all objects of all sequences; J&F-Mean = (J-Mean + F-Mean) / 2.

Unlike the official code, the evaluator works one frame at a time on uint8 label maps, and each object's
boundary is computed once per frame (see `vdit.evaluation.jf`), so memory stays small and it is fast.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vdit.errors import DataError, EvaluationError
from vdit.evaluation.jf import BOUNDARY_THRESHOLD, pairwise_jf
from vdit.evaluation.masks_io import png_stems, read_label_png

TASKS = ("semi-supervised", "unsupervised")
SUBSETS = ("train", "val", "test-dev", "test-challenge")
DEFAULT_RESOLUTION = "480p"
DEFAULT_SUBSET = "val"
VOID_LABEL = 255
# Unsupervised task: the most predicted ids a sequence may use (`max_n_proposals`).
MAX_PROPOSALS = 20
# db_statistics: a frame counts for the recall when its value is above this.
RECALL_THRESHOLD = 0.5
# db_statistics: the decay compares the first and the last of this many temporal bins.
DECAY_BINS = 4
# db_statistics adds this before rounding the bin edges.
DECAY_EDGE_EPS = 1e-10
# db_statistics casts the bin edges to uint8, so they wrap modulo 256.
UINT8_WRAP = 256
# Ref-DAVIS17: four annotation sets, scored separately then averaged (spec 6.2).
REF_DAVIS_SETS = 4
SUMMARY_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")

ProgressFn = Callable[[str], None]


# --------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------
def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return float(np.nanmean(values))


def decay_bin_edges(n_frames: int) -> list[int]:
    """Bin edges of `db_statistics`: round(linspace(1, N, 5) + 1e-10) - 1, cast to uint8.

    The uint8 cast wraps modulo 256, so for N > 256 the edges are wrong (e.g. N = 300 gives
    [0, 75, 150, 224, 43]). This is reproduced on purpose: it is what every published DAVIS number used.
    """
    edges = np.round(np.linspace(1, n_frames, DECAY_BINS + 1) + DECAY_EDGE_EPS) - 1
    return [int(e) % UINT8_WRAP for e in edges]


def object_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame values, as `db_statistics` computes them.

    Mean = nanmean(v); Recall = nanmean(v > 0.5); Decay = nanmean(first bin) - nanmean(last bin), the bins
    being ``v[e[k] : e[k+1] + 1]`` with the uint8 edges of `decay_bin_edges`. The ``+ 1`` is uint8
    arithmetic as well (255 + 1 wraps to 0, giving an empty last bin and a NaN decay when N >= 256).
    """
    v = np.asarray(per_frame, dtype=np.float64)
    mean = _nanmean(v)
    recall = _nanmean(v > RECALL_THRESHOLD)
    edges = decay_bin_edges(len(v))
    bins = [v[edges[k]: (edges[k + 1] + 1) % UINT8_WRAP] for k in range(DECAY_BINS)]
    decay = _nanmean(bins[0]) - _nanmean(bins[-1])
    return mean, recall, decay


# --------------------------------------------------------------------------------------------------------
# Dataset layout
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DavisLayout:
    """Paths of a DAVIS root for one task / subset / resolution."""

    root: Path
    task: str
    subset: str = DEFAULT_SUBSET
    resolution: str = DEFAULT_RESOLUTION

    @property
    def image_dir(self) -> Path:
        return self.root / "JPEGImages" / self.resolution

    @property
    def mask_dir(self) -> Path:
        folder = "Annotations" if self.task == "semi-supervised" else "Annotations_unsupervised"
        return self.root / folder / self.resolution

    @property
    def imageset_file(self) -> Path:
        test_sets = ("test-dev", "test-challenge")
        year = "2019" if self.task == "unsupervised" and self.subset in test_sets else "2017"
        return self.root / "ImageSets" / year / f"{self.subset}.txt"


def make_layout(davis_root: Path | str, task: str, subset: str = DEFAULT_SUBSET,
                resolution: str = DEFAULT_RESOLUTION) -> DavisLayout:
    """Validate the task/subset and the presence of the DAVIS folders; DataError names what is missing."""
    if task not in TASKS:
        raise EvaluationError(f"unknown DAVIS task {task!r}; expected one of {', '.join(TASKS)}")
    if subset not in SUBSETS:
        raise EvaluationError(f"unknown DAVIS subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    layout = DavisLayout(Path(davis_root), task, subset, resolution)
    if not layout.root.is_dir():
        raise DataError(f"DAVIS root not found: {layout.root}")
    if not layout.mask_dir.is_dir():
        raise DataError(f"ground-truth folder for the {task} task not found: {layout.mask_dir}")
    return layout


def list_sequences(layout: DavisLayout, sequences: Sequence[str] | None = None) -> list[str]:
    """The sequences to score: `sequences` if given, else the ImageSets list (blank lines skipped)."""
    if sequences is None:
        if not layout.imageset_file.is_file():
            raise DataError(f"sequence list not found: {layout.imageset_file}")
        try:
            lines = layout.imageset_file.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(f"sequence list {layout.imageset_file} is not UTF-8 text: {exc}") from None
        names = [line.strip() for line in lines if line.strip()]
        if not names:
            raise DataError(f"sequence list {layout.imageset_file} is empty")
    else:
        names = [s.strip() for s in sequences if s.strip()]
        if not names:
            raise EvaluationError("empty sequence list: give at least one sequence name")
    return list(dict.fromkeys(names))  # drop duplicates, keep order (the official keys a dict by name)


def gt_frame_ids(layout: DavisLayout, sequence: str) -> list[str]:
    """Frame ids of a sequence's GT masks, checking the JPEG frames exist as the official does."""
    image_dir = layout.image_dir / sequence
    n_images = len(list(image_dir.glob("*.jpg"))) if image_dir.is_dir() else 0
    if n_images == 0:
        raise DataError(f"no JPEG frames for sequence {sequence!r} in {image_dir}")
    frame_ids = png_stems(layout.mask_dir / sequence)
    if not frame_ids:
        raise DataError(f"no ground-truth masks for sequence {sequence!r} in {layout.mask_dir / sequence}")
    if len(frame_ids) < n_images:
        raise DataError(f"sequence {sequence!r} has {n_images} frames in {image_dir} but only {len(frame_ids)} "
                        f"ground-truth masks in {layout.mask_dir / sequence}")
    return frame_ids


# --------------------------------------------------------------------------------------------------------
# One sequence
# --------------------------------------------------------------------------------------------------------
@dataclass
class SequenceScores:
    """Per-object, per-frame J and F of one sequence, in the order the objects are reported."""

    name: str
    j: np.ndarray  # (n_objects, n_frames)
    f: np.ndarray  # (n_objects, n_frames)
    frame_ids: list[str]


def _read_gt(path: Path, n_objects: int | None) -> tuple[np.ndarray, np.ndarray]:
    """GT label map with void -> 0 (and labels above n_objects -> 0), plus the void mask."""
    raw = read_label_png(path, DataError, "ground-truth mask")
    void = raw == VOID_LABEL
    labels = raw.copy()
    labels[void] = 0
    if n_objects is not None:
        labels[labels > n_objects] = 0
    return labels, void


def _read_prediction(path: Path, shape: tuple[int, int], max_id: int, task: str) -> np.ndarray:
    labels = read_label_png(path, EvaluationError, "result mask")
    if labels.shape != shape:
        raise EvaluationError(f"result mask {path} is {labels.shape[1]}x{labels.shape[0]} (WxH) but the ground "
                              f"truth is {shape[1]}x{shape[0]}")
    top = int(labels.max()) if labels.size else 0
    if top > max_id:
        if task == "unsupervised":
            raise EvaluationError(f"result mask {path} uses object id {top}; the unsupervised task allows at most "
                                  f"{MAX_PROPOSALS} proposals (ids 1..{MAX_PROPOSALS})")
        raise EvaluationError(f"result mask {path} uses object id {top} but the sequence has only {max_id} "
                              f"ground-truth object(s)")
    return labels


def hungarian_match(j_all: np.ndarray, f_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unsupervised assignment: (n_pred, n_gt, T) J/F -> (n_gt, T) J/F of the matched pairs.

    Maximises mean_t (J+F)/2 with `scipy.optimize.linear_sum_assignment`; the rows come out in prediction
    order (the official code's quirk, kept so per-object names match).
    """
    from scipy.optimize import linear_sum_assignment

    score = (np.mean(j_all, axis=2) + np.mean(f_all, axis=2)) / 2
    rows, cols = linear_sum_assignment(-score)
    return j_all[rows, cols, :], f_all[rows, cols, :]


def evaluate_sequence(layout: DavisLayout, results_dir: Path, sequence: str,
                      bound_th: float = BOUNDARY_THRESHOLD) -> SequenceScores:
    """J and F of every GT object of one sequence under the layout's protocol."""
    frame_ids = gt_frame_ids(layout, sequence)
    gt_dir = layout.mask_dir / sequence
    res_dir = results_dir / sequence
    if not res_dir.is_dir():
        raise EvaluationError(f"no results for sequence {sequence!r}: folder {res_dir} not found")
    first_labels, first_void = _read_gt(gt_dir / f"{frame_ids[0]}.png", None)
    n_gt = int(first_labels.max()) if first_labels.size else 0
    semi = layout.task == "semi-supervised"
    if semi:
        if len(frame_ids) < 3:
            raise DataError(f"sequence {sequence!r} has {len(frame_ids)} ground-truth frame(s) in {gt_dir}; the "
                            f"semi-supervised protocol drops the first and last frame and needs at least 3")
        frame_ids = frame_ids[1:-1]
    max_id = n_gt if semi else MAX_PROPOSALS
    n_rows = n_gt if semi else max(MAX_PROPOSALS, n_gt)
    n_t = len(frame_ids)
    # Unsupervised: [pred id - 1, gt object, frame]; semi-supervised: the diagonal only.
    j_all = np.empty((n_rows, n_gt, n_t)) if not semi else np.empty((n_gt, n_t))
    f_all = np.empty_like(j_all)
    n_pred = 0
    for t, frame_id in enumerate(frame_ids):
        if t == 0 and not semi:
            gt, void = first_labels, first_void
        else:
            gt, void = _read_gt(gt_dir / f"{frame_id}.png", n_gt)
        pred = _read_prediction(res_dir / f"{frame_id}.png", gt.shape, max_id, layout.task)
        n_pred = max(n_pred, int(pred.max()))
        if not semi and void.any():
            pred = pred.copy()
            pred[void] = 0  # the unsupervised task excludes void pixels from J and F
        if n_gt == 0:
            continue
        j_rows, f_rows, j_empty, f_empty = pairwise_jf(gt, n_gt, pred, identity=semi, bound_th=bound_th)
        if semi:
            j_all[:, t], f_all[:, t] = j_empty, f_empty
            for p, row in j_rows.items():
                j_all[p - 1, t] = row[p - 1]
                f_all[p - 1, t] = f_rows[p][p - 1]
        else:
            j_all[:, :, t], f_all[:, :, t] = j_empty, f_empty
            for p, row in j_rows.items():
                j_all[p - 1, :, t] = row
                f_all[p - 1, :, t] = f_rows[p]
    if semi or n_gt == 0:
        j, f = (j_all, f_all) if n_gt else (np.zeros((0, n_t)), np.zeros((0, n_t)))
    else:
        n_res = max(n_pred, n_gt)
        j, f = hungarian_match(j_all[:n_res], f_all[:n_res])
    return SequenceScores(sequence, j, f, frame_ids)


# --------------------------------------------------------------------------------------------------------
# Whole evaluation
# --------------------------------------------------------------------------------------------------------
@dataclass
class DavisResult:
    """Summary figures (fractions) and per-object J/F means of one DAVIS evaluation."""

    task: str
    summary: dict[str, float]
    per_object: dict[str, dict[str, float]]
    sequences: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict:
        """The JSON written by `vdit score davis`: the 7 summary keys plus "per_object"."""
        out: dict = {k: self.summary[k] for k in SUMMARY_KEYS}
        out["per_object"] = {k: dict(v) for k, v in self.per_object.items()}
        return out


def summarise(scores: Sequence[SequenceScores], task: str) -> DavisResult:
    """Per-object statistics averaged over all objects of all sequences (every object weighs the same)."""
    stats = {"J": ([], [], []), "F": ([], [], [])}
    per_object: dict[str, dict[str, float]] = {}
    for seq in scores:
        for k in range(seq.j.shape[0]):
            name = f"{seq.name}_{k + 1}"
            per_object[name] = {}
            for measure, values in (("J", seq.j[k]), ("F", seq.f[k])):
                mean, recall, decay = object_statistics(values)
                for lst, value in zip(stats[measure], (mean, recall, decay)):
                    lst.append(value)
                per_object[name][measure] = mean
    if not per_object:
        raise EvaluationError("no ground-truth object to evaluate (every sequence's first frame is empty)")
    j_m, j_r, j_d = (float(np.mean(x)) for x in stats["J"])
    f_m, f_r, f_d = (float(np.mean(x)) for x in stats["F"])
    summary = {"J&F-Mean": (j_m + f_m) / 2.0, "J-Mean": j_m, "J-Recall": j_r, "J-Decay": j_d,
               "F-Mean": f_m, "F-Recall": f_r, "F-Decay": f_d}
    return DavisResult(task, summary, per_object, [s.name for s in scores])


def evaluate_davis(davis_root: Path | str, results_dir: Path | str, task: str = "unsupervised",
                   subset: str = DEFAULT_SUBSET, sequences: Sequence[str] | None = None,
                   resolution: str = DEFAULT_RESOLUTION, bound_th: float = BOUNDARY_THRESHOLD,
                   progress: ProgressFn | None = None) -> DavisResult:
    """Score a results folder against a DAVIS root under `task` ("unsupervised" or "semi-supervised")."""
    layout = make_layout(davis_root, task, subset, resolution)
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise EvaluationError(f"results folder not found: {results_dir}")
    names = list_sequences(layout, sequences)
    scores = []
    for name in names:
        scores.append(evaluate_sequence(layout, results_dir, name, bound_th))
        if progress is not None:
            progress(name)
    return summarise(scores, task)


# --------------------------------------------------------------------------------------------------------
# Ref-DAVIS17: four annotation sets
# --------------------------------------------------------------------------------------------------------
@dataclass
class RefDavisResult:
    """The four per-set results and their average (the number Ref-DAVIS17 papers report)."""

    per_set: list[DavisResult]
    mean: dict[str, float]

    def to_json_dict(self) -> dict:
        out: dict = {"mean": dict(self.mean)}
        for a, res in enumerate(self.per_set):
            out[f"anno_{a}"] = res.to_json_dict()
        return out


def evaluate_ref_davis(davis_root: Path | str, results_root: Path | str, subset: str = DEFAULT_SUBSET,
                       sequences: Sequence[str] | None = None, resolution: str = DEFAULT_RESOLUTION,
                       progress: ProgressFn | None = None) -> RefDavisResult:
    """Score `results_root/anno_0..anno_3` with the unsupervised protocol and average the summaries."""
    results_root = Path(results_root)
    set_dirs = [results_root / f"anno_{a}" for a in range(REF_DAVIS_SETS)]
    missing = [str(d) for d in set_dirs if not d.is_dir()]
    if missing:
        raise EvaluationError(f"Ref-DAVIS results need {REF_DAVIS_SETS} annotation-set folders; missing: "
                              f"{', '.join(missing)}")
    per_set = []
    for a, folder in enumerate(set_dirs):
        set_progress = None if progress is None else (lambda name, a=a: progress(f"anno_{a}/{name}"))
        per_set.append(evaluate_davis(davis_root, folder, "unsupervised", subset, sequences, resolution,
                                      progress=set_progress))
    mean = {k: float(np.mean([r.summary[k] for r in per_set])) for k in SUMMARY_KEYS}
    return RefDavisResult(per_set, mean)
