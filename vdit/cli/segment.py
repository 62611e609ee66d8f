"""`vdit segment`: referring segmentation of your own video, frames folder or image.

    vdit segment --video clip.mp4 --text "a dog running on the beach" --weights runs/x/final --out out/

Without --weights the built-in model is used: the miniature world's VD-IT head on its tiny foundation
models (shipped in vdit/assets/mini/, trained on 64x64 generated clips of coloured shapes; inputs are
resized to short side 64 unless --short-side is given). It understands the benchmark's vocabulary
("the small red circle moving left"), not real-world videos.

Writes DIR/masks/<text_index>/<frame:05d>.png (0/255), DIR/overlay.mp4 and DIR/summary.json; the
outputs appear in DIR only once complete, summary.json last (see vdit/inference/export.py). Bad input
fails with one line before anything is loaded or created; with the built-in model, input from outside
its world (other words, other frame sizes) gets one note line saying its masks there are guesses.
"""
from __future__ import annotations

import argparse
import sys

from vdit.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment the objects a text refers to in a video / frames folder / image")
    p.add_argument("--video", required=True, metavar="PATH",
                   help="video file (mp4, ...), folder of frames (sorted by name) or one image (a 1-frame video)")
    p.add_argument("--text", action="append", required=True, metavar="TEXT",
                   help="referring expression (repeat for several; masks/<i>/ follows their order)")
    p.add_argument("--weights", metavar="DIR",
                   help="folder written by VDIT.save_pretrained (default: the built-in miniature-world model)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--window", type=int, default=None, metavar="N",
                   help="frames per window for long videos (Ref-DAVIS uses 36); default: whole video as one clip")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    p.add_argument("--short-side", type=int, default=None, metavar="PX",
                   help="model input short side (default: the size the weights' config records, 64 for "
                        "the built-in model; 360, the evaluation size, when it records none)")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="cap on the model input long side (default 640; 0 = no cap)")
    p.add_argument("--threshold", type=float, default=None, help="mask threshold on probabilities (default 0.5)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="only the first N frames")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the overlay for frames folders / images (default 25); overrides a video's")
    p.add_argument("--sharing", default="batch", choices=["batch", "loop", "none"],
                   help="share the text-independent backbone work between texts: batch (default), loop, none")
    amp = p.add_mutually_exclusive_group()
    amp.add_argument("--amp", dest="amp", action="store_true", default=None,
                     help="autocast (fp16 on CUDA, bf16 on CPU); default: on for CUDA only")
    amp.add_argument("--no-amp", dest="amp", action="store_false")
    p.add_argument("--foundation", action="append", default=[], metavar="KEY=PATH",
                   help="override a foundation model location of the weights' config (t2v, clip_vision, text_encoder)")
    p.add_argument("--quiet", action="store_true", help="no per-window progress lines on stderr")
    p.set_defaults(func=run)


def _foundation_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InputError(f"--foundation expects KEY=PATH, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _check_weights(weights: str | None, foundation: dict[str, str]) -> None:
    """The weights folder (or the built-in model) and the foundation folders its config names exist."""
    from vdit.cli.checks import check_weights_dir, check_weights_foundation

    if weights is None:
        from vdit.inference.predictor import check_builtin_weights

        check_weights_foundation(check_builtin_weights(), foundation)
        return
    check_weights_foundation(check_weights_dir(weights), foundation)


def run(args: argparse.Namespace) -> int:
    from vdit.cli.checks import check_output_dir, check_text_length
    from vdit.data.transforms import EVAL_MAX_SIZE
    from vdit.inference.export import segment_to_dir
    from vdit.inference.io import open_source
    from vdit.inference.predictor import (DEFAULT_THRESHOLD, MODEL_SHORT_SIDE, VDITPredictor, builtin_domain_note,
                                          normalize_texts)
    from vdit.inference.windows import check_window

    # Cheap checks first: nothing is loaded, and nothing created, before the inputs and the output folder
    # are known good; the output folder appears only once the predictor is built (segment_to_dir).
    check_window(args.window)
    texts = normalize_texts(args.text)
    check_text_length(texts)
    foundation = _foundation_overrides(args.foundation)
    _check_weights(args.weights, foundation)
    out = check_output_dir(args.out)
    source = open_source(args.video, fps=args.fps, max_frames=args.max_frames)

    max_size = EVAL_MAX_SIZE if args.max_size is None else (args.max_size or None)
    predictor = VDITPredictor(
        weights=args.weights, device=args.device, window=args.window,
        short_side=MODEL_SHORT_SIDE if args.short_side is None else args.short_side, max_size=max_size,
        threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold, amp=args.amp,
        sharing=args.sharing, foundation=foundation or None,
    )
    predictor.input_size(*source.size)  # frames too small for these sizes fail before any output exists
    if args.weights is None:
        note = builtin_domain_note(texts, source.size)
        if note:
            print(note, file=sys.stderr)

    def progress(win) -> None:
        print(f"frames {win.start}-{win.end - 1}: chosen queries {win.chosen_query.tolist()}", file=sys.stderr)

    summary = segment_to_dir(predictor, source, texts, out, progress=None if args.quiet else progress,
                             extra={"weights": str(args.weights) if args.weights else "built-in"})
    print(f"segmented {summary['num_frames']} frames x {len(texts)} text(s) in {summary['elapsed_s']:.1f}s; "
          f"wrote {out}/masks/, {out}/overlay.mp4, {out}/summary.json")
    return 0
