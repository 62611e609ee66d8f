"""Loading trainable weights: older layouts migrate exactly, unusable weights are refused.

Weights written before the dynamic mask head read its input in the official order, and weights written
before the modules got their self-explaining names, still load exactly.

Layout 1 (vdit before 2026-12) emitted the layer-0 dynamic weights for the input [coords (2) ; feats (C)];
the official head (spec 3.6) and layouts 2 and 3 use cat([feats (C), coords (2)]). Layouts 1 and 2 named the
mask optimiser `mask_refine` and the level projections `backbone.act_postprocess`; layout 3 names them
`mask_optimiser` and `backbone.level_projections`. An old file is written here the way the old code laid it
out (rows moved back with explicit loops, keys spelled the old way), then read through every loader: it must
give the parameters (and optimiser moments) of the current layout exactly.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from vdit.config import tiny_config
from vdit.models.vdit import VDIT, WEIGHTS_LAYOUT, WEIGHTS_LAYOUT_KEY, migrate_trainable, weights_layout

CTRL = "mask_head.controller.layers.2."
# The keys layouts 1 and 2 wrote for the modules layout 3 renamed: new prefix -> old prefix.
OLD_PREFIXES = {"mask_optimiser.": "mask_refine.", "backbone.level_projections.": "backbone.act_postprocess."}


def _old_name(name: str) -> str:
    for new, old in OLD_PREFIXES.items():
        if name.startswith(new):
            return old + name[len(new):]
    return name


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
    old = {_old_name(k): (_to_layout1(v, hd.hidden_dim, hd.dynamic_mask_channels) if k.startswith(CTRL) else v)
           for k, v in tensors.items()}
    save_file(old, str(folder / "model.safetensors"), metadata={"format": "pt", "vdit_version": "0.1.0"})
    return folder


def _write_layout2(model: VDIT, folder):
    """A save_pretrained folder as vdit wrote it in layout 2: the official row order, the old key names."""
    folder = model.save_pretrained(folder)
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({_old_name(k): v for k, v in tensors.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt", "vdit_version": "0.1.0", WEIGHTS_LAYOUT_KEY: "2"})
    return folder


def test_new_files_record_the_layout(tiny_root, tmp_path):
    folder = _model(tiny_root).save_pretrained(tmp_path / "w")
    assert weights_layout(folder / "model.safetensors") == WEIGHTS_LAYOUT == 3
    names = load_file(str(folder / "model.safetensors")).keys()
    assert any(n.startswith("mask_optimiser.") for n in names)
    assert any(n.startswith("backbone.level_projections.") for n in names)
    assert not [n for n in names if n.startswith(tuple(OLD_PREFIXES.values()))]


OLDER_LAYOUTS = {1: _write_layout1, 2: _write_layout2}


@pytest.mark.parametrize("layout", sorted(OLDER_LAYOUTS))
def test_older_folder_loads_to_the_same_parameters_and_masks(tiny_root, tmp_path, layout):
    model = _model(tiny_root)
    folder = OLDER_LAYOUTS[layout](model, tmp_path / "old")
    assert weights_layout(folder / "model.safetensors") == layout
    stored = load_file(str(folder / "model.safetensors"))
    own = model.trainable_named_parameters()
    # the file really is old: the old names (and, in layout 1, the controller rows permuted)
    assert "mask_refine.conv1_1div8.weight" in stored and "backbone.act_postprocess.0.0.weight" in stored
    assert len(stored) == len(own) and not set(stored) & {n for n in own if _old_name(n) != n}
    assert torch.equal(stored[CTRL + "weight"], own[CTRL + "weight"]) == (layout > 1)
    again = VDIT.from_pretrained(folder).eval()
    for name, p in again.trainable_named_parameters().items():
        assert torch.equal(p, own[name]), name
    x = torch.randn(1, 2, 3, 64, 96)
    with torch.no_grad():
        a, b = model.predict(x, ["the red circle"]), again.predict(x, ["the red circle"])
    assert torch.equal(a.pred_masks, b.pred_masks)


@pytest.mark.parametrize("layout", sorted(OLDER_LAYOUTS))
def test_older_folder_initialises_a_run(tiny_root, tmp_path, layout):
    from vdit.engine.checkpoint import load_init_weights

    model = _model(tiny_root)
    folder = OLDER_LAYOUTS[layout](model, tmp_path / "old")
    torch.manual_seed(1)
    fresh = VDIT.from_config(tiny_config(tiny_root))
    load_init_weights(fresh, folder)
    for name, p in fresh.trainable_named_parameters().items():
        assert torch.equal(p, model.trainable_named_parameters()[name]), name


def test_layout1_optimiser_moments(tiny_root):
    """Moments keyed "<param>::<key>" migrate with their parameter (rows and name); others untouched."""
    cfg = tiny_config(tiny_root)
    hd = cfg.head
    c = hd.dynamic_mask_channels
    moment = torch.randn((hd.hidden_dim + 2) * c + c * c + 2 * c)  # one row per dynamic parameter
    step = torch.tensor(7.0)
    old = {CTRL + "bias::exp_avg": _to_layout1(moment, hd.hidden_dim, c),
           CTRL + "bias::step": step, "query_embed.weight::exp_avg": moment[:3],
           "mask_refine.conv1_1div8.bias::exp_avg": moment[:5]}
    new = migrate_trainable(old, 1, cfg)
    assert set(new) == {CTRL + "bias::exp_avg", CTRL + "bias::step", "query_embed.weight::exp_avg",
                        "mask_optimiser.conv1_1div8.bias::exp_avg"}
    assert torch.equal(new[CTRL + "bias::exp_avg"], moment)
    assert torch.equal(new[CTRL + "bias::step"], step)
    assert torch.equal(new["query_embed.weight::exp_avg"], moment[:3])
    assert torch.equal(new["mask_optimiser.conv1_1div8.bias::exp_avg"], moment[:5])


def test_layout2_optimiser_moments(tiny_root):
    """Layout 2 -> 3 renames keys only: the controller rows (already official) and every tensor stay."""
    cfg = tiny_config(tiny_root)
    moment, step = torch.randn(7), torch.tensor(3.0)
    old = {CTRL + "bias::exp_avg": moment, "backbone.act_postprocess.1.0.weight::exp_avg_sq": moment[:4],
           "mask_refine.conv2_1div8.weight::step": step, "query_embed.weight::exp_avg": moment[:2]}
    new = migrate_trainable(old, 2, cfg)
    renamed = {CTRL + "bias::exp_avg": CTRL + "bias::exp_avg",
               "backbone.level_projections.1.0.weight::exp_avg_sq": "backbone.act_postprocess.1.0.weight::exp_avg_sq",
               "mask_optimiser.conv2_1div8.weight::step": "mask_refine.conv2_1div8.weight::step",
               "query_embed.weight::exp_avg": "query_embed.weight::exp_avg"}
    assert set(new) == set(renamed)
    assert all(new[k] is old[o] for k, o in renamed.items())
    current = migrate_trainable(new, 3, cfg)
    assert set(current) == set(new) and all(current[k] is new[k] for k in new)


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
    from vdit.mini.builtin import BUILTIN_WEIGHTS_DIR

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
