"""`vdit app`: a browser demo of referring video segmentation (optional extra `vdit[app]`, Gradio).

- `vdit.app.process`: everything the page does, without Gradio (sentences parsing, limits, running the
  predictor through `vdit segment`'s writer, the frame strip, the masks zip, bundled samples).
- `vdit.app.ui`: the Gradio page on top of it and `launch_app` (imports gradio).
"""

# Light constants (the CLI parser reads them; `vdit --help` must not import torch).
# Longest video (in frames) one request may segment; `vdit app --max-frames` changes it.
DEFAULT_MAX_FRAMES = 300
# Long videos run in windows of this many frames: vdit.inference.windows.DAVIS_WINDOW (spec 6.2).
DEFAULT_WINDOW = 36
