"""Issue 20: `vdit evaluate` past one process and across interruptions.

- `torchrun --nproc_per_node 2 -m vdit evaluate` (gloo, CPU) writes byte-identical files and the same
  scores as one process, each rank segmenting its share of the videos (0, 2 / 1);
- every other preset through `run_benchmark` under a 2-process gloo group gives the files of one process;
- a run SIGKILLed in the middle of a video, then run again, skips the finished video, redoes the rest
  and leaves the files of an uninterrupted run; a run that fails likewise; other settings or
  --restart start over;
- `vdit evaluate` and `vdit score` draw a progress bar on a terminal only (never in a log, nor with --quiet).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vdit.cli.main import main
from vdit.inference.benchmark_session import SESSION_DIR, BenchmarkOptions
from vdit.inference.benchmarks import METRICS_FILE, run_benchmark

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SUBPROCESS_TIMEOUT_S = 300
VIDEOS = (("vid_a", 3), ("vid_b", 2), ("vid_c", 2))
# Figures that differ between two runs of the same evaluation by nature.
RUN_DEPENDENT = {"elapsed_s"}


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes), metrics.json left out (see _metrics)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != METRICS_FILE}


def _metrics(folder: Path) -> dict:
    data = json.loads((folder / METRICS_FILE).read_text())
    return {k: v for k, v in data.items() if k not in RUN_DEPENDENT}


def _assert_same_outputs(a: Path, b: Path) -> None:
    ta, tb = _tree(a), _tree(b)
    assert sorted(ta) == sorted(tb)
    different = [name for name in ta if ta[name] != tb[name]]
    assert not different, different[:5]
    ma, mb = _metrics(a), _metrics(b)
    # the two runs name their own folders; everything else must agree
    for m, folder in ((ma, a), (mb, b)):
        for key in ("submission_zip", "results_dir", "predictions"):
            if key in m:
                m[key] = Path(m[key]).relative_to(folder).as_posix()
    assert ma == mb


@pytest.fixture(scope="module")
def three_videos(tmp_path_factory):
    """Ref-YouTube-VOS valid split with Annotations: 3 videos (3, 2, 2 frames of 64x96), a red box
    (object 1) and a green box (object 2) on noise, one expression about each."""
    from vdit.data.ytvos_writer import write_ytvos_video

    root = tmp_path_factory.mktemp("ytvos3")
    for k, (vid, t) in enumerate(VIDEOS):
        rng = np.random.default_rng(20 + k)
        frames = rng.integers(0, 50, (t, 64, 96, 3), dtype=np.uint8)
        ids = np.zeros((t, 64, 96), np.uint8)
        for i in range(t):
            frames[i, 8:30, 6 + 2 * i:40 + 2 * i] = (220, 40, 40)
            ids[i, 8:30, 6 + 2 * i:40 + 2 * i] = 1
            frames[i, 34:58, 50 - 2 * i:90 - 2 * i] = (40, 200, 60)
            ids[i, 34:58, 50 - 2 * i:90 - 2 * i] = 2
        write_ytvos_video(root, "valid", vid, frames, ids, {"0": {"exp": "the red box", "obj_id": 1},
                                                            "1": {"exp": "the green box", "obj_id": 2}})
    return root


def _cli_args(weights: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["evaluate", "--preset", "ytvos", "--weights", str(weights), "--data", str(data), "--out", str(out),
            "--short-side", "64", "--device", "cpu", "--quiet", *extra]


@pytest.fixture(scope="module")
def one_process(three_videos, tiny_weights, tmp_path_factory):
    """The reference: one process, through the CLI (the test session runs torch on one thread)."""
    out = tmp_path_factory.mktemp("one") / "out"
    assert main(_cli_args(tiny_weights, three_videos, out)) == 0
    return out


# The entry point each torchrun process runs: `vdit` itself, with VDITPredictor.segment noting which
# videos (by frame count and first text) this rank segmented.
SPY_MAIN = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import vdit.inference.predictor as predictor

    real = predictor.VDITPredictor.segment
    def spy(self, frames, texts, **kw):
        with open(Path(os.environ["SPY_DIR"]) / f"rank{os.environ['RANK']}.jsonl", "a") as f:
            f.write(json.dumps(len(frames)) + "\\n")
        return real(self, frames, texts, **kw)
    predictor.VDITPredictor.segment = spy
    from vdit.cli.main import main
    raise SystemExit(main(sys.argv[1:]))
""")


def _torchrun(script: Path, args: list[str], extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *args]
    return subprocess.run(cmd, cwd=REPO, env={**_env(), **extra_env}, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)


