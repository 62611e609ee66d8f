"""The official-checkpoint converter on a tiny checkpoint written in the official format (spec 10).

The official state_dict is built here from a tiny vdit model with an inverse mapping written from the
spec's key table (not from the converter's rules), including the duplicate registrations, the frozen
foundation weights under their official (older transformers) names, sentence_proj, position_ids buffers
and a pickled argparse.Namespace, and saved with `_use_new_zipfile_serialization=False` like the releases.
"""
import argparse
import collections
import json
import os
import re

import pytest
import torch

from vdit.errors import ModelLoadError

BB = "backbone.0.diff_ftex."


# ------------------------------------------------------------------------------------------ official layout


def official_names(ours: str) -> list[str]:
    """Official key(s) of one vdit trainable parameter, from the spec 10 table."""
    m = re.match(r"^backbone\.level_projections\.(\d+)\.(.+)$", ours)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        return [f"{BB}act_postprocess.{i}.{rest}", f"{BB}act_{i + 1}_postprocess.{rest}"]
    m = re.match(r"^(?:transformer\.decoder\.)?bbox_embed\.(.+)$", ours)
    if m:
        return [f"bbox_embed.{m.group(1)}", f"transformer.decoder.bbox_embed.{m.group(1)}"]
    table = {
        "backbone.prompt.": BB, "backbone.noise.": BB, "queries.query_tensors": "query_tensors",
        "queries.fusion_module.": "fusion_module.", "mask_head.controller.": "controller.",
        "mask_optimiser.": "mask_refine.",
    }
    for src, dst in table.items():
        if ours.startswith(src):
            return [dst + ours[len(src):]]
    return [ours]


def official_state(model) -> collections.OrderedDict:
    """The full official state_dict of `model` (trainable + frozen + unused + buffers), shared duplicates."""
    state = collections.OrderedDict()
    for name, p in model.trainable_named_parameters().items():
        t = p.detach().clone()
        for key in official_names(name):
            state[key] = t  # the same tensor under both names, as the official double registration
    bb = model.backbone
    frozen = [
        (BB + "vae.", bb.vae.state_dict()),
        (BB + "unet.", bb.unet.state_dict()),
        (BB + "text_encoder.text_model.", bb.t2v_text_encoder.state_dict()),
        (BB + "cv_model.vision_model.", bb.clip_vision.state_dict()),
        ("text_encoder.text_backbone.", model.text_encoder.text_backbone.state_dict()),
    ]
    for prefix, sd in frozen:
        for k, v in sd.items():
            state[prefix + k] = v.detach().clone()
    width = model.backbone.clip_vision.config.hidden_size
    hidden = model.cfg.head.hidden_dim
    rob = model.text_encoder.hidden_size
    g = torch.Generator().manual_seed(3)
    state[BB + "cv_model.visual_projection.weight"] = torch.randn(16, width, generator=g)
    state["text_encoder.text_backbone.pooler.dense.weight"] = torch.randn(rob, rob, generator=g)
    state["text_encoder.text_backbone.pooler.dense.bias"] = torch.randn(rob, generator=g)
    state["sentence_proj.fc.weight"] = torch.randn(hidden, rob, generator=g)
    state["sentence_proj.fc.bias"] = torch.randn(hidden, generator=g)
    state["sentence_proj.layer_norm.weight"] = torch.ones(hidden)
    state["sentence_proj.layer_norm.bias"] = torch.zeros(hidden)
    for prefix in (BB + "text_encoder.text_model.embeddings.", BB + "cv_model.vision_model.embeddings.",
                   "text_encoder.text_backbone.embeddings."):
        state[prefix + "position_ids"] = torch.arange(8)[None]
    return state


def official_args(cfg) -> argparse.Namespace:
    h = cfg.head
    return argparse.Namespace(
        hidden_dim=h.hidden_dim, nheads=h.nheads, enc_layers=h.enc_layers, dec_layers=h.dec_layers,
        dim_feedforward=h.dim_feedforward, dropout=h.dropout, num_feature_levels=h.num_feature_levels,
        enc_n_points=h.enc_n_points, dec_n_points=h.dec_n_points, num_queries=h.num_queries,
        controller_layers=h.controller_layers, dynamic_mask_channels=h.dynamic_mask_channels, rel_coord=True,
        with_box_refine=True, two_stage=False, masks=True, binary=True, backbone="itcross_video_swin",
        dataset_file="ytvos", lr_drop=[6, 8], resume="", output_dir="output",
    )


