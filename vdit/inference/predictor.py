"""Referring segmentation of a user's own video: build the predictor once, segment many videos.

    predictor = VDITPredictor(weights="runs/ytvos/final")       # a folder written by VDIT.save_pretrained
    result = predictor.segment(frames, ["a dog running", "the ball"])
    result[0].masks                                             # [T, H0, W0] bool, original resolution

    for win in predictor.iter_segment(frame_stream, texts):     # bounded memory on long videos
        ...                                                     # win.masks [S, t, H0, W0]

Per window (spec 6.1 / 6.2): every frame is resized (short side 360, long side at most 640) and
ImageNet-normalised, padded to a multiple of 16; the model picks the query with the highest mean score
over the window's frames; its mask logits are cropped to the unpadded size, bilinearly upsampled to the
original resolution and thresholded (`sigmoid > 0.5`).

`window=None` runs the whole video as one clip (the Ref-YouTube-VOS protocol); `window=36` is the
Ref-DAVIS17 protocol (consecutive clips of 36 frames, query chosen per clip).

The text-independent backbone work (CLIP image tokens, VAE tap and latents: `backbone.encode_visual`)
is computed once per window and shared by all sentences (`sharing="batch"`: the sentences run as one
batch; `"loop"`: one forward per sentence on the shared features; `"none"`: recompute per sentence).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vdit.data.transforms import EVAL_MAX_SIZE, EVAL_SHORT_SIDE, resized_hw
from vdit.errors import InputError, ModelLoadError
from vdit.inference.windows import as_frame_iterable, check_window, iter_windows
from vdit.models.backbone.diffusion_backbone import MIN_SIDE, VisualFeatures
from vdit.models.head.text import check_texts
from vdit.models.inputs import frames_to_tensor
from vdit.models.outputs import InferenceOutput
from vdit.models.vdit import INPUT_SIZE_DIVISIBILITY, VDIT, WEIGHTS_NAME

# Spec 6.1: `sigmoid > 0.5` (`--threshold`).
DEFAULT_THRESHOLD = 0.5
SHARING_MODES = ("batch", "loop", "none")
# Sentences run together in one forward pass with sharing="batch" (memory grows with this number).
DEFAULT_MAX_TEXT_BATCH = 8
AMP_DTYPES = (torch.bfloat16, torch.float16)
# The built-in model: the miniature world's VD-IT head (`vdit mini train --ship`), a save_pretrained folder
# whose config names the shipped tiny foundation models (vdit/assets/mini/foundation) package-relatively.
BUILTIN_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "assets" / "mini" / "head"
# `short_side=MODEL_SHORT_SIDE`: the size the model's config records (`ModelConfig.input_short_side`; the
# built-in model says 64, the generated benchmark's frames), else EVAL_SHORT_SIDE.
MODEL_SHORT_SIDE = "model"
NO_BUILTIN_WEIGHTS = (f"the built-in VD-IT weights are missing ({BUILTIN_WEIGHTS_DIR}): reinstall vdit, or pass "
                      "weights (a folder written by VDIT.save_pretrained) or a model")


def check_sizes(short_side: int | None, max_size: int | None) -> None:
    if short_side is not None and (isinstance(short_side, bool) or not isinstance(short_side, int)):
        raise InputError(f"short_side must be a size in pixels, None or {MODEL_SHORT_SIDE!r}, got {short_side!r}")
    if short_side is not None and short_side < MIN_SIDE:
        raise InputError(f"short_side={short_side}: the model needs frames of at least {MIN_SIDE} pixels")
    if max_size is not None and short_side is not None and max_size < short_side:
        raise InputError(f"max_size={max_size} is smaller than short_side={short_side}")


# Beside the built-in head: the fingerprint of the foundation weights it was trained on.
BUILTIN_FOUNDATION_RECORD = "foundation.sha256"


def foundation_fingerprint(root: Path) -> str:
    """sha256 over the relative paths and contents of every safetensors file under a foundation folder.
    Hashed once per process and file state (path, size, mtime): the built-in model is checked by the CLI,
    the demo and the predictor, and the weights are ~19 MB."""
    files = sorted(Path(root).rglob("*.safetensors"))
    state = tuple((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _fingerprint(Path(root), state)


@functools.lru_cache(maxsize=8)
def _fingerprint(root: Path, state: tuple[tuple[str, int, int], ...]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for rel, _size, _mtime in state:
        digest.update(rel.encode())
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()


def check_builtin_weights() -> Path:
    """The built-in head's folder; ModelLoadError when this installation lacks it, or when the shipped
    foundation weights are not the ones the head was trained on (a head on other frozen features would
    silently segment nonsense)."""
    if not (BUILTIN_WEIGHTS_DIR / WEIGHTS_NAME).is_file():
        raise ModelLoadError(NO_BUILTIN_WEIGHTS)
    record = BUILTIN_WEIGHTS_DIR / BUILTIN_FOUNDATION_RECORD
    if record.is_file():
        from vdit.config import MINI_FOUNDATION_DIR

        have = foundation_fingerprint(MINI_FOUNDATION_DIR)
        if have != record.read_text().strip():
            raise ModelLoadError(f"the built-in VD-IT head ({BUILTIN_WEIGHTS_DIR}) was trained on other foundation "
                                 f"weights than those in {MINI_FOUNDATION_DIR}; retrain it with `vdit mini train --ship`")
    return BUILTIN_WEIGHTS_DIR


def builtin_domain_note(texts: Sequence[str], size: tuple[int, int]) -> str | None:
    """One line telling that the built-in model is being used outside its world, or None.

    The built-in head was trained on the miniature world only (docs/miniature.md): 64x64 generated clips
    of coloured shapes, described with the generator's vocabulary. On anything else it still answers
    with confident masks, which mean nothing; the user should hear that once, with the way out."""
    import re
    import string

    from vdit.config import MINI_FRAME_SIZE
    from vdit.mini.data import vocabulary

    known = set(vocabulary()) | set(string.punctuation)
    # words (letter runs) and single symbols such as emoji; digits and punctuation are not judged
    tokens = {w for t in texts for w in re.findall(r"[^\W\d_]+|[^\w\s]", t.lower())}
    unknown = sorted(tokens - known)
    reasons = []
    if unknown:
        shown = ", ".join(repr(w) for w in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        reasons.append(f"{shown} {'is' if len(unknown) == 1 else 'are'} outside its vocabulary")
    h, w = size
    if (h, w) != (MINI_FRAME_SIZE, MINI_FRAME_SIZE):
        reasons.append(f"the frames are {w}x{h}, not {MINI_FRAME_SIZE}x{MINI_FRAME_SIZE}")
    if not reasons:
        return None
    return ("note: the built-in model knows only the miniature world (generated 64x64 clips of coloured shapes, "
            f"texts like 'the small red circle moving left'), and {' and '.join(reasons)}: its masks here are "
            "guesses; for real videos convert the released weights with `vdit convert-official` and pass --weights")


# ---------------------------------------------------------------------------------------------- results


@dataclass
class WindowResult:
    """The masks of every sentence for one window of frames [start, end)."""

    index: int
    start: int
    end: int
    texts: list[str]
    masks: np.ndarray  # [S, t, H0, W0] bool, original resolution
    chosen_query: np.ndarray  # [S] int: the query selected in this window (highest mean score)
    frame_scores: np.ndarray  # [S, t] float32: sigmoid score of the chosen query in each frame
    query_scores: np.ndarray  # [S, Q] float32: mean score over the window's frames of every query
    probs: np.ndarray | None = None  # [S, t, H0, W0] float32 (only with return_probs=True)


@dataclass
class TextSegmentation:
    """One sentence over the whole video."""

    text: str
    masks: np.ndarray  # [T, H0, W0] bool
    chosen_query: list[int]  # one per window
    frame_scores: np.ndarray  # [T] float32: score of the chosen query in each frame
    probs: np.ndarray | None = None  # [T, H0, W0] float32 (only with return_probs=True)


@dataclass
class SegmentationResult:
    """All sentences of one video; `result[i]` is the TextSegmentation of texts[i]."""

    texts: list[str]
    windows: list[tuple[int, int]]
    per_text: list[TextSegmentation] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return self.windows[-1][1] if self.windows else 0

    def __len__(self) -> int:
        return len(self.per_text)

    def __getitem__(self, i: int) -> TextSegmentation:
        return self.per_text[i]

    def __iter__(self) -> Iterator[TextSegmentation]:
        return iter(self.per_text)


def collect_windows(texts: list[str], windows: Iterable[WindowResult]) -> SegmentationResult:
    """Concatenate streamed window results into one SegmentationResult."""
    wins = list(windows)
    per_text = []
    for s, text in enumerate(texts):
        probs = [w.probs[s] for w in wins if w.probs is not None]
        per_text.append(TextSegmentation(
            text=text,
            masks=np.concatenate([w.masks[s] for w in wins], axis=0),
            chosen_query=[int(w.chosen_query[s]) for w in wins],
            frame_scores=np.concatenate([w.frame_scores[s] for w in wins], axis=0),
            probs=np.concatenate(probs, axis=0) if len(probs) == len(wins) else None,
        ))
    return SegmentationResult(texts=list(texts), windows=[(w.start, w.end) for w in wins], per_text=per_text)


# ---------------------------------------------------------------------------------------------- helpers


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> CUDA when available, else CPU. A CUDA request without CUDA is an InputError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    return dev


def normalize_texts(texts: str | Sequence[str]) -> list[str]:
    """One or several referring expressions -> list of cleaned strings (empty ones are refused)."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, Sequence) or len(texts) == 0:
        raise InputError("give at least one referring expression (text)")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"text {i} is a {type(t).__name__}, not a string")
    return check_texts(list(texts), len(texts))