@pytest.mark.slow
def test_torchrun_two_processes_write_the_files_of_one(three_videos, tiny_weights, one_process, tmp_path):
    script = tmp_path / "spy_main.py"
    script.write_text(SPY_MAIN)
    out = tmp_path / "two"
    proc = _torchrun(script, _cli_args(tiny_weights, three_videos, out), {"SPY_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(2 processes)" in proc.stdout and proc.stdout.count('"J&F"') == 1  # rank 0 alone reports
    # rank r segmented videos r, r + 2: vid_a (3 frames) and vid_c (2) / vid_b (2)
    calls = {r: [json.loads(x) for x in (tmp_path / f"rank{r}.jsonl").read_text().split()] for r in (0, 1)}
    assert calls == {0: [3, 2], 1: [2]}
    _assert_same_outputs(one_process, out)
    assert not (out / SESSION_DIR).exists()  # nothing left to resume once metrics.json is written
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["n_videos"] == 3 and metrics["submission_valid"] and len(metrics["per_expression"]) == 6


# Every other preset, under a real 2-process gloo group, with the colour oracle (exact masks): the
# script writes each preset's outputs into OUT/<preset>.
ORACLE_PRESETS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    sys.path.insert(0, sys.argv[1])
    from conftest import ColourOracle
    from vdit.engine import distributed as du
    from vdit.inference.benchmark_session import BenchmarkOptions
    from vdit.inference.benchmarks import run_benchmark

    torch.set_num_threads(1)
    roots, out = json.loads(sys.argv[2]), Path(sys.argv[3])
    info = du.init_distributed("cpu")
    for preset, root in roots.items():
        metrics = run_benchmark(preset, ColourOracle(), BenchmarkOptions(
            data_root=root, out_dir=out / preset, short_side=64, device="cpu"))
        assert metrics["benchmark"] == preset  # every rank gets rank 0's scores
    du.cleanup()
""")


def test_every_preset_under_two_processes(davis_root, mevis_root, a2d_root, jhmdb_root, refcoco_root, oracle,
                                          tmp_path):
    roots = {"davis": davis_root, "mevis": mevis_root, "a2d": a2d_root, "jhmdb": jhmdb_root,
             "refcoco": refcoco_root}
    script = tmp_path / "presets.py"
    script.write_text(ORACLE_PRESETS)
    proc = _torchrun(script, [str(HERE), json.dumps({k: str(v) for k, v in roots.items()}), str(tmp_path / "two")],
                     {})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for preset, root in roots.items():
        one = tmp_path / "one" / preset
        run_benchmark(preset, type(oracle)(), BenchmarkOptions(data_root=root, out_dir=one, short_side=64,
                                                                device="cpu"))
        _assert_same_outputs(one, tmp_path / "two" / preset)


# One process that dies by SIGKILL (no clean-up code can run) after writing the first expression of
# its second video: vid_a is finished and recorded, vid_b half written.
KILLED = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    import vdit.evaluation.ytvos_submission as sub
    real = sub.write_expression_masks
    def dying(out_dir, video, exp_id, frames, masks):
        paths = real(out_dir, video, exp_id, frames, masks)
        if video == "vid_b":
            os.kill(os.getpid(), signal.SIGKILL)
        return paths
    sub.write_expression_masks = dying
    from vdit.cli.main import main
    main(sys.argv[1:])
""")


def test_a_killed_run_resumes_to_the_files_of_an_uninterrupted_one(three_videos, tiny_weights, one_process,
                                                                   tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = _cli_args(tiny_weights, three_videos, out)
    proc = subprocess.run([sys.executable, "-c", KILLED, *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (out / METRICS_FILE).exists()
    assert [p.name for p in (out / SESSION_DIR / "done").iterdir()] == ["vid_a.json"]
    assert (out / "Annotations" / "vid_b" / "0").is_dir()  # the half-written video

    from vdit.inference.predictor import VDITPredictor

    segmented = []
    real = VDITPredictor.segment
    monkeypatch.setattr(VDITPredictor, "segment",
                        lambda self, frames, texts, **kw: segmented.append(len(frames)) or real(self, frames, texts, **kw))
    assert main(args) == 0
    assert segmented == [2, 2]  # vid_b and vid_c; vid_a was finished
    _assert_same_outputs(one_process, out)


class Boom(RuntimeError):
    pass


def _dies_after(oracle, calls: int):
    real = oracle.segment

    def segment(*args, **kw):
        if oracle.calls >= calls:
            raise Boom("the run dies")
        return real(*args, **kw)

    oracle.segment = segment
    return oracle


def test_a_failed_run_keeps_its_finished_videos_and_the_next_resumes(ytvos_root, oracle, bench_options, tmp_path):
    ColourOracle = type(oracle)
    out = tmp_path / "new" / "out"
    with pytest.raises(Boom):  # vid_a finished, dies on vid_b
        run_benchmark("ytvos", _dies_after(oracle, 1), bench_options(ytvos_root, out))
    assert (out / "Annotations" / "vid_a").is_dir() and not (out / METRICS_FILE).exists()
    again = ColourOracle()
    metrics = run_benchmark("ytvos", again, bench_options(ytvos_root, out))
    assert again.calls == 1 and metrics["n_videos"] == 2  # only vid_b was segmented
    run_benchmark("ytvos", ColourOracle(), bench_options(ytvos_root, tmp_path / "whole"))
    _assert_same_outputs(tmp_path / "whole", out)


# (preset, segment calls of the first item(s), of the whole run): a Ref-DAVIS video is one call per
# annotation set, a RefCOCO sample one call.
@pytest.mark.parametrize("preset, finished_calls, total_calls", [("davis", 4, 8), ("refcoco", 2, 3)])
def test_other_drivers_resume(preset, finished_calls, total_calls, davis_root, refcoco_root, oracle, bench_options,
                              tmp_path):
    ColourOracle = type(oracle)
    root = {"davis": davis_root, "refcoco": refcoco_root}[preset]
    out = tmp_path / "out"
    with pytest.raises(Boom):
        run_benchmark(preset, _dies_after(oracle, finished_calls), bench_options(root, out))
    again = ColourOracle()
    run_benchmark(preset, again, bench_options(root, out))
    whole = ColourOracle()
    run_benchmark(preset, whole, bench_options(root, tmp_path / "whole"))
    assert whole.calls == total_calls and again.calls == total_calls - finished_calls
    _assert_same_outputs(tmp_path / "whole", out)


def test_other_settings_or_restart_start_over(ytvos_root, oracle, bench_options, tmp_path):
    ColourOracle = type(oracle)
    out = tmp_path / "out"
    for kw, expected_calls in (({"threshold": 0.6}, 2), ({"resume": False}, 2), ({}, 1)):
        with pytest.raises(Boom):  # leaves vid_a finished each time
            run_benchmark("ytvos", _dies_after(ColourOracle(), 1), bench_options(ytvos_root, out))
        again = ColourOracle()
        run_benchmark("ytvos", again, bench_options(ytvos_root, out, **kw))
        assert again.calls == expected_calls, kw


def test_ranks_deal_the_items_out():
    import torch

    from vdit.inference.benchmark_session import EvalSession

    keys = [f"v{i}" for i in range(7)]
    shares = [EvalSession(Path("/nonexistent"), {}, torch.device("cpu"), rank=r, world_size=3).own(keys)
              for r in range(3)]
    assert shares == [["v0", "v3", "v6"], ["v1", "v4"], ["v2", "v5"]]
    assert sorted(k for share in shares for k in share) == sorted(keys)


def test_evaluate_draws_a_bar_on_a_terminal_only(ytvos_root, tiny_weights, tmp_path, capsys, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    args = ["evaluate", "--preset", "ytvos", "--weights", str(tiny_weights), "--data", str(ytvos_root),
            "--short-side", "64", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "log")]) == 0
    assert capsys.readouterr().err == ""  # a log / CI: no progress at all
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert main(args + ["--out", str(tmp_path / "tty")]) == 0
    drawn = screen.getvalue()
    assert "ytvos" in drawn and "2/2" in drawn and "video" in drawn and "\r" in drawn
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert main(args + ["--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    assert screen.getvalue() == ""


def test_vdit_score_draws_a_bar_on_a_terminal_only(davis_root, oracle, bench_options, tmp_path, capsys, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    run_benchmark("davis", oracle, bench_options(davis_root, tmp_path / "pred"))
    args = ["score", "ref-davis", "--davis-root", str(davis_root / "DAVIS"), "--results-root",
            str(tmp_path / "pred" / "DVS_Annotations"), "--sequences", "blackswan,bmx"]
    assert main(args) == 0
    assert capsys.readouterr().err == ""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert main(args) == 0
    assert "8/8" in screen.getvalue() and "sequence" in screen.getvalue()  # 2 sequences x 4 annotation sets
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert main(args + ["--quiet"]) == 0 and screen.getvalue() == ""
