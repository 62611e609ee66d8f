"""`build_mini_foundation` end to end (two steps per model): the real layouts, manifest, log and grid."""
import dataclasses
import hashlib
import json

import pytest
import torch
from PIL import Image

from vdit.config import FoundationConfig
from vdit.errors import ConfigError
from vdit.mini import build as B
from vdit.mini.data import BenchmarkSpec, ensure_benchmark


def test_build_writes_real_layouts_loaded_by_vdit(smoke_build):
    from vdit.models.foundation import load_foundation

    out, manifest, _ = smoke_build
    f = load_foundation(FoundationConfig(t2v=str(out / "t2v"), clip_vision=str(out / "clip_vision"),
                                         text_encoder=str(out / "text_encoder"), arch="mini"))
    assert type(f.unet).__name__ == "UNet3DConditionModel" and type(f.vae).__name__ == "AutoencoderKL"
    assert type(f.t2v_text_encoder).__name__ == "CLIPTextModel"
    assert type(f.clip_vision).__name__ == "CLIPVisionModel" and type(f.text_encoder).__name__ == "RobertaModel"
    assert f.vae_scaling_factor == manifest["vae_scaling_factor"]
    assert f.clip_image.crop_height == f.clip_vision.config.image_size == 64
    # The T2V text encoder is the CLIP text tower, weight for weight.
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(out / "clip_vision")
    ids = f.t2v_tokenizer(["the red circle"], return_tensors="pt").input_ids
    assert torch.allclose(clip.text_model(ids).last_hidden_state, f.t2v_text_encoder(ids).last_hidden_state)
    index = json.loads((out / "t2v" / "model_index.json").read_text())
    assert index["_class_name"] == B.T2V_PIPELINE and index["unet"] == ["diffusers", "UNet3DConditionModel"]
    sched = json.loads((out / "t2v" / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDIMScheduler" and sched["beta_schedule"] == "scaled_linear"


def test_manifest_lists_every_model_file_with_hashes(smoke_build):
    out, manifest, _ = smoke_build
    on_disk = json.loads((out / B.MANIFEST).read_text())
    assert on_disk["files"] == manifest["files"] and on_disk["seed"] == 0
    present = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert present - set(manifest["files"]) == {B.MANIFEST, B.LOG_FILE}
    for rel, entry in manifest["files"].items():
        data = (out / rel).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert set(manifest["final"]) == {"clip", "vae", "t2v", "roberta"}
    assert not out.with_name(out.name + ".partial").exists()


def test_log_and_sample_grid(smoke_build, smoke_spec):
    out, manifest, grid = smoke_build
    records = [json.loads(line) for line in (out / B.LOG_FILE).read_text().splitlines()]
    stages = {r["stage"] for r in records}
    assert {"data", "clip", "vae", "t2v", "roberta", "all"} <= stages
    assert all("elapsed_s" in r for r in records)
    img = Image.open(grid)
    rows = len(B.SAMPLE_PROMPTS) + 3  # + generated scene caption, its real clip, empty prompt
    assert img.height == rows * (14 + 64 * 2 + 2)
    assert img.width == smoke_spec.num_frames * (64 * 2 + 2) - 2


def test_verify_runs_vdit_on_the_result(smoke_build, smoke_corpora, smoke_spec):
    from vdit.mini.verify import verify_foundation

    out, _, _ = smoke_build
    check = verify_foundation(out, smoke_corpora[1])
    assert check["pred_masks"] == [1, smoke_spec.num_frames, 64, 64]


def test_existing_benchmark_with_other_parameters_is_refused(smoke_bench, smoke_spec):
    assert ensure_benchmark(smoke_bench, seed=0, spec=smoke_spec) == (smoke_bench, False)
    with pytest.raises(ConfigError, match="synthetic_benchmark.json"):
        ensure_benchmark(smoke_bench, seed=0, spec=BenchmarkSpec())
    with pytest.raises(ConfigError):
        ensure_benchmark(smoke_bench, seed=1, spec=smoke_spec)
    # the same sizes without distinct colours is another benchmark too (the flag is recorded only when on)
    with pytest.raises(ConfigError, match="distinct_colours"):
        ensure_benchmark(smoke_bench, seed=0, spec=dataclasses.replace(smoke_spec, distinct_colours=False))


def test_out_folder_must_be_a_mini_foundation(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a mini foundation"):
        B._prepare_out(other)
    assert (other / "notes.txt").is_file()


def test_text_localisation_probe(smoke_build, smoke_bench):
    from vdit.mini.preset import mini_config
    from vdit.mini.verify import PROBE_TAPS, text_localisation
    from vdit.models.vdit import VDIT

    torch.manual_seed(0)
    model = VDIT.from_config(mini_config(smoke_build[0])).eval()
    for through_prompt in (False, True):
        probe = text_localisation(model, smoke_bench, "valid", videos=2, frames=2, through_prompt=through_prompt)
        assert list(probe) == list(PROBE_TAPS)
        assert all(v["relative_change"] > 0 and v["in_referred"] > 0 for v in probe.values())
    # A UNet whose cross-attention adds nothing does not read the text: no change anywhere.
    for name, module in model.backbone.unet.named_modules():
        if name.endswith("attn2.to_out.0"):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    blind = text_localisation(model, smoke_bench, "valid", videos=2, frames=2)
    assert all(v["relative_change"] == 0 for v in blind.values())
    with pytest.raises(ConfigError, match="no video"):
        text_localisation(model, smoke_bench, "valid", videos=0)
