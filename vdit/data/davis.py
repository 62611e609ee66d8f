"""Ref-DAVIS17: convert the raw DAVIS-2017 + text-annotation release into the Ref-YouTube-VOS layout.

Input (spec 7.2), under `davis_root`::

    DAVIS/JPEGImages/480p/<video>/<00000>.jpg
    DAVIS/Annotations_unsupervised/480p/<video>/<00000>.png
    DAVIS/ImageSets/2017/{train,val}.txt
    DAVIS/davis_semantics.json                          (optional: object categories)
    davis_text_annotations/Davis17_annot1.txt            utf-8,   first-frame expressions, annotator 1
    davis_text_annotations/Davis17_annot1_full_video.txt utf-8,   full-video expressions,  annotator 1
    davis_text_annotations/Davis17_annot2.txt            latin-1, annotator 2
    davis_text_annotations/Davis17_annot2_full_video.txt latin-1

Each text line is `video obj_id "expression"`. Output, under `out_root` (may equal `davis_root`)::

    <out>/{train,valid}/JPEGImages/<video>/<frame>.jpg    symlinks to (or copies of) the source files
    <out>/{train,valid}/Annotations/<video>/<frame>.png
    <out>/{train,valid}/meta.json
    <out>/meta_expressions/{train,valid}/meta_expressions.json

Unlike the official script (which `mv`s the frames away and so breaks the DAVIS evaluator), the source
tree is never modified: every output file is a per-file symlink to the source (default; absolute
targets), a copy, or a hard link. Directories in the output are real directories, so writing into the
output never writes into the source.

Expression ids follow spec 6.2: objects of a video sorted by id, the k-th object gets `4k+0` annotator-1
first-frame, `4k+1` annotator-1 full-video, `4k+2` annotator-2 first-frame, `4k+3` annotator-2
full-video. The official converter pairs the four files' per-video lists by position; here they are
paired by object id (identical on the real release, where every file lists every object once), and an
object missing from one of the files is left out with a warning.
"""
from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vdit.data.png import write_index_png
from vdit.data.transforms import ClipTransform
from vdit.data.video_dataset import ExpressionRecord
from vdit.data.ytvos import RefYTVOSDataset
from vdit.data.ytvos_writer import write_jpeg
from vdit.errors import ConfigError, DataError, InputError
from vdit.fileio import read_json, write_json

# Text annotation files, in expression-id order a = 0..3, with their encodings (spec 7.2).
ANNOTATION_FILES: tuple[tuple[str, str], ...] = (
    ("Davis17_annot1.txt", "utf-8"),
    ("Davis17_annot1_full_video.txt", "utf-8"),
    ("Davis17_annot2.txt", "latin-1"),
    ("Davis17_annot2_full_video.txt", "latin-1"),
)
NUM_ANNOTATION_SETS = len(ANNOTATION_FILES)
# Video names misspelt in the text annotations.
VIDEO_NAME_FIXES: dict[str, str] = {
    "clasic-car": "classic-car",
    "dog-scale": "dogs-scale",
    "motor-bike": "motorbike",
}
# DAVIS split file -> YTVOS split folder.
SPLITS: dict[str, str] = {"train": "train", "val": "valid"}
RESOLUTION = "480p"
LINK_MODES = ("symlink", "copy", "hardlink")
DEFAULT_CATEGORY = "object"
TEXT_DIR = "davis_text_annotations"


