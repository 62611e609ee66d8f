"""The Gradio page of `vdit app` and how it is served (loopback by default, no share link, no telemetry).

The page: pick a bundled sample or upload a video, type one sentence per line, optionally limit the run
to the first N frames, press Segment. It shows the overlay video, a frame strip with each sentence's
colour, and offers the masks (zip of PNGs) and summary.json. Errors from `vdit.app.process` are shown
as their one-line message in the status box, never as a traceback.
"""
from __future__ import annotations

import atexit
import html
import ipaddress
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from vdit.app.process import (DEFAULT_MAX_FRAMES, DEFAULT_WINDOW, MAX_SENTENCES, Sample, SegmentApp,
                              default_samples_dir, folder_samples, generated_sample)
from vdit.errors import VditError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'vdit[app]'"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MAX_UPLOAD = "500mb"
# Gradio's own cache (uploads, served copies): swept hourly of files older than an hour.
CACHE_SWEEP = (3600, 3600)
TITLE = "VD-IT: referring video object segmentation"
CSS = "#status .vdit-error { color: #b00020; font-weight: 600; } #status p { margin: 0.2em 0; }"


def require_gradio() -> Any:
    """Import gradio with telemetry off; a one-line VditError naming the extra when it is missing."""
    # Set before the import: gradio reads it at import and launch time (usage analytics, version check).
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as exc:
        raise VditError(f"gradio is not installed: {INSTALL_HINT}") from exc
    return gradio


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port the OS reports free on `host` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _status_html(lines: list[str], error: bool = False) -> str:
    cls = ' class="vdit-error"' if error else ""
    return "".join(f"<p{cls if i == 0 else ''}>{html.escape(line)}</p>" for i, line in enumerate(lines))


def run_request(app: SegmentApp, video: str | None, text: str | None, first_frames: Any,
                progress: Any = None) -> tuple[Any, ...]:
    """One press of Segment -> (status HTML, overlay, strip, masks zip, summary.json) paths; on error
    the status is the one-line message and the outputs are cleared."""
    try:
        result = app.run(video, text, first_frames, progress=progress)
    except VditError as exc:
        return _status_html([f"Error: {exc}"], error=True), None, None, None, None
    except Exception as exc:  # a bug, not a user mistake: log it, keep the page to one line
        logger.exception("vdit app: segmentation failed")
        first = (str(exc).splitlines() or [""])[0]
        return (_status_html([f"Internal error ({type(exc).__name__}: {first}); see the server log."], error=True),
                None, None, None, None)
    lines = [result.message] + ([result.note] if result.note else [])
    return _status_html(lines), str(result.overlay), str(result.strip), str(result.masks_zip), str(result.summary)


