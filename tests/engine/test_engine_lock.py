"""Issue 20: one process per run folder (a lock file), and a run that fails to start leaves nothing."""
from __future__ import annotations

import os
import shutil

import pytest

from _engine_helpers import tiny_args
from vdit.cli.main import main
from vdit.engine.checkpoint import LOCK_FILE, RunLock
from vdit.errors import ConfigError


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and p.name != LOCK_FILE}


def test_run_lock_is_exclusive_and_names_its_holder(tmp_path):
    first = RunLock(tmp_path).acquire()
    with pytest.raises(ConfigError, match=rf"is in use by vdit train pid {os.getpid()} on "):
        RunLock(tmp_path).acquire()
    first.release()
    RunLock(tmp_path).acquire().release()  # free again


def test_resume_against_a_live_run_is_refused(engine_one_step_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(engine_one_step_run, run)
    before = _snapshot(run)
    live = RunLock(run).acquire()  # stands for the process still training in that folder
    try:
        code = main(["train", "--resume", str(run), "--set", "train.max_steps=2"])
    finally:
        live.release()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"run folder {run} is in use by vdit train pid {os.getpid()}" in err[0]
    assert _snapshot(run) == before  # config.yaml, logs and checkpoints untouched


def test_a_finished_run_releases_its_lock(engine_one_step_run):
    RunLock(engine_one_step_run).acquire().release()


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "empty-folder"])
def test_a_run_that_fails_to_start_removes_what_it_wrote(tiny_root, engine_synth_root, tmp_path, capsys,
                                                         existing):
    not_weights = tmp_path / "notes.safetensors"
    not_weights.write_text("not a safetensors file")
    run = tmp_path / "runs" / "r1"
    if existing:
        run.mkdir(parents=True)
    code = main(tiny_args(tiny_root, engine_synth_root, run) + ["--init-from", str(not_weights)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "notes.safetensors" in err[-1]
    if existing:  # the user's folder stays, empty again
        assert run.is_dir() and [p.name for p in run.iterdir()] in ([], [LOCK_FILE])
    else:  # config.yaml, metrics.jsonl, train.log and the folders above them are gone
        assert not (tmp_path / "runs").exists()
