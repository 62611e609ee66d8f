"""`vdit evaluate` through the real entry point with a tiny weights folder."""
import json

from vdit.cli.main import main


def test_evaluate_ytvos_cli(ytvos_root, tiny_weights, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["evaluate", "--preset", "ytvos", "--weights", str(tiny_weights), "--data", str(ytvos_root),
               "--out", str(out), "--limit", "1", "--short-side", "64", "--device", "cpu", "--quiet"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["benchmark"] == "ytvos" and metrics["n_videos"] == 1 and metrics["limit"] == 1
    assert 0.0 <= metrics["J&F"] <= 1.0 and (out / "submission.zip").is_file()
    assert '"J&F"' in capsys.readouterr().out


def test_evaluate_compile_vae_reaches_the_backbone(ytvos_root, tiny_weights, tmp_path, monkeypatch):
    """--compile-vae compiles the loaded model's VAE encoder (here with the eager backend: the same
    numbers) before the benchmark runs."""
    from vdit.models.backbone.diffusion_backbone import DiffusionBackbone

    real = DiffusionBackbone.compile_vae_encoder
    calls = []

    def eager(self, **kw):
        calls.append(self)
        real(self, backend="eager")

    monkeypatch.setattr(DiffusionBackbone, "compile_vae_encoder", eager)
    scores = []
    for flag in ([], ["--compile-vae"]):
        out = tmp_path / f"out{len(flag)}"
        rc = main(["evaluate", "--preset", "ytvos", "--weights", str(tiny_weights), "--data", str(ytvos_root),
                   "--out", str(out), "--limit", "1", "--short-side", "64", "--device", "cpu", "--quiet", *flag])
        assert rc == 0
        scores.append(json.loads((out / "metrics.json").read_text())["J&F"])
    assert len(calls) == 1 and getattr(calls[0].vae.encoder, "_compiled_call_impl", None) is not None
    assert scores[0] == scores[1]


def test_evaluate_refcoco_cli(refcoco_root, tiny_weights, tmp_path):
    out = tmp_path / "out"
    rc = main(["evaluate", "--preset", "refcoco", "--weights", str(tiny_weights), "--data", str(refcoco_root),
               "--out", str(out), "--short-side", "64", "--device", "cpu", "--quiet"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 3 and 0.0 <= metrics["overall_iou"] <= 1.0


def test_evaluate_errors(ytvos_root, tiny_weights, tmp_path, capsys):
    rc = main(["evaluate", "--preset", "ytvos", "--weights", str(tiny_weights), "--data", str(tmp_path / "none")])
    assert rc == 2 and "dataset folder not found" in capsys.readouterr().err
    rc = main(["evaluate", "--preset", "ytvos", "--weights", str(tmp_path / "no_weights"), "--data", str(ytvos_root)])
    assert rc == 2 and "no_weights" in capsys.readouterr().err
    rc = main(["evaluate", "--preset", "davis", "--weights", str(tiny_weights), "--data", str(ytvos_root),
               "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert rc == 2 and "DAVIS" in capsys.readouterr().err
