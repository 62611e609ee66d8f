"""The built-in model: the miniature world's VD-IT head (`vdit mini train --ship`), shipped in
vdit/assets/mini/head as a save_pretrained folder whose config names the shipped tiny foundation models
(vdit/assets/mini/foundation) package-relatively, so it loads wherever vdit is installed.

    predictor = builtin_predictor(device="cpu")                 # a VDITPredictor on the built-in model
    model = load_builtin_model()                                # or the model itself: VDITPredictor(model=model)

`VDITPredictor` itself always needs `model` or `weights`; `vdit segment` / `vdit app` without --weights,
`vdit demo` and `vdit mini eval` come here, and tell the user (`builtin_domain_note`) when the input is
outside the miniature world.
"""
from __future__ import annotations

import functools
import hashlib
import re
import string
from pathlib import Path
from typing import Any, Sequence

from vdit.errors import ModelLoadError
from vdit.inference.predictor import VDITPredictor
from vdit.mini.data import vocabulary
from vdit.mini.preset import MINI_FOUNDATION_DIR, MINI_FRAME_SIZE
from vdit.models.vdit import VDIT, WEIGHTS_NAME

BUILTIN_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "assets" / "mini" / "head"
NO_BUILTIN_WEIGHTS = (f"the built-in VD-IT weights are missing ({BUILTIN_WEIGHTS_DIR}): reinstall vdit, or pass "
                      "weights (a folder written by VDIT.save_pretrained) or a model")
# Beside the built-in head: the fingerprint of the foundation weights it was trained on.
BUILTIN_FOUNDATION_RECORD = "foundation.sha256"


def foundation_fingerprint(root: Path) -> str:
    """sha256 over the relative paths and contents of every safetensors file under a foundation folder.
    Hashed once per process and file state (path, size, mtime): the built-in model is checked by the CLI,
    the demo and the loader, and the weights are ~19 MB."""
    files = sorted(Path(root).rglob("*.safetensors"))
    state = tuple((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _fingerprint(Path(root), state)


@functools.lru_cache(maxsize=8)
def _fingerprint(root: Path, state: tuple[tuple[str, int, int], ...]) -> str:
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
        have = foundation_fingerprint(MINI_FOUNDATION_DIR)
        if have != record.read_text().strip():
            raise ModelLoadError(f"the built-in VD-IT head ({BUILTIN_WEIGHTS_DIR}) was trained on other foundation "
                                 f"weights than those in {MINI_FOUNDATION_DIR}; retrain it with `vdit mini train --ship`")
    return BUILTIN_WEIGHTS_DIR


def load_builtin_model(foundation: dict[str, str] | None = None) -> VDIT:
    """The built-in VD-IT (on the CPU, as `VDIT.from_pretrained` loads it), checked first
    (`check_builtin_weights`). `foundation` overrides the foundation model locations its config records."""
    return VDIT.from_pretrained(check_builtin_weights(), foundation=foundation)


def builtin_predictor(**options: Any) -> VDITPredictor:
    """A `VDITPredictor` on the built-in model; `options` are the predictor's other arguments (device,
    window, short_side, ..., foundation). Its input size is the model's own (64, `input_short_side`)."""
    return VDITPredictor(weights=check_builtin_weights(), **options)


def builtin_domain_note(texts: Sequence[str], size: tuple[int, int]) -> str | None:
    """One line telling that the built-in model is being used outside its world, or None.

    The built-in head was trained on the miniature world only (docs/miniature.md): 64x64 generated clips
    of coloured shapes, described with the generator's vocabulary. On anything else it still answers
    with confident masks, which mean nothing; the user should hear that once, with the way out.
    `size`: the frames' (H, W)."""
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
