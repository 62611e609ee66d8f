"""bench/fullscale.py end to end on the tiny preset (the accounting itself: tests/profiling)."""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_bench_script_runs_end_to_end_on_tiny(fullscale, capsys, monkeypatch):
    # two memory-plan variants of five keep the test short: the fp32 baseline and the cheapest
    variants = (fullscale.MEMORY_VARIANTS[0], fullscale.MEMORY_VARIANTS[-1])
    monkeypatch.setattr(fullscale, "MEMORY_VARIANTS", variants)
    res = fullscale.main(["--preset", "tiny", "--device", "cpu", "--frames", "2", "--size", "64", "96",
                          "--sentences", "2", "--train-frames", "2", "--train-size", "64", "96",
                          "--plan-frames", "2", "--plan-size", "64", "96", "--plan-train-frames", "2",
                          "--plan-train-size", "64", "96", "--repeats", "1", "--warmup", "0"])
    text = capsys.readouterr().out
    for heading in ("FLOPs", "Memory plan", "Inference", "Training step"):
        assert heading in text
    assert len(res["memory"]) == len(variants)
    plans = {p.name: p for p in res["memory"]}
    bf16_ckpt = plans["bf16 frozen + fp32 trainable, bf16 autocast, grad ckpt"]
    assert bf16_ckpt.peak_gb < plans["official: fp32 weights, fp32"].peak_gb
    assert all(r["pairs_per_s"] > 0 and r["tflops"] > 0 for r in res["inference"])
    shared = [r for r in res["inference"] if r["label"].startswith("shared + batched, bf16")]
    assert all("masks differ" in r["agreement"] for r in shared)
    assert len(res["training"]) == 5