def build_blocks(app: SegmentApp, samples: list[Sample]) -> Any:
    """The page (a gr.Blocks) on top of `app`; `samples` fill the sample picker."""
    gr = require_gradio()
    by_label = {s.label: s for s in samples}
    if app.weights is None:
        model_line = ("Model: the built-in miniature VD-IT (trained on generated clips of coloured shapes; "
                      "try the generated sample). Start with `vdit app --weights DIR` for a real model.")
    else:
        model_line = f"Model: `{app.weights}`."
    window = app.predictor.window
    limits = (f"Runs in windows of {window} frames" if window else "Runs the whole video as one clip") + \
        f" on {app.predictor.device}; at most {app.max_frames} frames and {MAX_SENTENCES} sentences per request."

    def pick_sample(label: str | None) -> tuple[Any, Any]:
        sample = by_label.get(label or "")
        if sample is None:
            return gr.update(), gr.update()
        return str(sample.path), "\n".join(sample.sentences)

    def segment(video: str | None, text: str | None, first_frames: Any,
                progress: Any = gr.Progress()) -> tuple[Any, ...]:
        def report(done: int, total: int | None, desc: str) -> None:
            progress((done, total), desc=desc, unit="frames")

        return run_request(app, video, text, first_frames, report)

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=CACHE_SWEEP) as blocks:
        gr.Markdown(f"## {TITLE}\n{model_line}  \n{limits}")
        with gr.Row():
            with gr.Column():
                sample = gr.Dropdown(choices=list(by_label), value=None, label="Bundled sample",
                                     elem_id="sample", interactive=True)
                video = gr.Video(sources=["upload"], label="Video", elem_id="input-video")
                text = gr.Textbox(lines=3, label="Sentences (one per line)", elem_id="sentences",
                                  placeholder="the small red circle moving left")
                first = gr.Number(value=0, precision=0, minimum=0, label="First frames only (0 = all)",
                                  elem_id="first-frames")
                run = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.HTML(elem_id="status")
                overlay = gr.Video(label="Overlay", interactive=False, elem_id="overlay", loop=True,
                                   buttons=["download"])  # no "share": it posts to Hugging Face
                with gr.Row():
                    masks = gr.File(label="Masks (zip of PNGs)", interactive=False, elem_id="masks-zip")
                    summary = gr.File(label="summary.json", interactive=False, elem_id="summary")
        strip = gr.Image(label="Frame strip (each sentence in its colour)", type="filepath", interactive=False,
                         elem_id="strip", buttons=["download", "fullscreen"])
        sample.change(pick_sample, inputs=sample, outputs=[video, text])
        run.click(segment, inputs=[video, text, first], outputs=[status, overlay, strip, masks, summary],
                  concurrency_limit=1)
    return blocks


def launch_app(weights: str | None = None, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT,
               device: str | None = None, window: int | None = DEFAULT_WINDOW,
               max_frames: int = DEFAULT_MAX_FRAMES, samples_dir: str | Path | None = None,
               block: bool = True, quiet: bool = False) -> tuple[Any, str]:
    """Load the model, build the page and serve it on host:port (port 0 or None: a free one).
    `block=False` returns (blocks, url) with the server running in a thread (`blocks.close()` stops it)."""
    gr = require_gradio()
    from vdit.inference.predictor import VDITPredictor
    from vdit.mini.builtin import builtin_predictor

    options = dict(device=device, window=window)
    predictor = builtin_predictor(**options) if weights is None else VDITPredictor(weights=weights, **options)
    work_root = Path(tempfile.mkdtemp(prefix="vdit-app-"))
    atexit.register(shutil.rmtree, work_root, True)
    app = SegmentApp(predictor, work_root / "runs", weights=str(weights) if weights else None,
                     max_frames=max_frames)
    folder = Path(samples_dir) if samples_dir is not None else default_samples_dir()
    samples = [generated_sample(work_root / "samples")] + folder_samples(folder)
    blocks = build_blocks(app, samples)
    if not port:
        port = free_port(host)
    if not is_loopback(host):
        print(f"vdit app: listening on {host}: anyone who can reach this machine can use the app", file=sys.stderr)
    allowed = [str(work_root)] + ([str(folder.resolve())] if folder is not None and folder.is_dir() else [])
    try:
        blocks.queue(default_concurrency_limit=1).launch(
            server_name=host, server_port=int(port), share=False, prevent_thread_lock=True, quiet=True,
            show_error=False, max_file_size=MAX_UPLOAD, allowed_paths=allowed, ssr_mode=False, pwa=False,
            mcp_server=False, run_history=False, footer_links=[], inbrowser=False, css=CSS,
            theme=gr.themes.Default())
    except OSError as exc:  # port in use / not bindable
        raise VditError(f"cannot serve on {host}:{port}: the address is in use or not available here "
                        "(--port 0 picks a free port)") from exc
    url = f"http://{host}:{port}/"
    if not quiet:  # gradio's own banner would suggest share=True, which this app never uses
        print(f"vdit app: serving {url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    if block:
        try:
            blocks.block_thread()
        finally:
            blocks.close()
    return blocks, url