def save_official(path, model, extra=None, state=None):
    """`state`: the official state_dict to write (default: `official_state(model)`)."""
    params = list(model.trainable_named_parameters().values())[:2]
    opt = torch.optim.AdamW(params, lr=5e-5)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [6, 8])  # its state holds a collections.Counter
    state = official_state(model) if state is None else state
    obj = {"model": state, "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(),
           "epoch": 5, "args": official_args(model.cfg)}
    obj.update(extra or {})
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def source_model(tiny_root):
    """A tiny VD-IT whose every trainable parameter is random (zero inits would hide swapped keys)."""
    from vdit.config import tiny_config
    from vdit.models.vdit import VDIT

    torch.manual_seed(0)
    model = VDIT.from_config(tiny_config(tiny_root)).eval()
    with torch.no_grad():
        for p in model.trainable_named_parameters().values():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, source_model):
    return save_official(tmp_path_factory.mktemp("official") / "vdit_tiny.pth", source_model)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, checkpoint, tiny_root):
    from vdit.convert.official import convert_official

    out = tmp_path_factory.mktemp("converted") / "weights"
    report = convert_official(checkpoint, out, foundation_root=tiny_root, preset_name="tiny", check_frozen=True)
    return out, report


# ------------------------------------------------------------------------------------------ tests


def test_checkpoint_is_a_legacy_pickle_with_the_spec_prefixes(checkpoint):
    import zipfile

    assert not zipfile.is_zipfile(checkpoint)
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    keys = obj["model"].keys()
    for prefix in ("transformer.level_embed", "transformer.encoder.layers.0.self_attn.sampling_offsets.weight",
                   "transformer.decoder.layers.1.self_attn.in_proj_weight", "transformer.decoder.bbox_embed.1.layers.2.bias",
                   "transformer.reference_points.weight", "class_embed.0.bias", "bbox_embed.0.layers.0.weight",
                   BB + "cross_attn.cros_attn.w_qs.weight", BB + "cross_attn.pos_ffn.w_1.weight",
                   BB + "act_4_postprocess.1.bias", BB + "act_postprocess.3.0.weight", BB + "projection.linear1.weight",
                   BB + "noise_pred.weight", BB + "noise_fc.2.weight", "query_tensors", "text_proj.fc.weight",
                   "fusion_module.multihead_attn.in_proj_weight", "query_embed.weight", "input_proj.3.1.bias",
                   "mask_refine.conv2_1div4.weight", "controller.layers.2.weight", BB + "unet.conv_in.weight",
                   BB + "vae.encoder.conv_in.weight", BB + "text_encoder.text_model.final_layer_norm.weight",
                   BB + "cv_model.vision_model.post_layernorm.weight", "text_encoder.text_backbone.encoder.layer.0.output.dense.weight"):
        assert prefix in keys, prefix


def test_conversion_is_complete(converted, source_model):
    _, report = converted
    assert report.unmapped == [] and report.unfilled == []
    assert report.trainable_parameters == len(source_model.trainable_named_parameters())
    # act_postprocess: 4 levels x 4 tensors; bbox_embed: dec_layers x 3 layers x 2 tensors
    dec = source_model.cfg.head.dec_layers
    assert len(report.duplicates) == 16 + dec * 6
    assert report.frozen_keys["not held by vdit"] == 7  # visual_projection, pooler (2), sentence_proj (4)
    assert report.ignored_buffers == 3
    assert report.epoch == 5 and report.args["hidden_dim"] == source_model.cfg.head.hidden_dim
    check = report.frozen_check
    assert check["ok"] and check["mismatched"] == [] and check["not_in_model"] == []
    assert check["compared"] == sum(v for k, v in report.frozen_keys.items() if k != "not held by vdit")


def test_converted_weights_equal_the_source(converted, source_model):
    from safetensors.torch import load_file

    out, _ = converted
    tensors = load_file(str(out / "model.safetensors"))
    own = source_model.trainable_named_parameters()
    assert set(tensors) == set(own)
    for name, p in own.items():
        assert torch.equal(tensors[name], p.detach()), name
    report = json.loads((out / "conversion_report.json").read_text())
    assert report["unmapped"] == [] and report["unfilled"] == []


def test_converted_model_gives_the_same_outputs(converted, source_model):
    from vdit.models.vdit import VDIT

    out, _ = converted
    model = VDIT.from_pretrained(out).eval()
    torch.manual_seed(1)
    frames = torch.randn(1, 2, 3, 64, 80)
    texts = ["the red circle moving left"]
    with torch.no_grad():
        a, b = source_model(frames, texts), model(frames, texts)
        torch.testing.assert_close(source_model.all_query_masks(a), model.all_query_masks(b), rtol=1e-5, atol=1e-5)
    for key in ("pred_logits", "pred_boxes", "masks_low"):
        torch.testing.assert_close(getattr(a.last, key), getattr(b.last, key), rtol=1e-5, atol=1e-5)