def pad_to_divisible(x: torch.Tensor, divisor: int = INPUT_SIZE_DIVISIBILITY) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B,T,3,h,w] -> zero-padded to multiples of `divisor` (bottom/right) and the pad mask
    [B,T,H,W] (True = padding), exactly as the model pads internally."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    mask = torch.zeros((*x.shape[:2], h + ph, w + pw), dtype=torch.bool, device=x.device)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
        mask[..., h:, :] = True
        mask[..., :, w:] = True
    return x, mask


def expand_visual(vis: VisualFeatures, n: int) -> VisualFeatures:
    """The features of one clip repeated for `n` sentences (batch-major, as the backbone expects)."""
    if vis.batch != 1:
        raise ValueError(f"expand_visual expects the features of one clip, got batch {vis.batch}")
    if n == 1:
        return vis
    return dataclasses.replace(
        vis,
        clip_tokens=None if vis.clip_tokens is None else vis.clip_tokens.repeat(n, *([1] * (vis.clip_tokens.dim() - 1))),
        vae_tap=vis.vae_tap.repeat(n, 1, 1, 1),
        latent_mean=vis.latent_mean.expand(n, *vis.latent_mean.shape[1:]),
        latent_std=vis.latent_std.expand(n, *vis.latent_std.shape[1:]),
        batch=n,
    )


