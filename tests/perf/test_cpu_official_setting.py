"""bench/cpu_official_setting.py runs end to end (tiny preset; the full-width figure is a bench run)."""
from __future__ import annotations


def test_cpu_official_setting_runs_and_breaks_down(cpu_official_setting, capsys):
    res = cpu_official_setting.main(["--preset", "tiny", "--threads", "1", "--repeats", "1", "--warmup", "0",
                                     "--size", "64", "96", "--frames", "2"])
    out = capsys.readouterr().out
    assert "ratio ours/official" in out and "official:  3.4-4.0 s" in out
    assert res["seconds"] > 0 and res["matmul_gflops"] > 0
    assert res["tflop_official"] > res["tflop_ours"] > 0  # the official also runs the UNet tail
    assert set(res["parts"]) >= {"CLIP-H vision (3 x 224x224)", "VAE encoder", "UNet taps (tail skipped)"}
    assert "prompt proj, noise, levels, head" in res["parts"]
    assert all(v >= 0 for v in res["parts"].values())