def test_frozen_check_reports_a_changed_foundation_weight(tmp_path, source_model, tiny_root):
    from vdit.convert.official import check_frozen_weights, plan_conversion

    state = official_state(source_model)
    key = BB + "unet.conv_in.weight"
    state[key] = state[key] + 1.0
    plan = plan_conversion(state, source_model)
    check = check_frozen_weights(state, plan, source_model)
    assert [m["key"] for m in check.mismatched] == [key]


def test_head_sizes_come_from_args_and_tensors(source_model):
    from vdit.config import full_config
    from vdit.convert.official import head_config_from_checkpoint

    state = official_state(source_model)
    args = vars(official_args(source_model.cfg))
    head = head_config_from_checkpoint(full_config().head, state, {**args, "nheads": 2, "dec_n_points": 3})
    tiny = source_model.cfg.head
    assert (head.hidden_dim, head.num_queries, head.enc_layers, head.dec_layers, head.dim_feedforward) == \
        (tiny.hidden_dim, tiny.num_queries, tiny.enc_layers, tiny.dec_layers, tiny.dim_feedforward)
    assert head.nheads == 2 and head.dec_n_points == 3
    with pytest.raises(ModelLoadError, match="dec_layers"):
        head_config_from_checkpoint(full_config().head, state, {**args, "dec_layers": 3})
    with pytest.raises(ModelLoadError, match="with_box_refine"):
        head_config_from_checkpoint(full_config().head, state, {**args, "with_box_refine": False})


