"""Video benchmark drivers (spec 6.1, 6.2): Ref-YouTube-VOS, MeViS and Ref-DAVIS17.

Ref-YouTube-VOS (`run_ytvos`): every video of the split (the valid videos minus the test videos when
meta_expressions/test exists) is one clip, resized to short side 360 (or the size the model's config
records, e.g. 64 for the miniature world's heads; padded to 16 in the model); all its
expressions are segmented on shared visual features, each with the query of highest mean score; the mask
logits are cropped, upsampled to the original size and thresholded (sigmoid > 0.5). Masks are written as
`Annotations/<video>/<exp_id>/<frame>.png`, zipped into `submission.zip` and validated. When the split
ships Annotations (the generated benchmark does; the real valid split does not) J and F are computed
locally: per expression the mean over its frames, then the mean over expressions.

MeViS (`run_mevis`): the same protocol on `valid_u` (or another split); scored with the MeViS evaluator
when the split has `mask_dict.json`.

Ref-DAVIS17 (`run_ref_davis`): 36-frame clips, query chosen per clip; per annotation set a and object k
(expression 4k+a), the probabilities at the original size; values < 0.5 become 0, a constant 0.1
background plane is prepended, the argmax over [bg, obj_1..obj_N] gives the label map, written as a
palette PNG under `DVS_Annotations/anno_{a}/<video>/<frame>.png`. Each set is scored with the DAVIS
unsupervised evaluator against the raw DAVIS folder and the four summaries are averaged.

Each video is one item of the run's `EvalSession` (vdit.inference.benchmarks): under torchrun every rank
segments its share and records each finished video (Ref-YTVOS: with its expressions' J and F); rank 0
merges the records in dataset order, writes the zip / meta file and scores. `submission.zip` is written
reproducibly (entries sorted, fixed timestamps), so the same masks always give the same bytes.
"""
from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from vdit.data.davis import NUM_ANNOTATION_SETS, RefDAVISDataset
from vdit.data.mevis import MASK_FILE, META_FILE, MeViSDataset
from vdit.data.png import DAVIS_PALETTE, read_index_png, read_palette, write_index_png
from vdit.data.transforms import normalize_text
from vdit.data.video_io import read_image
from vdit.data.video_dataset import ExpressionRecord, RefVideoDataset, VideoRecord
from vdit.data.ytvos import FRAME_EXT, MASK_EXT, RefYTVOSDataset, meta_expressions_path
from vdit.errors import DataError, EvaluationError
from vdit.evaluation.jf import expression_jf
from vdit.evaluation.ytvos_submission import SUBMISSION_DIR
from vdit.fileio import read_json, write_json
from vdit.inference.benchmark_session import VIDEO_MAX_SIZE, BenchmarkOptions, item_seed, limited, session_of
from vdit.inference.predictor import MODEL_SHORT_SIDE, VDITPredictor
from vdit.inference.windows import DAVIS_WINDOW

YTVOS_SPLIT = "valid"
MEVIS_SPLIT = "valid_u"
DAVIS_SPLIT = "valid"
SUBMISSION_ZIP = "submission.zip"
EVALUATED_META = "meta_expressions_evaluated.json"
DAVIS_RESULTS_DIR = "DVS_Annotations"
DAVIS_SCORES_FILE = "davis_scores.json"
DAVIS_GT_DIR = "DAVIS"  # raw DAVIS folder beside the converted tree (convert_davis_to_ytvos default)
# Spec 6.2: the constant background plane of the argmax merge.
DAVIS_BACKGROUND_PROB = 0.1
# Problems of an invalid submission copied into metrics.json (the validator lists all of them).
MAX_LISTED_PROBLEMS = 20
# Timestamp of every submission.zip entry (the zip format's earliest date): the same masks, the same bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


# ------------------------------------------------------------------------------------------------ shared