def parse_davis_text_annotations(path: str | Path, encoding: str) -> dict[str, dict[int, str]]:
    """{video: {obj_id: expression}} from one Davis17_annot*.txt (typo fixes applied).

    The expression is the rest of the line without its enclosing quotes. Blank lines are ignored; a
    line without an integer object id or an expression is a DataError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"DAVIS text annotation file not found: {path}")
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not valid {encoding}: {exc}") from exc
    out: dict[str, dict[int, str]] = {}
    for lineno, raw in enumerate(lines, start=1):
        parts = raw.strip().split()
        if not parts:
            continue
        if len(parts) < 3:
            raise DataError(f"{path}:{lineno}: expected `video obj_id \"expression\"`, got {raw!r}")
        video, obj = parts[0], parts[1]
        try:
            obj_id = int(obj)
        except ValueError:
            raise DataError(f"{path}:{lineno}: object id {obj!r} is not an integer")
        text = " ".join(parts[2:])
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
        video = VIDEO_NAME_FIXES.get(video, video)
        per_video = out.setdefault(video, {})
        if obj_id in per_video:
            warnings.warn(f"{path}:{lineno}: second expression for {video} object {obj_id}; keeping the first",
                          RuntimeWarning, stacklevel=2)
            continue
        per_video[obj_id] = text
    return out


def read_split_list(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"DAVIS split file not found: {path}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def davis_expressions(annotations: Sequence[Mapping[str, Mapping[int, str]]], video: str) -> dict[str, dict[str, str]]:
    """The meta_expressions entry of one video: ids 4k+a over objects sorted by id (spec 6.2)."""
    sets = [ann.get(video, {}) for ann in annotations]
    objects = sorted(set().union(*[s.keys() for s in sets]))
    complete = [o for o in objects if all(o in s for s in sets)]
    for o in objects:
        if o not in complete:
            warnings.warn(f"DAVIS text annotations: {video} object {o} is not in all four files; left out",
                          RuntimeWarning, stacklevel=2)
    out: dict[str, dict[str, str]] = {}
    for k, obj in enumerate(complete):
        for a, s in enumerate(sets):
            out[str(NUM_ANNOTATION_SETS * k + a)] = {"exp": s[obj], "obj_id": str(obj)}
    return out


def _place(src: Path, dst: Path, mode: str) -> None:
    """Make dst refer to src without touching src (replacing an earlier output entry)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == src.resolve() and mode == "symlink" and dst.is_symlink():
            return
        if dst.is_dir() and not dst.is_symlink():
            raise DataError(f"output path {dst} is a directory; expected a file")
        dst.unlink()
    if mode == "symlink":
        os.symlink(src.resolve(), dst)
    elif mode == "hardlink":
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def _files(folder: Path, suffix: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"DAVIS folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix)
    if not files:
        raise DataError(f"no {suffix} files in {folder}")
    return files


@dataclass
class ConvertSummary:
    out_root: Path
    link_mode: str
    videos: dict[str, int]
    expressions: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"out_root": str(self.out_root), "link_mode": self.link_mode,
                "videos": dict(self.videos), "expressions": dict(self.expressions)}


def convert_davis_to_ytvos(davis_root: str | Path, out_root: str | Path | None = None, *,
                           link_mode: str = "symlink") -> ConvertSummary:
    """Build the Ref-YTVOS-layout tree of Ref-DAVIS17 (see module docstring); the source is untouched."""
    if link_mode not in LINK_MODES:
        raise ConfigError(f"link_mode must be one of {LINK_MODES}, got {link_mode!r}")
    davis_root = Path(davis_root)
    out_root = Path(out_root) if out_root is not None else davis_root
    src = davis_root / "DAVIS"
    if not src.is_dir():
        raise DataError(f"DAVIS release not found: {src} (expected DAVIS/ and {TEXT_DIR}/ under {davis_root})")
    out_abs = out_root.resolve()
    for protected in (src.resolve(), (davis_root / TEXT_DIR).resolve()):
        if out_abs == protected or protected in out_abs.parents:
            raise ConfigError(f"output folder {out_root} lies inside the source tree {protected}")
    annotations = [parse_davis_text_annotations(davis_root / TEXT_DIR / name, enc)
                   for name, enc in ANNOTATION_FILES]
    semantics_path = src / "davis_semantics.json"
    semantics = read_json(semantics_path) if semantics_path.is_file() else {}
    if not isinstance(semantics, dict):
        raise DataError(f"{semantics_path}: expected an object {{video: {{obj_id: category}}}}")

    summary = ConvertSummary(out_root, link_mode, {}, {})
    for davis_split, split in SPLITS.items():
        videos = read_split_list(src / "ImageSets" / "2017" / f"{davis_split}.txt")
        meta_exp: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for video in videos:
            frames = _files(src / "JPEGImages" / RESOLUTION / video, ".jpg")
            masks = _files(src / "Annotations_unsupervised" / RESOLUTION / video, ".png")
            for f in frames:
                _place(f, out_root / split / "JPEGImages" / video / f.name, link_mode)
            for m in masks:
                _place(m, out_root / split / "Annotations" / video / m.name, link_mode)
            exps = davis_expressions(annotations, video)
            if not exps:
                warnings.warn(f"DAVIS: no text annotations for video {video}; it gets no expressions",
                              RuntimeWarning, stacklevel=2)
            meta_exp[video] = {"expressions": exps, "frames": [f.stem for f in frames]}
            cats = semantics.get(video, {}) if isinstance(semantics.get(video, {}), dict) else {}
            obj_ids = sorted({int(k) for k in cats} | {int(e["obj_id"]) for e in exps.values()})
            meta[video] = {"objects": {str(o): {"category": str(cats.get(str(o), DEFAULT_CATEGORY))}
                                       for o in obj_ids}}
        write_json(out_root / "meta_expressions" / split / "meta_expressions.json", {"videos": meta_exp},
                   indent=None, ensure_ascii=False)
        write_json(out_root / split / "meta.json", {"videos": meta}, indent=None, ensure_ascii=False)
        summary.videos[split] = len(videos)
        summary.expressions[split] = sum(len(v["expressions"]) for v in meta_exp.values())
    return summary


