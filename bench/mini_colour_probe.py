"""Which of VD-IT's frozen features tell the miniature world's colours apart (issue 19): linear probes.

    python bench/mini_colour_probe.py                                  # the shipped foundation + built-in head
    python bench/mini_colour_probe.py --foundation /tmp/f --weights runs/x/head
    python bench/mini_colour_probe.py --no-head                        # the foundation alone

For every object of the first `--train-videos` train videos and the first `--valid-videos` valid videos
(the generated benchmark's `meta.json` names each object's colour), each feature map is averaged over the
object's mask (resized by area to the map's size) and over its frames; a logistic regression over the six
colours (L-BFGS, L2 PROBE_L2 on standardised features) is fitted on the train objects and scored on the
valid ones. Printed per feature: accuracy over the six colours, the share of blue and cyan objects
classified right (the pair the head confuses, docs/miniature.md), and with `--table` the confusion table.

Features: the frames' pixels ([0, 1] RGB: the ceiling), the VAE encoder's tap (L0's source, stride 4) and
its latent mean (stride 8), the CLIP image tokens, the raw UNet taps U0-U5 (clean latent, VD-IT's timestep,
the T2V's own features of the empty caption: what the UNet knows without the head), and with a head (the
built-in one by default) the head's backbone levels L0-L3 (its trained prompt module and level projections,
empty caption): what the transformer and the mask head read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROBE_L2 = 1e-3
PROBE_ITERS = 500
PAIR = ("blue", "cyan")


def object_features(model, frames: np.ndarray, ids: np.ndarray, objects: dict[int, str],
                    with_head: bool) -> dict[str, dict[int, torch.Tensor]]:
    """frames [T,H,W,3] uint8, ids [T,H,W] object ids -> {feature: {object id: mean feature vector}}."""
    from vdit.models.backbone.unet_features import unet_taps
    from vdit.models.inputs import normalize_uint8

    bb = model.backbone
    x = normalize_uint8(torch.from_numpy(frames))[None]
    with torch.no_grad():
        vis = bb.encode_visual(x)
        t = x.shape[1]
        maps = {"pixels": torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255,
                "VAE tap": vis.vae_tap, "VAE latent": vis.latent_mean[0].permute(1, 0, 2, 3)}
        if vis.clip_tokens is not None:
            tokens = vis.clip_tokens[:, 1:]  # without the class token: a square grid of patches
            side = int(round(tokens.shape[1] ** 0.5))
            if side * side != tokens.shape[1]:
                raise ValueError(f"CLIP image tokens: {tokens.shape[1]} patches do not form a square grid")
            maps["CLIP image tokens"] = tokens.reshape(t, side, side, -1).permute(0, 3, 1, 2)
        empty = bb.encode_prompt_text([""])  # [1, L, D]: the UNet's raw prompt, and the head's through its module
        taps = unet_taps(bb.unet, vis.latent_mean, int(bb.timestep), empty.repeat_interleave(t, dim=0))
        maps.update({f"UNet U{i}": u for i, u in enumerate(taps)})
        if with_head:
            levels = bb(None, [""], visual=vis, prompt_text=empty)
            maps.update({f"head level L{i}": lv for i, lv in enumerate(levels)})
    out: dict[str, dict[int, torch.Tensor]] = {}
    for oid in objects:
        m = torch.from_numpy(ids == oid).float()[:, None]
        if m.sum() == 0:
            continue
        for name, f in maps.items():
            w = F.interpolate(m, size=f.shape[-2:], mode="area")
            out.setdefault(name, {})[oid] = (f.float() * w).sum((0, 2, 3)) / w.sum().clamp_min(1e-6)
    return out


def collect(model, root: Path, split: str, limit: int, colours: list[str],
            with_head: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    from bench.mini_error_split import read_clip

    meta = json.loads((root / split / "meta.json").read_text())["videos"]
    feats: dict[str, list[torch.Tensor]] = {}
    labels: list[int] = []
    for vid, v in list(meta.items())[:limit]:
        objects = {int(k): o["category"].split()[0] for k, o in v["objects"].items()}
        names = sorted({f for o in v["objects"].values() for f in o["frames"]})
        frames, ids = read_clip(root, split, vid, names)
        per = object_features(model, frames, ids, objects, with_head)
        for oid in next(iter(per.values())):
            labels.append(colours.index(objects[oid]))
            for name, d in per.items():
                feats.setdefault(name, []).append(d[oid])
    return {k: torch.stack(v) for k, v in feats.items()}, torch.tensor(labels)


def fit_predict(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, classes: int) -> torch.Tensor:
    """Multinomial logistic regression on standardised features; predicted classes of x_test."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    torch.manual_seed(0)
    lin = torch.nn.Linear(x_train.shape[1], classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=PROBE_ITERS)
    xs = (x_train - mu) / sd

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(xs), y_train) + PROBE_L2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return lin((x_test - mu) / sd).argmax(1)