def zip_submission_reproducible(out_dir: Path, zip_path: Path) -> Path:
    """`out_dir/Annotations/**.png` into `zip_path` as entries ``Annotations/<video>/<exp>/<frame>.png``
    (the layout of `vdit.evaluation.ytvos_submission.zip_submission`), sorted, with fixed timestamps and
    permissions, so that equal masks give a byte-identical zip whichever process wrote them and when.
    Written to a temporary name and renamed."""
    root = out_dir / SUBMISSION_DIR
    if not root.is_dir():
        raise EvaluationError(f"nothing to zip: {root} does not exist")
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*.png"), key=lambda p: p.relative_to(out_dir).as_posix()):
            info = zipfile.ZipInfo(path.relative_to(out_dir).as_posix(), date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    tmp.replace(zip_path)
    return zip_path


def make_predictor(model: nn.Module, opts: BenchmarkOptions, window: int | None) -> VDITPredictor:
    """The predictor of the video protocols; `opts.short_side` None = the model config's input size."""
    return VDITPredictor(model=model, device=opts.device, window=window,
                         short_side=MODEL_SHORT_SIDE if opts.short_side is None else opts.short_side,
                         max_size=opts.input_max_size(VIDEO_MAX_SIZE), threshold=opts.threshold, amp=opts.amp)


def expressions_by_video(expressions: Sequence[ExpressionRecord]) -> dict[str, list[ExpressionRecord]]:
    """Expressions grouped per video, in file order."""
    out: dict[str, list[ExpressionRecord]] = {}
    for exp in expressions:
        out.setdefault(exp.video_id, []).append(exp)
    return out


def read_video(split_dir: Path, video: VideoRecord) -> list:
    """The video's frames (RGB PIL images) in the order of its sorted frame names."""
    return [read_image(split_dir / "JPEGImages" / video.video_id / f"{name}{FRAME_EXT}") for name in video.frames]


def subset_meta(meta_path: Path, videos: Sequence[str]) -> dict[str, Any]:
    """The meta_expressions entries of `videos` (as in the file, every field kept)."""
    data = read_json(meta_path)
    entries = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise DataError(f"{meta_path}: expected an object with a 'videos' mapping")
    return {"videos": {v: entries[v] for v in videos}}


def _jf_summary(per_expression: dict[str, list[float]]) -> dict[str, float]:
    j = float(np.mean([v[0] for v in per_expression.values()]))
    f = float(np.mean([v[1] for v in per_expression.values()]))
    return {"J&F": (j + f) / 2, "J": j, "F": f}


ScoreFn = Callable[[VideoRecord, ExpressionRecord, np.ndarray], "tuple[float, float] | None"]


def segment_video_expressions(model: nn.Module, opts: BenchmarkOptions, dataset: RefVideoDataset,
                              split_dir: Path, score: ScoreFn | None = None, benchmark: str = "ytvos"
                              ) -> tuple[list[str], dict[str, list[float]]] | None:
    """Segment every expression of the (first `limit`) videos as one clip each and write the masks as
    `<out>/Annotations/<video>/<exp_id>/<frame>.png`. `score(video, exp, masks)` -> (J, F) or None.
    This rank segments its share of the videos (skipping those an interrupted run finished); on rank 0
    returns every video and the per-expression scores ("<video>_<exp_id>": [J, F], dataset order), on
    the other ranks None."""
    from vdit.evaluation.ytvos_submission import write_expression_masks

    groups = expressions_by_video(dataset.expressions)
    videos = limited([v for v in dataset.videos if v in groups], opts.limit)
    if not videos:
        raise EvaluationError(f"no video with expressions under {split_dir}")
    session = session_of(opts, model, benchmark)
    session.prepare(opts.out_dir / SUBMISSION_DIR)
    predictor = make_predictor(model, opts, window=None)
    mine = session.own(videos)
    todo = [v for v in mine if session.finished(v) is None]
    opts.begin(len(mine), "video", done=len(mine) - len(todo))
    for n, vid in enumerate(todo, start=1):
        video = dataset.videos[vid]
        exps = groups[vid]
        # masks a killed run left of this video would be mixed with the new ones
        shutil.rmtree(opts.out_dir / SUBMISSION_DIR / vid, ignore_errors=True)
        opts.step(f"[{n}/{len(todo)}] {vid}: segmenting {len(exps)} expression(s) on {len(video.frames)} frames")
        with item_seed(vid, predictor.device):
            result = predictor.segment(read_video(split_dir, video), [normalize_text(e.text) for e in exps])
        scores: dict[str, list[float]] = {}
        for exp, seg in zip(exps, result):
            write_expression_masks(opts.out_dir, vid, exp.exp_id, video.frames, seg.masks)
            value = score(video, exp, seg.masks) if score is not None else None
            if value is not None:
                scores[f"{vid}_{exp.exp_id}"] = [float(v) for v in value]
        session.save(vid, {"scores": scores})
        opts.note(f"[{n}/{len(todo)}] {vid}: {len(exps)} expression(s), {len(video.frames)} frames")
    records = session.collect(videos)
    if records is None:
        return None
    merged: dict[str, list[float]] = {}
    for vid in videos:
        merged.update(records[vid]["scores"])
    return videos, merged


# ------------------------------------------------------------------------------------------------ Ref-YouTube-VOS


def ytvos_gt_masks(split_dir: Path, video: VideoRecord, exp: ExpressionRecord) -> list[np.ndarray]:
    """The referred object's masks on every frame, from the palette Annotations."""
    return [np.isin(read_index_png(split_dir / "Annotations" / video.video_id / f"{f}{MASK_EXT}"), exp.obj_ids)
            for f in video.frames]


def run_ytvos(model: nn.Module, opts: BenchmarkOptions) -> dict[str, Any] | None:
    from vdit.evaluation.ytvos_submission import validate_submission

    split = opts.split or YTVOS_SPLIT
    dataset = RefYTVOSDataset(opts.data_root, split, train=False)
    split_dir = opts.data_root / split

    def score(video: VideoRecord, exp: ExpressionRecord, masks: np.ndarray):
        if not (split_dir / "Annotations" / video.video_id).is_dir():
            return None
        gt = ytvos_gt_masks(split_dir, video, exp)
        if gt[0].shape != masks.shape[1:]:
            raise EvaluationError(f"video {video.video_id}: Annotations are {gt[0].shape}, predictions {masks.shape[1:]}")
        return expression_jf(gt, masks)

    done = segment_video_expressions(model, opts, dataset, split_dir, score, "ytvos")
    if done is None:  # not rank 0: rank 0 merges and scores
        return None
    videos, scores = done
    meta_path = write_json(opts.out_dir / EVALUATED_META,
                           subset_meta(meta_expressions_path(opts.data_root, split), videos))
    zip_path = zip_submission_reproducible(opts.out_dir, opts.out_dir / SUBMISSION_ZIP)
    report = validate_submission(zip_path, meta_path, frames_root=split_dir)
    meta = read_json(meta_path)["videos"]
    metrics: dict[str, Any] = {
        "split": split, "n_videos": len(videos), "n_expressions": sum(len(v["expressions"]) for v in meta.values()),
        "n_masks": report.n_expected,
        "submission_zip": str(zip_path), "submission_valid": report.ok,
        "submission_problems": report.problems[:MAX_LISTED_PROBLEMS],
    }
    if scores:
        metrics.update(_jf_summary(scores))
        metrics["n_expressions_scored"] = len(scores)
        metrics["per_expression"] = scores
    return metrics


# ------------------------------------------------------------------------------------------------ MeViS


def run_mevis(model: nn.Module, opts: BenchmarkOptions) -> dict[str, Any] | None:
    from vdit.evaluation.mevis import evaluate_mevis

    split = opts.split or MEVIS_SPLIT
    dataset = MeViSDataset(opts.data_root, split, train=False)
    split_dir = opts.data_root / split
    done = segment_video_expressions(model, opts, dataset, split_dir, benchmark="mevis")
    if done is None:  # not rank 0
        return None
    videos, _ = done
    meta_path = write_json(opts.out_dir / EVALUATED_META, subset_meta(split_dir / META_FILE, videos))
    metrics: dict[str, Any] = {"split": split, "n_videos": len(videos), "n_expressions":
                               sum(len(v["expressions"]) for v in read_json(meta_path)["videos"].values()),
                               "results_dir": str(opts.out_dir / SUBMISSION_DIR)}
    mask_dict = split_dir / MASK_FILE
    if mask_dict.is_file():
        result = evaluate_mevis(meta_path, mask_dict, opts.out_dir)
        metrics.update({"J&F": result.jf, "J": result.j, "F": result.f, "per_expression": result.per_expression})
    return metrics


# ------------------------------------------------------------------------------------------------ Ref-DAVIS17


def merge_object_probs(probs: np.ndarray, threshold: float,
                       background: float = DAVIS_BACKGROUND_PROB) -> np.ndarray:
    """probs [N_obj, t, H, W] -> label map [t, H, W] uint8 (0 = background, k = object k): probabilities
    below `threshold` are set to 0, then argmax over [background plane, objects] (spec 6.2)."""
    probs = np.asarray(probs, dtype=np.float32)
    kept = np.where(probs < threshold, np.float32(0), probs)
    bg = np.full((1, *kept.shape[1:]), background, dtype=np.float32)
    return np.argmax(np.concatenate([bg, kept]), axis=0).astype(np.uint8)


def davis_palette(split_dir: Path) -> list[int]:
    """The palette of the first ground-truth PNG of the split (official: blackswan's), else DAVIS's."""
    ann = split_dir / "Annotations"
    if ann.is_dir():
        for video in sorted(p for p in ann.iterdir() if p.is_dir()):
            pngs = sorted(video.glob(f"*{MASK_EXT}"))
            if pngs:
                try:
                    return read_palette(pngs[0])
                except DataError:
                    break
    return list(DAVIS_PALETTE)


def davis_sets(expressions: Sequence[ExpressionRecord]) -> list[list[ExpressionRecord]]:
    """Per annotation set a, the expressions 4k+a of the video's objects in object order k."""
    ordered = sorted(expressions, key=lambda e: int(e.exp_id))
    return [[e for e in ordered if int(e.exp_id) % NUM_ANNOTATION_SETS == a] for a in range(NUM_ANNOTATION_SETS)]


def run_ref_davis(model: nn.Module, opts: BenchmarkOptions) -> dict[str, Any] | None:
    from vdit.evaluation.davis import evaluate_ref_davis, make_layout

    split = opts.split or DAVIS_SPLIT
    davis_root = Path(opts.davis_root).expanduser() if opts.davis_root else opts.data_root / DAVIS_GT_DIR
    make_layout(davis_root, "unsupervised")  # fail before any inference when the ground truth is absent
    dataset = RefDAVISDataset(opts.data_root, split, train=False)
    split_dir = opts.data_root / split
    groups = expressions_by_video(dataset.expressions)
    videos = limited(list(dataset.videos), opts.limit)
    if not videos:
        raise EvaluationError(f"no video under {split_dir}")
    palette = davis_palette(split_dir)
    session = session_of(opts, model, "davis")
    results_root = opts.out_dir / DAVIS_RESULTS_DIR
    session.prepare(results_root)
    predictor = make_predictor(model, opts, window=DAVIS_WINDOW)
    mine = session.own(videos)
    todo = [v for v in mine if session.finished(v) is None]
    opts.begin(len(mine), "video", done=len(mine) - len(todo))
    for n, vid in enumerate(todo, start=1):
        video = dataset.videos[vid]
        frames = read_video(split_dir, video)
        for a, exps in enumerate(davis_sets(groups.get(vid, []))):
            folder = results_root / f"anno_{a}" / vid
            shutil.rmtree(folder, ignore_errors=True)  # what a killed run left of this video
            if not exps:  # no expression for this video: everything is background
                size = frames[0].size[::-1]
                for name in video.frames:
                    write_index_png(folder / f"{name}{MASK_EXT}", np.zeros(size, np.uint8), palette)
                continue
            texts = [normalize_text(e.text) for e in exps]
            with item_seed(f"{vid}/anno_{a}", predictor.device):
                for win in predictor.iter_segment(frames, texts, return_probs=True):
                    labels = merge_object_probs(win.probs, opts.threshold)
                    for i, lab in enumerate(labels):
                        write_index_png(folder / f"{video.frames[win.start + i]}{MASK_EXT}", lab, palette)
                    opts.step(f"[{n}/{len(todo)}] {vid}: anno_{a} ({len(texts)} object(s)), frames "
                              f"{win.end} of {len(video.frames)}")
        session.save(vid, {})
        opts.note(f"[{n}/{len(todo)}] {vid}: {len(groups.get(vid, []))} expression(s), {len(video.frames)} frames")
    if session.collect(videos) is None:  # not rank 0: rank 0 scores
        return None
    result = evaluate_ref_davis(davis_root, results_root, sequences=videos if opts.limit else None)
    write_json(opts.out_dir / DAVIS_SCORES_FILE, result.to_json_dict())
    return {"split": split, "n_videos": len(videos), **result.mean,
            "anno_sets": {f"anno_{a}": r.summary for a, r in enumerate(result.per_set)},
            "results_dir": str(results_root)}


__all__ = ["run_ytvos", "run_mevis", "run_ref_davis", "merge_object_probs", "davis_sets", "davis_palette",
           "segment_video_expressions", "zip_submission_reproducible"]