def test_unmapped_and_unfilled_keys_are_reported(tmp_path, source_model, tiny_root):
    from vdit.convert.official import convert_official

    model_state = official_state(source_model)
    del model_state["query_embed.weight"]
    model_state["transformer.extra_layer.weight"] = torch.zeros(2)
    path = tmp_path / "broken.pth"
    torch.save({"model": model_state, "args": official_args(source_model.cfg)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(ModelLoadError) as err:
        convert_official(path, tmp_path / "out", foundation_root=tiny_root, preset_name="tiny")
    assert "query_embed.weight" in str(err.value) and "transformer.extra_layer.weight" in str(err.value)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_different_duplicates_are_refused(tmp_path, source_model, tiny_root):
    from vdit.convert.official import plan_conversion

    state = official_state(source_model)
    state[BB + "act_2_postprocess.0.weight"] = state[BB + "act_2_postprocess.0.weight"] + 1
    with pytest.raises(ModelLoadError, match="act_2_postprocess"):
        plan_conversion(state, source_model)


class _Payload:
    """Pickles as a call to os.system (what a malicious checkpoint would hold)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused_without_running(tmp_path, source_model):
    from vdit.convert.official import convert_official

    marker = tmp_path / "payload_ran"
    path = save_official(tmp_path / "evil.pth", source_model, extra={"hook": _Payload(marker)})
    with pytest.raises(ModelLoadError) as err:
        convert_official(path, tmp_path / "out")
    message = str(err.value)
    # exactly the offending global is named (not the allowed argparse.Namespace, Counter, storages...)
    assert f"not plain data: {os.system.__module__}.system." in message and str(path) in message
    assert not marker.exists()


def test_pickle_globals_reads_the_opcodes_without_loading(tmp_path, checkpoint, source_model):
    from vdit.convert.official import pickle_globals

    found = pickle_globals(checkpoint)
    assert {"argparse.Namespace", "collections.OrderedDict", "torch._utils._rebuild_tensor_v2"} <= set(found)
    marker = tmp_path / "ran"
    zipped = tmp_path / "evil_zip.pth"
    torch.save({"hook": _Payload(marker)}, zipped)  # the zip format: the scan reads data.pkl
    assert f"{os.system.__module__}.system" in pickle_globals(zipped)
    assert not marker.exists()


def test_truncated_checkpoint_gives_a_clear_error(tmp_path, checkpoint):
    from vdit.convert.official import load_official_checkpoint

    data = checkpoint.read_bytes()
    for fraction in (0.3, 0.97):
        path = tmp_path / f"cut_{fraction}.pth"
        path.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(ModelLoadError, match="truncated or corrupt"):
            load_official_checkpoint(path)
    with pytest.raises(ModelLoadError, match="not found"):
        load_official_checkpoint(tmp_path / "absent.pth")


def test_cli(tmp_path, checkpoint, tiny_root, source_model, capsys):
    from vdit.cli.main import main

    out = tmp_path / "cli_out"
    rc = main(["convert-official", str(checkpoint), str(out), "--preset", "tiny", "--foundation-root", str(tiny_root)])
    assert rc == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert "trainable parameters" in capsys.readouterr().out
    evil = save_official(tmp_path / "evil.pth", source_model, extra={"hook": _Payload(tmp_path / "ran")})
    assert main(["convert-official", str(evil), str(tmp_path / "o2")]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists()


def test_split_checkpoint_accepts_bare_and_ddp_state_dicts(source_model):
    from vdit.convert.official import split_checkpoint

    state = official_state(source_model)
    bare, args = split_checkpoint(state, "bare.pth")
    assert args == {} and list(bare) == list(state)
    wrapped, _ = split_checkpoint({"model": {"module." + k: v for k, v in state.items()}}, "ddp.pth")
    assert list(wrapped) == list(state)
    with pytest.raises(ModelLoadError, match="not tensors"):
        split_checkpoint({"model": {"a": 1}}, "bad.pth")


# ------------------------------------------------------------------------------------------ masks vs official tensors


def _head_reference():
    """tests/models/_head_reference.py (the independent spec-3 references), loaded by path: the test folders
    are not packages."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "models" / "_head_reference.py"
    spec = importlib.util.spec_from_file_location("vdit_tests_head_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converted_masks_follow_the_official_controller_layout(tmp_path, source_model, tiny_root):
    """The dynamic mask head of a converted checkpoint reads the controller output in the official layout
    (spec 3.6: layer-0 weights [c, C+2] over the input cat([feats, coords])): masks of the loaded model equal
    the reference computed from the ORIGINAL official controller and mask_refine tensors, so a converter or
    head that permutes or misreads rows fails. Those tensors are drawn fresh here, so they exist only in the
    official file."""
    from vdit.convert.official import convert_official
    from vdit.models.vdit import VDIT

    ref = _head_reference()
    state = official_state(source_model)
    g = torch.Generator().manual_seed(21)
    for key in [k for k in state if k.startswith(("controller.", "mask_refine."))]:
        state[key] = torch.randn(state[key].shape, generator=g) * 0.1  # non-zero biases too
    path = save_official(tmp_path / "official.pth", source_model, state=state)
    assert official_args(source_model.cfg).rel_coord
    out_dir = tmp_path / "converted"
    convert_official(path, out_dir, foundation_root=tiny_root, preset_name="tiny")
    model = VDIT.from_pretrained(out_dir).eval()

    seen = {}
    hooks = [model.backbone.register_forward_hook(lambda m, a, o: seen.__setitem__("levels", o)),
             model.transformer.register_forward_hook(lambda m, a, o: seen.__setitem__("transformer", o))]
    torch.manual_seed(1)
    b, t, h, w = 1, 2, 64, 80
    frames = torch.randn(b, t, 3, h, w)
    sizes = torch.tensor([[52, 70]])  # partly padded: the unpadded size scales the coordinates
    pad = torch.ones(b, t, h, w, dtype=torch.bool)
    pad[:, :, :52, :70] = False
    try:
        with torch.no_grad():
            head = model(frames, ["the red circle moving left"], pad_mask=pad, sizes=sizes)
            all_masks = model.all_query_masks(head)
    finally:
        for hook in hooks:
            hook.remove()
    hs, _, inter_refs, memory = seen["transformer"]
    levels = seen["levels"]
    hd = model.cfg.head
    controller = [(state[f"controller.layers.{i}.weight"], state[f"controller.layers.{i}.bias"]) for i in range(3)]
    convs = {name: (state[f"mask_refine.{name}.weight"], state[f"mask_refine.{name}.bias"])
             for name in ref.MSO_CONVS}
    with torch.no_grad():
        feats = ref.mask_features(memory)
        dyn = ref.dynamic_masks(hs[-1], controller, feats, inter_refs[-1][..., :2],
                                sizes.repeat_interleave(t, dim=0), hd.dynamic_mask_channels)  # [T,Q,c,h8,w8]
        q = dyn.shape[1]
        low = ref.low_res_masks(dyn)
        torch.testing.assert_close(head.last.masks_low, low.reshape(b, t, q, h // 2, w // 2), rtol=1e-5, atol=1e-5)
        for j in range(q):
            m = ref.mso(dyn[:, j], levels[1], levels[0], convs)
            torch.testing.assert_close(all_masks[0, :, j], m[:, 0], rtol=1e-5, atol=1e-5)
