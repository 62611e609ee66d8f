"""Run records: JSON lines always (valid JSON even for NaN), TensorBoard optional."""
from __future__ import annotations

import io
import json
import sys

from vdit.engine.metrics import LOG_FILE, METRICS_FILE, RunLogger, read_metrics


def test_without_tensorboard_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` fail
    stream = io.StringIO()
    log = RunLogger(tmp_path, stream=stream)
    assert not log.has_tensorboard
    log.scalars(1, {"loss": 1.0})  # a no-op without TensorBoard
    log.record("train", step=1, loss=float("nan"), grad_norm=2.5)
    log.info("hello")
    log.close()
    out = stream.getvalue()
    assert out.count("tensorboard is not installed") == 1 and "[vdit train] hello" in out
    rows = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert rows[0]["loss"] == "nan" and rows[0]["grad_norm"] == 2.5 and rows[0]["event"] == "train"
    assert read_metrics(tmp_path) == rows
    assert "hello" in (tmp_path / LOG_FILE).read_text()


def test_disabled_logger_writes_nothing(tmp_path):
    stream = io.StringIO()
    log = RunLogger(tmp_path, enabled=False, stream=stream)
    log.info("x")
    log.record("train", step=1)
    log.close()
    assert stream.getvalue() == "" and not any(tmp_path.iterdir())


def test_tensorboard_events_when_installed(tmp_path):
    import pytest

    pytest.importorskip("tensorboard")
    log = RunLogger(tmp_path, stream=io.StringIO())
    assert log.has_tensorboard
    log.scalars(3, {"loss": 0.5})
    log.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir())
