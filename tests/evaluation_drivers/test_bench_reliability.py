"""Issue 20 on the benchmark drivers: the model's own input size by default, progress inside a video,
strict metrics.json, and no half-written output folder after a failure."""
import json
import math
from types import SimpleNamespace

import pytest
from torch import nn

from vdit.inference import benchmarks_video
from vdit.inference.benchmarks import METRICS_FILE, BenchmarkOptions, run_benchmark
from vdit.models.vdit import VDIT

H, W = 64, 96  # the frames of the drivers' tiny benchmarks (conftest)


class Sized(nn.Module):
    """The colour oracle behind a model config that records an input size; remembers the unpadded
    sizes it is given."""

    def __init__(self, oracle, input_short_side):
        super().__init__()
        self.inner = oracle
        self.backbone = oracle.backbone
        self.cfg = SimpleNamespace(input_short_side=input_short_side)
        self.sizes = []

    def forward(self, frames, texts, pad_mask=None, sizes=None, **kw):
        self.sizes.extend(tuple(int(v) for v in s) for s in sizes)
        return self.inner(frames, texts, pad_mask=pad_mask, sizes=sizes, **kw)

    def refine_masks(self, dyn_sel, levels):
        return self.inner.refine_masks(dyn_sel, levels)

    predict = VDIT.predict
    inference_outputs = VDIT.inference_outputs
    all_query_masks = VDIT.all_query_masks


@pytest.mark.parametrize("recorded, short_side, expected", [
    (None, None, (360, 360 * W // H)),  # nothing recorded: the official 360
    (64, None, (64, 96)),               # the miniature heads record 64: frames stay 64 x 96
    (64, 72, (72, 108)),                # an explicit size wins
])
def test_input_size_defaults_to_the_models(ytvos_root, oracle, tmp_path, recorded, short_side, expected):
    model = Sized(oracle, recorded)
    opts = BenchmarkOptions(data_root=ytvos_root, out_dir=tmp_path / "out", short_side=short_side, device="cpu",
                            limit=1)
    metrics = run_benchmark("ytvos", model, opts)
    assert set(model.sizes) == {expected}
    assert metrics["short_side"] == expected[0]


def test_progress_inside_a_ref_davis_video(davis_root, oracle, bench_options, tmp_path):
    lines, steps = [], []
    opts = bench_options(davis_root, tmp_path / "out", progress=lines.append, step_progress=steps.append)
    metrics = run_benchmark("davis", oracle, opts)
    assert len(lines) == metrics["n_videos"] == 2  # one line per finished video
    for n, video in ((1, "blackswan"), (2, "bmx")):
        mine = [s for s in steps if s.startswith(f"[{n}/2] {video}:")]
        assert {s.split()[2] for s in mine} >= {"anno_0", "anno_1", "anno_2", "anno_3"}, mine


def test_metrics_json_is_strict(ytvos_root, oracle, bench_options, tmp_path, monkeypatch):
    monkeypatch.setattr(benchmarks_video, "run_ytvos", lambda model, opts: {"J&F": math.nan, "J": math.inf})
    run_benchmark("ytvos", oracle, bench_options(ytvos_root, tmp_path / "out"))
    text = (tmp_path / "out" / METRICS_FILE).read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.json"))
    assert metrics["J&F"] is None and metrics["J"] is None


class Boom(RuntimeError):
    pass


def _failing(model: nn.Module, after_calls: int) -> nn.Module:
    real = model.forward

    def forward(*args, **kw):
        if model.calls >= after_calls:
            raise Boom("the run dies half-way")
        return real(*args, **kw)

    model.forward = forward
    return model


def test_a_failed_run_removes_the_folder_it_created(ytvos_root, oracle, bench_options, tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(Boom):  # dies on its first video: nothing finished, nothing to resume
        run_benchmark("ytvos", _failing(oracle, 0), bench_options(ytvos_root, out))
    assert not (tmp_path / "new").exists()


def test_a_failed_run_in_an_existing_folder_drops_its_old_metrics(ytvos_root, oracle, bench_options, tmp_path):
    out = tmp_path / "out"
    run_benchmark("ytvos", oracle, bench_options(ytvos_root, out))
    assert (out / METRICS_FILE).is_file()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Boom):
        run_benchmark("ytvos", _failing(oracle, oracle.calls + 1), bench_options(ytvos_root, out))
    assert not (out / METRICS_FILE).exists()  # it would describe predictions that are now half replaced
    assert (out / "notes.txt").read_text() == "mine"


def test_bad_options_fail_before_any_output(ytvos_root, tmp_path):
    from vdit.errors import ConfigError

    (tmp_path / "file").write_text("x")
    for kw in ({"short_side": 8}, {"threshold": 1.5}, {"out_dir": tmp_path / "file"}):
        with pytest.raises(ConfigError):
            BenchmarkOptions(**{"data_root": ytvos_root, "out_dir": tmp_path / "out", **kw})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