def logits_to_original(logits: torch.Tensor, size: tuple[int, int], original: tuple[int, int]) -> torch.Tensor:
    """Mask logits [t, Hp, Wp] at the padded input size -> probabilities [t, H0, W0]: crop the padding to
    the unpadded `size`, bilinearly upsample to the `original` size, sigmoid (spec 6.1)."""
    h, w = size
    x = logits[:, None, :h, :w].float()
    if (h, w) != tuple(original):
        x = F.interpolate(x, size=tuple(original), mode="bilinear", align_corners=False)
    return x[:, 0].sigmoid()


# ---------------------------------------------------------------------------------------------- predictor


class VDITPredictor:
    """Build once (model on its device, eval mode), then `segment` / `iter_segment` videos."""

    def __init__(
        self,
        model: VDIT | None = None,
        weights: str | Path | None = None,
        device: str | torch.device | None = None,
        window: int | None = None,
        short_side: int | str | None = MODEL_SHORT_SIDE,
        max_size: int | None = EVAL_MAX_SIZE,
        threshold: float = DEFAULT_THRESHOLD,
        amp: bool | None = None,
        sharing: str = "batch",
        max_text_batch: int = DEFAULT_MAX_TEXT_BATCH,
        foundation: dict[str, str] | None = None,
        amp_dtype: torch.dtype | None = None,
    ):
        """`weights`: a folder written by `VDIT.save_pretrained` (or, with `model`, a safetensors file or
        such a folder whose trainable parameters are loaded into `model`); neither = the built-in model
        (`BUILTIN_WEIGHTS_DIR`, the miniature world's head). `short_side`: the model input's short side;
        by default the one the model's config records (`ModelConfig.input_short_side`: 64 for the
        miniature world's heads), else EVAL_SHORT_SIDE (360); `None` keeps the native size.
        `max_size=None` removes the long-side cap. `amp=None` = fp16 autocast on CUDA only
        (as the official `--amp` inference), `True` on CPU uses bfloat16; `amp_dtype` (torch.bfloat16 or
        torch.float16) overrides that choice. `foundation` overrides the foundation model locations
        recorded in the weights' config."""
        check_window(window)
        if short_side != MODEL_SHORT_SIDE:
            check_sizes(short_side, max_size)
        if not 0.0 < threshold < 1.0:
            raise InputError(f"threshold must be in (0, 1), got {threshold}")
        if sharing not in SHARING_MODES:
            raise InputError(f"sharing must be one of {SHARING_MODES}, got {sharing!r}")
        if max_text_batch < 1:
            raise InputError(f"max_text_batch must be >= 1, got {max_text_batch}")
        if amp_dtype is not None and amp_dtype not in AMP_DTYPES:
            raise InputError(f"amp_dtype must be one of {AMP_DTYPES}, got {amp_dtype!r}")
        self.device = resolve_device(device)
        self.window = window
        self.max_size = max_size
        self.threshold = float(threshold)
        self.amp = self.device.type == "cuda" if amp is None else bool(amp)
        self.sharing = sharing
        self.max_text_batch = int(max_text_batch)
        self.amp_dtype = amp_dtype
        self.model = self._build_model(model, weights, foundation).to(self.device).eval()
        self.short_side = short_side
        if short_side == MODEL_SHORT_SIDE:  # known only once the model is loaded; explicit sizes were checked above
            self.short_side = self.model.cfg.input_short_side or EVAL_SHORT_SIDE
            check_sizes(self.short_side, max_size)

    @staticmethod
    def _build_model(model: VDIT | None, weights: str | Path | None, foundation: dict[str, str] | None) -> VDIT:
        if model is None and weights is None:
            weights = check_builtin_weights()
        if model is None:
            return VDIT.from_pretrained(weights, foundation=foundation)
        if weights is not None:
            path = Path(weights)
            model.load_trainable(path / WEIGHTS_NAME if path.is_dir() else path)
        return model

    # ------------------------------------------------------------------ preprocessing

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """The model's (unpadded) input size for original frames of h x w."""
        if self.short_side is None:
            out = (h, w)
        else:
            out = resized_hw(h, w, self.short_side, self.max_size)
        if min(out) < MIN_SIDE:
            raise InputError(f"frames of {w}x{h} become {out[1]}x{out[0]} at short side {self.short_side}; "
                             f"the model needs at least {MIN_SIDE} pixels per side")
        return out

    def preprocess(self, frames: Sequence[Any], start: int = 0,
                   original: tuple[int, int] | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Frames of one window -> ([1, t, 3, h, w] normalised, resized, on the device; original (H0, W0)).

        Frames are converted one at a time, so a full-resolution float copy of the whole window never
        exists. Resizing is bilinear with antialiasing on tensors (close to the official PIL bilinear).
        `original` (from earlier windows) must match every frame's size."""
        out = []
        size = None
        for i, frame in enumerate(frames):
            x = frames_to_tensor([frame])  # validates RGB, converts to normalised float [1,3,H,W]
            hw = tuple(x.shape[-2:])
            if original is None:
                original = hw
            if hw != original:
                raise InputError(f"frame {start + i} is {hw[1]}x{hw[0]} but frame 0 is {original[1]}x{original[0]}: "
                                 "all frames of a video must have the same size")
            if size is None:
                size = self.input_size(*hw)
            x = x.to(self.device)
            if size != hw:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            out.append(x)
        if not out:
            raise InputError("the video has no frames")
        return torch.cat(out)[None], original

    # ------------------------------------------------------------------ inference

    def iter_segment(self, frames: Any, texts: str | Sequence[str], return_probs: bool = False,
                     ) -> Iterator[WindowResult]:
        """Segment `texts` in `frames` window by window, yielding each window's result as soon as it is
        computed. `frames`: a list/iterable of RGB frames (uint8 H x W x 3 arrays, PIL images, [3,H,W]
        tensors) or a [T,3,H,W] tensor. With a frame generator and a window size, at most one window of
        frames and masks is held at a time."""
        texts = normalize_texts(texts)
        original = None
        produced = False
        for index, (start, chunk) in enumerate(iter_windows(as_frame_iterable(frames), self.window)):
            x, original = self.preprocess(chunk, start, original)
            yield self._segment_window(index, start, x, original, texts, return_probs)
            produced = True
        if not produced:
            raise InputError("the video has no frames")

    def segment(self, frames: Any, texts: str | Sequence[str], return_probs: bool = False) -> SegmentationResult:
        """Segment the whole video; see `iter_segment`. Holds every mask of the video in memory."""
        texts = normalize_texts(texts)
        return collect_windows(texts, self.iter_segment(frames, texts, return_probs=return_probs))

    def _autocast(self):
        dtype = self.amp_dtype or (torch.float16 if self.device.type == "cuda" else torch.bfloat16)
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.amp)

    def _segment_window(self, index: int, start: int, x: torch.Tensor, original: tuple[int, int],
                        texts: list[str], return_probs: bool) -> WindowResult:
        t = x.shape[1]
        size = tuple(x.shape[-2:])
        xp, pad = pad_to_divisible(x)
        sizes = torch.tensor([size], dtype=torch.long, device=self.device)
        outs: list[InferenceOutput] = []
        with torch.inference_mode(), self._autocast():
            vis = self.model.backbone.encode_visual(xp) if self.sharing != "none" else None
            group = self.max_text_batch if self.sharing == "batch" else 1
            for i in range(0, len(texts), group):
                chunk = texts[i:i + group]
                n = len(chunk)
                outs.append(self.model.predict(
                    xp.expand(n, *xp.shape[1:]), chunk, pad_mask=pad.expand(n, *pad.shape[1:]),
                    sizes=sizes.expand(n, 2), visual=None if vis is None else expand_visual(vis, n)))
            masks, probs_all, best, frame_scores, query_scores = [], [], [], [], []
            for out in outs:
                for b in range(out.pred_masks.shape[0]):
                    q = int(out.best_query[b])
                    probs = logits_to_original(out.pred_masks[b], size, original)
                    masks.append((probs > self.threshold).cpu().numpy())
                    if return_probs:
                        probs_all.append(probs.cpu().numpy().astype(np.float32))
                    best.append(q)
                    frame_scores.append(out.pred_logits[b, :, q, 0].float().sigmoid().cpu().numpy())
                    query_scores.append(out.scores[b].float().cpu().numpy())
        return WindowResult(
            index=index, start=start, end=start + t, texts=list(texts),
            masks=np.stack(masks), chosen_query=np.asarray(best, dtype=np.int64),
            frame_scores=np.stack(frame_scores).astype(np.float32),
            query_scores=np.stack(query_scores).astype(np.float32),
            probs=np.stack(probs_all) if return_probs else None,
        )
