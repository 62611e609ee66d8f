"""bench/mini_colour_probe.py (issue 19): the per-object features are mask averages, restated here with
plain loops, and the probe runs end to end on the smoke benchmark and foundation."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "mini_colour_probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("bench_mini_colour_probe", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_model(smoke_build):
    from vdit.mini.preset import mini_config
    from vdit.models.vdit import VDIT

    torch.manual_seed(0)
    return VDIT.from_config(mini_config(smoke_build[0])).eval()


def test_features_are_mask_averages_over_the_frames(probe, smoke_model):
    from vdit.mini.demo import demo_clip
    from vdit.models.inputs import normalize_uint8

    video, _ = demo_clip(0)
    frames, ids = video.frames[:4], video.masks[:4]
    objects = {o.obj_id: o.colour for o in video.objects}
    feats = probe.object_features(smoke_model, frames, ids, objects, with_head=True)
    present = [o for o in objects if (ids == o).any()]
    assert set(feats["pixels"]) == set(present)
    assert {"pixels", "VAE tap", "VAE latent", "CLIP image tokens", "UNet U0", "UNet U5", "head level L0",
            "head level L3"} <= set(feats)
    with torch.no_grad():
        x = normalize_uint8(torch.from_numpy(frames))[None]
        latent = smoke_model.backbone.encode_visual(x).latent_mean[0]  # [C,T,h,w]
    cell = frames.shape[1] // latent.shape[-1]
    for oid in present:
        # pixels: the mean colour of the object's pixels over all frames, in [0, 1]
        total, count = np.zeros(3), 0
        for t in range(frames.shape[0]):
            for y in range(frames.shape[1]):
                for x in range(frames.shape[2]):
                    if ids[t, y, x] == oid:
                        total += frames[t, y, x] / 255.0
                        count += 1
        np.testing.assert_allclose(feats["pixels"][oid].numpy(), total / count, atol=1e-5)
        # the latent (stride 8): each cell weighted by the share of its pixels on the object
        num, den = torch.zeros(latent.shape[0]), 0.0
        for t in range(latent.shape[1]):
            for cy in range(latent.shape[2]):
                for cx in range(latent.shape[3]):
                    block = ids[t, cy * cell:(cy + 1) * cell, cx * cell:(cx + 1) * cell]
                    w = float((block == oid).mean())
                    num += w * latent[:, t, cy, cx]
                    den += w
        np.testing.assert_allclose(feats["VAE latent"][oid].numpy(), (num / den).numpy(), rtol=1e-4, atol=1e-5)


def test_probe_recovers_separable_classes(probe):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 10, generator=g) * 4
    y_train, y_test = torch.arange(6).repeat(30), torch.arange(6).repeat(10)
    x_train = centres[y_train] + torch.randn(len(y_train), 10, generator=g)
    x_test = centres[y_test] + torch.randn(len(y_test), 10, generator=g)
    assert (probe.fit_predict(x_train, y_train, x_test, 6) == y_test).float().mean() > 0.95
    # and not better than chance when the features carry no label
    noise = torch.randn(len(y_test), 10, generator=g)
    assert (probe.fit_predict(torch.randn(len(y_train), 10, generator=g), y_train, noise, 6) == y_test).float().mean() < 0.5


def test_probe_runs_on_the_smoke_world(probe, smoke_build, smoke_bench, tmp_path, capsys):
    from vdit.mini.preset import mini_config
    from vdit.models.vdit import VDIT

    head = tmp_path / "head"
    torch.manual_seed(0)
    VDIT.from_config(mini_config(smoke_build[0])).save_pretrained(head)
    assert probe.main(["--foundation", str(smoke_build[0]), "--weights", str(head), "--data", str(smoke_bench),
                       "--train-videos", "4", "--valid-videos", "2", "--table"]) == 0
    out = capsys.readouterr().out
    for row in ("pixels", "VAE latent", "UNet U5", "head level L3"):
        assert row in out
