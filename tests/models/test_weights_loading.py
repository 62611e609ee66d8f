"""Loading trainable weights: older layouts migrate exactly, unusable weights are refused.

Weights written before the dynamic mask head read its input in the official order still load exactly.

Layout 1 (vdit before 2026-12) emitted the layer-0 dynamic weights for the input [coords (2) ; feats (C)];
the official head (spec 3.6) and layout 2 use cat([feats (C), coords (2)]). An old file is written here the
way the old code laid it out (rows moved back with explicit loops), then read through every loader: it must
give the parameters (and optimiser moments) of the current layout exactly.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from vdit.config import tiny_config
from vdit.models.vdit import VDIT, WEIGHTS_LAYOUT, WEIGHTS_LAYOUT_KEY, migrate_trainable, weights_layout

CTRL = "mask_head.controller.layers.2."


def _to_layout1(rows: torch.Tensor, c_in: int, c: int) -> torch.Tensor:
    """Official rows -> the pre-fix rows: within each output channel o of layer 0, the official input
    channel k (features 0..C-1, coords C, C+1) sat at position k + 2 (features) or k - C (coords)."""
    cin = c_in + 2
    old = rows.clone()
    for o in range(c):
        for k in range(cin):
            old_k = k + 2 if k < c_in else k - c_in
            old[o * cin + old_k] = rows[o * cin + k]
    return old


def _model(root) -> VDIT:
    torch.manual_seed(0)
    model = VDIT.from_config(tiny_config(root)).eval()
    with torch.no_grad():  # non-zero controller rows everywhere, so any misplaced row shows
        for name, p in model.named_parameters():
            if name.startswith(CTRL):
                p.normal_(0, 0.05)
    return model


def _write_layout1(model: VDIT, folder, tensors: dict[str, torch.Tensor] | None = None):
    hd = model.cfg.head
    folder = model.save_pretrained(folder)
    tensors = load_file(str(folder / "model.safetensors")) if tensors is None else tensors
    old = {k: (_to_layout1(v, hd.hidden_dim, hd.dynamic_mask_channels) if k.startswith(CTRL) else v)
           for k, v in tensors.items()}
    save_file(old, str(folder / "model.safetensors"), metadata={"format": "pt", "vdit_version": "0.1.0"})
    return folder


def test_new_files_record_the_layout(tiny_root, tmp_path):
    folder = _model(tiny_root).save_pretrained(tmp_path / "w")
    assert weights_layout(folder / "model.safetensors") == WEIGHTS_LAYOUT == 2


def test_layout1_folder_loads_to_the_same_parameters_and_masks(tiny_root, tmp_path):
    model = _model(tiny_root)
    folder = _write_layout1(model, tmp_path / "old")
    assert weights_layout(folder / "model.safetensors") == 1
    stored = load_file(str(folder / "model.safetensors"))
    own = model.trainable_named_parameters()
    assert not torch.equal(stored[CTRL + "weight"], own[CTRL + "weight"])  # the file really is permuted
    again = VDIT.from_pretrained(folder).eval()
    for name, p in again.trainable_named_parameters().items():
        assert torch.equal(p, own[name]), name
    x = torch.randn(1, 2, 3, 64, 96)
    with torch.no_grad():
        a, b = model.predict(x, ["the red circle"]), again.predict(x, ["the red circle"])
    assert torch.equal(a.pred_masks, b.pred_masks)


def test_layout1_init_weights_and_optimiser_moments(tiny_root, tmp_path):
    from vdit.engine.checkpoint import load_init_weights

    model = _model(tiny_root)
    hd = model.cfg.head
    folder = _write_layout1(model, tmp_path / "old")
    torch.manual_seed(1)
    fresh = VDIT.from_config(tiny_config(tiny_root))
    load_init_weights(fresh, folder)
    for name, p in fresh.trainable_named_parameters().items():
        assert torch.equal(p, model.trainable_named_parameters()[name]), name
    # optimiser moments keyed "<param>::<key>" migrate with their parameter; scalars and others untouched
    moment = torch.randn(model.trainable_named_parameters()[CTRL + "bias"].shape)
    step = torch.tensor(7.0)
    old = {CTRL + "bias::exp_avg": _to_layout1(moment, hd.hidden_dim, hd.dynamic_mask_channels),
           CTRL + "bias::step": step, "query_embed.weight::exp_avg": moment[:3]}
    new = migrate_trainable(old, 1, model.cfg)
    assert torch.equal(new[CTRL + "bias::exp_avg"], moment)
    assert torch.equal(new[CTRL + "bias::step"], step)
    assert torch.equal(new["query_embed.weight::exp_avg"], moment[:3])


def test_files_from_elsewhere_and_future_layouts(tiny_root, tmp_path):
    from vdit.errors import ModelLoadError

    model = _model(tiny_root)
    tensors = {n: p.detach() for n, p in model.trainable_named_parameters().items()}
    save_file(tensors, str(tmp_path / "bare.safetensors"))  # no vdit metadata: taken as current
    assert weights_layout(tmp_path / "bare.safetensors") == WEIGHTS_LAYOUT
    save_file(tensors, str(tmp_path / "future.safetensors"), metadata={WEIGHTS_LAYOUT_KEY: "99"})
    with pytest.raises(ModelLoadError, match="layout 99"):
        weights_layout(tmp_path / "future.safetensors")


def test_shipped_head_is_in_the_current_layout():
    from vdit.inference.predictor import BUILTIN_WEIGHTS_DIR

    assert weights_layout(BUILTIN_WEIGHTS_DIR / "model.safetensors") == WEIGHTS_LAYOUT


def test_non_finite_weights_are_refused_by_name(tiny_root, tmp_path):
    from vdit.errors import ModelLoadError

    folder = _model(tiny_root).save_pretrained(tmp_path / "w")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["query_embed.weight"][0, 0] = float("nan")
    tensors[CTRL + "bias"][3] = float("inf")
    save_file(tensors, str(folder / "model.safetensors"),
              metadata={"format": "pt", "vdit_version": "0.1.0", WEIGHTS_LAYOUT_KEY: str(WEIGHTS_LAYOUT)})
    with pytest.raises(ModelLoadError, match=r"2 tensor\(s\) hold NaN/Inf.*mask_head.controller.layers.2.bias"):
        VDIT.from_pretrained(folder)