def main(argv: list[str] | None = None) -> int:
    from vdit.config.foundation import FOUNDATION_PARTS
    from vdit.mini.builtin import BUILTIN_WEIGHTS_DIR
    from vdit.mini.data import COLOURS, default_data_dir
    from vdit.mini.preset import MINI_FOUNDATION_DIR, mini_config
    from vdit.mini.train import ensure_mini_benchmark
    from vdit.models.vdit import VDIT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--foundation", default=str(MINI_FOUNDATION_DIR), help="foundation folder (default: shipped)")
    ap.add_argument("--weights", default=None, help="head folder for the L0-L3 rows (default: the built-in head "
                                                     "when --foundation is the shipped one)")
    ap.add_argument("--no-head", action="store_true", help="probe the foundation's features only")
    ap.add_argument("--data", default=None, help="benchmark folder (default $VDIT_CACHE/mini-benchmark-2)")
    ap.add_argument("--train-videos", type=int, default=200)
    ap.add_argument("--valid-videos", type=int, default=40)
    ap.add_argument("--table", action="store_true", help="print each feature's confusion table")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = ensure_mini_benchmark(args.data or default_data_dir())
    foundation = Path(args.foundation).absolute()
    weights = args.weights
    if weights is None and not args.no_head and foundation == MINI_FOUNDATION_DIR.absolute():
        weights = str(BUILTIN_WEIGHTS_DIR)
    with_head = weights is not None and not args.no_head
    if with_head:  # the head on --foundation, whatever foundation its config records
        model = VDIT.from_pretrained(weights, foundation={part: str(foundation / part) for part in FOUNDATION_PARTS})
    else:
        model = VDIT.from_config(mini_config(foundation))
    model.eval()
    colours = sorted(COLOURS)
    x_tr, y_tr = collect(model, root, "train", args.train_videos, colours, with_head)
    x_va, y_va = collect(model, root, "valid", args.valid_videos, colours, with_head)
    pair = torch.tensor([c in PAIR for c in colours])[y_va]
    print(f"{len(y_tr)} train objects, {len(y_va)} valid objects; foundation {foundation}"
          + (f", head {weights}" if with_head else ""))
    print(f"{'feature':<20}{'dims':>6}{f'{len(colours)} colours':>11}{'blue/cyan right':>17}")
    for name in x_tr:
        pred = fit_predict(x_tr[name], y_tr, x_va[name], len(colours))
        acc = (pred == y_va).float().mean().item()
        pair_right = f"{100 * (pred[pair] == y_va[pair]).float().mean().item():.1f}%" if pair.any() else "n/a"
        print(f"{name:<20}{x_tr[name].shape[1]:>6}{100 * acc:>10.1f}%{pair_right:>17}")
        if args.table:
            conf = np.zeros((len(colours), len(colours)), dtype=int)
            for a, b in zip(y_va.tolist(), pred.tolist()):
                conf[a, b] += 1
            print("    " + " " * 8 + "".join(f"{c:>8}" for c in colours) + "   (rows: true colour; columns: probe's)")
            for i, c in enumerate(colours):
                print(f"    {c:>8}" + "".join(f"{n:>8}" for n in conf[i]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
