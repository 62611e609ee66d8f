"""`vdit app` on the command line: its options reach the server, and every mistake (missing extra, bad
weights, bad numbers) is one line on stderr with exit code 2, before anything is loaded or served."""
from __future__ import annotations

import sys

import pytest

import vdit.app.ui as ui
from vdit.cli.main import build_parser, main


@pytest.fixture
def no_server(monkeypatch):
    """Record launch_app's arguments instead of serving."""
    calls = []
    monkeypatch.setattr(ui, "require_gradio", lambda: None)
    monkeypatch.setattr(ui, "launch_app", lambda **kwargs: calls.append(kwargs) or (None, ""))
    return calls


def test_missing_gradio_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    assert main(["app"]) == 2
    assert capsys.readouterr().err == "vdit app: error: gradio is not installed: pip install 'vdit[app]'\n"


def test_options_reach_the_server(no_server):
    assert main(["app", "--port", "0", "--window", "0", "--max-frames", "10", "--device", "cpu"]) == 0
    assert no_server == [dict(weights=None, host="127.0.0.1", port=0, device="cpu", window=None, max_frames=10,
                              samples_dir=None, block=True)]
    no_server.clear()
    assert main(["app"]) == 0
    assert no_server[0]["host"] == "127.0.0.1" and no_server[0]["port"] == 7860 and no_server[0]["window"] == 36


@pytest.mark.parametrize("argv, fragment", [
    (["--weights", "/nonexistent/vdit-weights"], "weights folder not found: /nonexistent/vdit-weights"),
    (["--max-frames", "0"], "--max-frames must be >= 1"),
    (["--window", "-1"], "--window must be >= 0"),
    (["--port", "70000"], "--port must be in 0..65535"),
])
def test_bad_options_are_one_line(argv, fragment, no_server, capsys):
    assert main(["app", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vdit app: error: ") and fragment in err and err.count("\n") == 1
    assert no_server == []


def test_listed_in_help():
    assert "app" in build_parser().format_help()