# ----------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------

class RefDAVISDataset(RefYTVOSDataset):
    """Ref-DAVIS17 on the converted tree (= the YTVOS reader; default split `valid`, eval mode).

    `annotation_set` in {0,1,2,3} keeps only expressions `4k+a` (spec 6.2: the four sets are scored
    separately and averaged).
    """

    dataset_name = "davis"

    def __init__(self, root: str | Path, split: str = "valid", num_frames: int = 5,
                 transform: ClipTransform | None = None, *, annotation_set: int | None = None, **kwargs: Any):
        if annotation_set is not None and annotation_set not in range(NUM_ANNOTATION_SETS):
            raise ConfigError(f"annotation_set must be in 0..{NUM_ANNOTATION_SETS - 1}, got {annotation_set}")
        self.annotation_set = annotation_set
        kwargs.setdefault("exclude_test", False)
        super().__init__(root, split, num_frames, transform, **kwargs)

    def _load_index(self):
        videos, expressions = super()._load_index()
        if self.annotation_set is not None:
            expressions = [e for e in expressions if _annotation_set(e) == self.annotation_set]
        return videos, expressions


def _annotation_set(exp: ExpressionRecord) -> int:
    try:
        return int(exp.exp_id) % NUM_ANNOTATION_SETS
    except ValueError:
        raise DataError(f"Ref-DAVIS expression id {exp.exp_id!r} of {exp.video_id} is not an integer")


# ----------------------------------------------------------------------------------------------
# Raw-release writer (tests build small fake DAVIS releases with it)
# ----------------------------------------------------------------------------------------------

def write_davis_release(
    root: str | Path,
    videos: Mapping[str, tuple[np.ndarray, np.ndarray]],
    splits: Mapping[str, Sequence[str]],
    text_annotations: Mapping[str, Mapping[int, Sequence[str]]],
    semantics: Mapping[str, Mapping[int, str]] | None = None,
) -> Path:
    """Write a DAVIS-2017 raw release + the Ref-DAVIS text files, in the real layout and encodings.

    videos: {name: (frames uint8 [T,H,W,3], object ids uint8 [T,H,W])}; frames are named 00000...
    splits: {"train": [...], "val": [...]}. text_annotations: {name as written in the text files
    (typos allowed): {obj_id: (annot1 first, annot1 full, annot2 first, annot2 full)}}; annot2 files
    are encoded latin-1, so their expressions must be latin-1 encodable.
    """
    root = Path(root)
    src = root / "DAVIS"
    for name, (frames, masks) in videos.items():
        frames = np.asarray(frames)
        masks = np.asarray(masks)
        if frames.shape[:3] != masks.shape:
            raise InputError(f"write_davis_release {name}: frames {frames.shape} vs masks {masks.shape}")
        for i, (frame, ids) in enumerate(zip(frames, masks)):
            write_jpeg(src / "JPEGImages" / RESOLUTION / name / f"{i:05d}.jpg", frame)
            write_index_png(src / "Annotations_unsupervised" / RESOLUTION / name / f"{i:05d}.png", ids)
    sets_dir = src / "ImageSets" / "2017"
    sets_dir.mkdir(parents=True, exist_ok=True)
    for split, names in splits.items():
        (sets_dir / f"{split}.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    if semantics is not None:
        write_json(src / "davis_semantics.json",
                   {v: {str(k): c for k, c in objs.items()} for v, objs in semantics.items()},
                   indent=None, ensure_ascii=False)
    text_dir = root / TEXT_DIR
    text_dir.mkdir(parents=True, exist_ok=True)
    for a, (fname, encoding) in enumerate(ANNOTATION_FILES):
        lines = []
        for video, objs in text_annotations.items():
            for obj_id, texts in objs.items():
                lines.append(f'{video} {obj_id} "{texts[a]}"\n')
        try:
            (text_dir / fname).write_bytes("".join(lines).encode(encoding))
        except UnicodeEncodeError as exc:
            raise InputError(f"write_davis_release: {fname} must be {encoding}-encodable: {exc}") from exc
    return root
