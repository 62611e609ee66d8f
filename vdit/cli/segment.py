"""`vdit segment`: referring segmentation of your own video, frames folder or image.

    vdit segment --video clip.mp4 --text "a dog running on the beach" --weights runs/x/final --out out/
    vdit segment --videos clips/ --text "a dog" --out out/      # a folder (or a list file) of videos

Without --weights the built-in model is used: the miniature world's VD-IT head on its tiny foundation
models (shipped in vdit/assets/mini/, trained on 64x64 generated clips of coloured shapes; inputs are
resized to short side 64 unless --short-side is given). It understands the benchmark's vocabulary
("the small red circle moving left"), not real-world videos.

Writes DIR/masks/<text_index>/<frame:05d>.png (0/255), DIR/overlay.mp4 and DIR/summary.json; the
outputs appear in DIR only once complete, summary.json last (see vdit/inference/export.py). Bad input
fails with one line before anything is loaded or created; with the built-in model, input from outside
its world (other words, other frame sizes) gets one note line saying its masks there are guesses.

With --videos, the model is loaded once and every input gets its own DIR/<name>/ folder (as above),
then DIR/batch_summary.json lists them all (vdit/inference/batch.py). Every input is probed before the
model loads. A video that fails on the way is recorded there and the others still run (exit code 1).
A progress bar (frames; videos and frames with --videos) is drawn when stderr is a terminal.
"""
from __future__ import annotations

import argparse
import sys

from vdit.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment the objects a text refers to in a video / frames folder / image")
    inputs = p.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--video", metavar="PATH",
                        help="video file (mp4, ...), folder of frames (sorted by name) or one image (a 1-frame video)")
    inputs.add_argument("--videos", metavar="DIR|LIST",
                        help="many inputs with one loaded model: a folder (its video files, images and frames "
                             "folders) or a text file with one input path per line; OUT/<name>/ per input and "
                             "OUT/batch_summary.json")
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
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")
    p.set_defaults(func=run)


def _foundation_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InputError(f"--foundation expects KEY=PATH, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    from vdit.cli.checks import check_output_dir, check_text_length, check_weights
    from vdit.cli.progress import Progress, progress_enabled
    from vdit.data.transforms import EVAL_MAX_SIZE
    from vdit.inference.batch import BATCH_SUMMARY, expected_frames, list_inputs, output_names, segment_videos
    from vdit.inference.export import segment_to_dir
    from vdit.inference.io import open_source
    from vdit.inference.predictor import DEFAULT_THRESHOLD, MODEL_SHORT_SIDE, VDITPredictor, normalize_texts
    from vdit.mini.builtin import builtin_domain_note, builtin_predictor
    from vdit.inference.windows import check_window

    # Cheap checks first: nothing is loaded, and nothing created, before the inputs and the output folder
    # are known good; the output folder appears only once the predictor is built (segment_to_dir).
    check_window(args.window)
    texts = normalize_texts(args.text)
    check_text_length(texts)
    foundation = _foundation_overrides(args.foundation)
    check_weights(args.weights, foundation)
    out = check_output_dir(args.out)
    if args.videos is not None:
        paths = list_inputs(args.videos)
        names = output_names(paths)
    else:
        paths, names = [args.video], [None]
    sources = [open_source(path, fps=args.fps, max_frames=args.max_frames) for path in paths]

    max_size = EVAL_MAX_SIZE if args.max_size is None else (args.max_size or None)
    options = dict(
        device=args.device, window=args.window,
        short_side=MODEL_SHORT_SIDE if args.short_side is None else args.short_side, max_size=max_size,
        threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold, amp=args.amp,
        sharing=args.sharing, foundation=foundation or None,
    )
    predictor = builtin_predictor(**options) if args.weights is None else VDITPredictor(weights=args.weights, **options)
    for source in sources:  # frames too small for these sizes fail before any output exists
        predictor.input_size(*source.size)
    if args.weights is None:
        notes = [builtin_domain_note(texts, source.size) for source in sources]
        note = next((n for n in notes if n), None)
        if note:  # once, for the first input that is outside the built-in model's world
            print(note, file=sys.stderr)

    enabled = progress_enabled(args.quiet)
    extra = {"weights": str(args.weights) if args.weights else "built-in"}
    frames_bar = Progress(enabled, unit="frame", leave=args.videos is None, position=1 if args.videos else None)

    def progress(win) -> None:
        frames_bar.advance(f"frames {win.start}-{win.end - 1}", n=win.end - win.start)

    if args.videos is None:
        frames_bar.start(total=expected_frames(sources[0]), desc=sources[0].path.name)
        try:
            summary = segment_to_dir(predictor, sources[0], texts, out, progress=progress, extra=extra)
        finally:
            frames_bar.close()
        print(f"segmented {summary['num_frames']} frames x {len(texts)} text(s) in {summary['elapsed_s']:.1f}s; "
              f"wrote {out}/masks/, {out}/overlay.mp4, {out}/summary.json")
        return 0

    videos_bar = Progress(enabled, desc="videos", unit="video", position=0)
    videos_bar.start(total=len(sources))

    def on_video(name: str, source) -> None:
        frames_bar.start(total=expected_frames(source), desc=name)

    def on_done(entry: dict) -> None:
        videos_bar.advance(f"{entry['name']}: {entry['status']}")

    try:
        batch = segment_videos(predictor, list(zip(names, sources)), texts, out, progress=progress,
                               on_video=on_video, on_done=on_done, extra=extra)
    finally:
        frames_bar.close()
        videos_bar.close()
    for entry in batch["videos"]:
        if entry["status"] == "failed":
            print(f"vdit segment: {entry['input']}: {entry['error']}", file=sys.stderr)
    print(f"segmented {batch['num_done']} of {batch['num_videos']} video(s) x {len(texts)} text(s) in "
          f"{batch['elapsed_s']:.1f}s; wrote {out}/<name>/ per video"
          + (f" and {out}/{BATCH_SUMMARY}" if (out / BATCH_SUMMARY).is_file() else ""))
    return 1 if batch["num_failed"] else 0
