"""The diffusion-backbone side of VD-IT (spec 2.4-2.8) against references written in this file.

Every reference restates the spec's equations in plain tensor code (explicit head loops, `torch.cat` in
the spec's order, hand-written LayerNorm / softmax / standardisation, `F.conv2d` with the module's
weights as plain tensors) and never calls the vdit function under test. Intermediate tensors of the
frozen foundation models are captured with this file's own forward hooks on the stock diffusers /
transformers sub-modules. Trainable parameters are re-drawn at random (non-zero) before comparing.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from typing import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _batch_helpers import box_batch
from vdit.config import apply_overrides, full_config, tiny_config
from vdit.models.backbone.diffusion_backbone import DiffusionBackbone
from vdit.models.backbone.noise import VideoNoise
from vdit.models.backbone.text_guided_projection import TextGuidedProjection
from vdit.models.foundation_arch import arch
from vdit.models.vdit import VDIT
from vdit.training import TrainingWrapper

# Spec 2.1: the frames arrive ImageNet-normalised.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TOL64 = dict(atol=1e-10, rtol=1e-10)  # module run in float64 vs a float64 reference
TOL32 = dict(atol=1e-5, rtol=1e-5)  # fp32 module vs a float64 reference
SENTENCES_A = ["the red circle", "a dog"]
SENTENCES_B = ["a small blue square moving left", "the green star"]


# ------------------------------------------------------------------ shared helpers


def _reinit_trainable(module: nn.Module, seed: int) -> None:
    """Re-draw every trainable parameter (non-zero, away from the defaults): weights ~ N(0, 1/fan_in),
    biases ~ N(0, 0.1), LayerNorm gains ~ N(1, 0.2); so a swapped or missing term cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if "layer_norm.weight" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))


def _params64(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """The module's parameters as detached float64 tensors, keyed without `prefix`."""
    return {n[len(prefix):]: p.detach().double() for n, p in module.named_parameters() if n.startswith(prefix)}


def _frames(b: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random [0,1] frames, ImageNet-normalised as the backbone expects them (spec 2.1)."""
    g = torch.Generator().manual_seed(seed)
    x01 = torch.rand(b, t, 3, h, w, generator=g)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x01 - mean) / std


def _backbone(tiny_root, foundation, *overrides: str, seed: int = 0) -> DiffusionBackbone:
    cfg = apply_overrides(tiny_config(tiny_root), list(overrides))
    torch.manual_seed(seed)
    bb = DiffusionBackbone(cfg.backbone, foundation)
    _reinit_trainable(bb, seed + 100)
    return bb.eval()


@contextmanager
def _hooks(*pairs: tuple[nn.Module, Callable], pre: bool = False, kwargs: bool = False) -> Iterator[None]:
    handles = []
    try:
        for module, fn in pairs:
            if pre:
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=kwargs))
            else:
                handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


def _layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased, as LayerNorm
    return (x - mu) / torch.sqrt(var + eps) * gain + bias


def _linear(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    y = x @ p[f"{name}.weight"].T
    return y + p[f"{name}.bias"] if f"{name}.bias" in p else y


# ------------------------------------------------------------------ spec 2.4 references


def _ref_residual_mlp(v: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Spec 2.4 step 1: h1 = Linear(v), h2 = Linear(h1), out = h1 + h2; no activation, no norm."""
    h1 = _linear(v, p, "projection.linear1")
    h2 = _linear(h1, p, "projection.linear2")
    return h1 + h2


def _ref_ffn(y: torch.Tensor, p: dict[str, torch.Tensor], name: str, eps: float) -> torch.Tensor:
    """LN(y + W2 ReLU(W1 y)), both linears with bias."""
    hidden = torch.clamp(_linear(y, p, f"{name}.w_1"), min=0)
    return _layer_norm(y + _linear(hidden, p, f"{name}.w_2"), p[f"{name}.layer_norm.weight"],
                       p[f"{name}.layer_norm.bias"], eps)


def _ref_attn_prompt(text: torch.Tensor, image: torch.Tensor, p: dict[str, torch.Tensor], heads: int,
                     eps: float) -> torch.Tensor:
    """Spec 2.4 step 2 (VD-IT attn): text tokens [N,L,d] are the queries, the ResidualMLP-projected image
    tokens [N,M,d] keys and values; heads are contiguous d_k-wide channel slices (the official
    `view(n, len, heads, d_k)`), scores q k^T / sqrt(d_k), softmax over the image tokens;
    y = LN1(text + fc(attn)); out = LN2(y + W2 relu(W1 y))."""
    v = _ref_residual_mlp(image, p)
    a = "cross_attn.cros_attn"
    q = text @ p[f"{a}.w_qs.weight"].T
    k = v @ p[f"{a}.w_ks.weight"].T
    val = v @ p[f"{a}.w_vs.weight"].T
    n, lq, d = q.shape
    dk = d // heads
    out = torch.empty_like(q)
    for i in range(n):
        for h in range(heads):
            cols = slice(h * dk, (h + 1) * dk)
            scores = q[i, :, cols] @ k[i, :, cols].T / math.sqrt(dk)  # [L, M]
            e = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
            weights = e / e.sum(dim=1, keepdim=True)  # softmax over image tokens
            out[i, :, cols] = weights @ val[i, :, cols]
    y = _layer_norm(text + out @ p[f"{a}.fc.weight"].T, p[f"{a}.layer_norm.weight"], p[f"{a}.layer_norm.bias"], eps)
    return _ref_ffn(y, p, "cross_attn.pos_ffn", eps)


def _ref_concat_prompt(text: torch.Tensor, image: torch.Tensor, p: dict[str, torch.Tensor], eps: float) -> torch.Tensor:
    """Supplementary Table A "VD-IT concat": [text tokens ; projected image tokens] along the sequence,
    then a token-wise MLP (vdit: LN(x + W2 relu(W1 x)), hidden f + 2d for the attn block's count)."""
    x = torch.cat([text, _ref_residual_mlp(image, p)], dim=1)
    return _ref_ffn(x, p, "cross_attn.mlp", eps)


def _ref_prompt(mode: str, text: torch.Tensor, image: torch.Tensor | None, p: dict[str, torch.Tensor], heads: int,
                eps: float) -> torch.Tensor:
    if mode == "text":  # VD-T: the T2V text tokens as they are
        return text
    if mode == "image":  # VD-I: the projected image tokens only
        return _ref_residual_mlp(image, p)
    if mode == "concat":
        return _ref_concat_prompt(text, image, p, eps)
    return _ref_attn_prompt(text, image, p, heads, eps)


def _attn_block_param_count(d: int, f: int) -> int:
    """Spec 2.4: W_q, W_k, W_v, fc (d x d, no bias) + LN1 + W1 (d->f, bias) + W2 (f->d, bias) + LN2."""
    return 4 * d * d + 2 * d + (d * f + f) + (f * d + d) + 2 * d


def _prompt_setup(scale: str, tiny_root) -> tuple[int, int, object]:
    if scale == "full":
        a, cfg = arch("modelscope-1.7b"), full_config().backbone.prompt
        # Spec 2.4 at full width: 16 heads of 64, FFN 1024->512->1024, LN eps 1e-6
        assert (cfg.num_heads, cfg.ffn_dim, cfg.layer_norm_eps) == (16, 512, 1e-6)
    else:
        a, cfg = arch("tiny"), tiny_config(tiny_root).backbone.prompt
    return int(a["clip_vision"]["hidden_size"]), int(a["unet"]["cross_attention_dim"]), cfg


@pytest.mark.parametrize("scale", ["tiny", "full"])
@pytest.mark.parametrize("mode", ["attn", "concat", "image", "text"])
def test_prompt_module_matches_reference(tiny_root, scale, mode):
    """Spec 2.4 and Table A: each prompt mode of TextGuidedProjection equals the written-out reference."""
    vis_dim, d, cfg = _prompt_setup(scale, tiny_root)
    cfg.mode = mode
    torch.manual_seed(0)
    module = TextGuidedProjection(vis_dim, d, cfg)
    _reinit_trainable(module, 1)
    module = module.double()
    g = torch.Generator().manual_seed(2)
    n, lt, m = 2, 77, 257 if scale == "full" else 17
    text = torch.randn(n, lt, d, generator=g, dtype=torch.float64)
    image = torch.randn(n, m, vis_dim, generator=g, dtype=torch.float64)
    p = _params64(module)
    if mode == "text":
        assert not p  # VD-T has nothing trainable on the prompt side
    got = module(text, None if mode == "text" else image)
    want = _ref_prompt(mode, text, image, p, cfg.num_heads, cfg.layer_norm_eps)
    expected_len = {"attn": lt, "text": lt, "image": m, "concat": lt + m}[mode]
    assert got.shape == (n, expected_len, d)
    torch.testing.assert_close(got, want, **TOL64)
    if mode == "concat":
        # Supplementary: the MLP after the concatenation has the attention block's trainable count.
        n_mlp = sum(q.numel() for q in module.cross_attn.parameters())
        assert n_mlp == _attn_block_param_count(d, cfg.ffn_dim)


# ------------------------------------------------------------------ spec 2.4 inside the backbone, Table A


@pytest.fixture(scope="module")
def frames_b2() -> torch.Tensor:
    return _frames(2, 2, 64, 64, seed=3)


@pytest.mark.parametrize("mode", ["attn", "concat", "image", "text"])
def test_unet_conditioning_is_the_per_frame_reference_prompt(tiny_root, tiny_foundation, frames_b2, mode):
    """Spec 2.2-2.4: every frame row b*T+f of the UNet's cross-attention context is the prompt built from
    clip b's T2V text tokens and frame (b, f)'s CLIP tokens. VD-I ignores the text (two sentences give
    identical conditioning and levels); VD-T, concat and attn depend on it."""
    bb = _backbone(tiny_root, tiny_foundation, f"backbone.prompt.mode={mode}")
    b, t = frames_b2.shape[:2]
    heads, eps = bb.cfg.prompt.num_heads, bb.cfg.prompt.layer_norm_eps
    p = _params64(bb, "prompt.")
    conds, levels = [], []
    for sentences in (SENTENCES_A, SENTENCES_B):
        got: dict[str, torch.Tensor] = {}
        text_hook = (tiny_foundation.t2v_text_encoder, lambda _m, _i, o: got.__setitem__("text", o[0]))
        clip_hook = (tiny_foundation.clip_vision, lambda _m, _i, o: got.__setitem__("image", o.last_hidden_state))
        cond_hook = (bb.unet.down_blocks[0], lambda _m, _a, kw: got.__setitem__("cond", kw["encoder_hidden_states"]))
        with torch.no_grad(), _hooks(text_hook, clip_hook), _hooks(cond_hook, pre=True, kwargs=True):
            levels.append(bb(frames_b2, sentences))
        assert ("image" in got) == (mode != "text")
        text = got["text"].double()
        assert text.shape[0] == b
        rows = []
        for i in range(b):
            for f in range(t):
                n = i * t + f  # batch-major frame order: b0f0, b0f1, b1f0, ...
                image = got["image"][n : n + 1].double() if mode != "text" else None
                rows.append(_ref_prompt(mode, text[i : i + 1], image, p, heads, eps))
        want = torch.cat(rows)
        assert got["cond"].shape == want.shape
        torch.testing.assert_close(got["cond"].double(), want, **TOL32)
        conds.append(got["cond"])
    assert torch.equal(levels[0][0], levels[1][0])  # L0 is the VAE tap: text-independent in every mode
    if mode == "image":
        assert torch.equal(conds[0], conds[1])
        for la, lb in zip(levels[0][1:], levels[1][1:]):
            assert torch.equal(la, lb)
    else:
        assert (conds[0] - conds[1]).abs().max() > 1e-3
        for la, lb in zip(levels[0][1:], levels[1][1:]):  # the UNet levels follow the text
            assert (la - lb).abs().max() > 1e-4


@pytest.mark.parametrize("mode", ["image", "text", "concat", "attn"])
def test_prompt_modes_train_and_vd_t_never_runs_clip_vision(tiny_root, tiny_foundation, mode):
    """Table A in a training step of the whole model: VD-T never runs the CLIP vision tower (a pre-hook
    that raises), the other modes run it once; gradients reach the prompt modules through the UNet."""
    calls = []

    def clip_guard(_m, _args):
        if mode == "text":
            raise AssertionError("VD-T ran the CLIP vision tower")
        calls.append(1)

    cfg = apply_overrides(tiny_config(tiny_root), [f"backbone.prompt.mode={mode}"])
    torch.manual_seed(0)
    model = VDIT(cfg, tiny_foundation).train()
    b, t, h, w = 1, 2, 64, 64
    with _hooks((tiny_foundation.clip_vision, clip_guard), pre=True):
        batch = box_batch(_frames(b, t, h, w, seed=4), ["the red circle"])
        TrainingWrapper.from_model(model).matched_outputs(batch)["pred_masks"].sum().backward()
    assert len(calls) == (0 if mode == "text" else 1)
    prompt = dict(model.backbone.prompt.named_parameters())
    if mode == "text":
        assert not prompt and model.backbone.clip_vision is None
    else:
        assert prompt["projection.linear1.weight"].grad.abs().sum() > 0
    if mode in ("attn", "concat"):
        first = "cross_attn.cros_attn.w_qs.weight" if mode == "attn" else "cross_attn.mlp.w_1.weight"
        assert prompt[first].grad.abs().sum() > 0
    assert model.backbone.noise.noise_pred.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------ spec 2.6-2.7: noise and forward diffusion


def _hand_alphas_cumprod(scheduler_dir) -> torch.Tensor:
    """abar_t from the scheduler config, by hand (scaled_linear: betas = linspace(sqrt b0, sqrt b1, N)^2)."""
    cfg = json.loads((scheduler_dir / "scheduler_config.json").read_text())
    assert cfg["beta_schedule"] == "scaled_linear"
    n = int(cfg["num_train_timesteps"])
    lo, hi = math.sqrt(cfg["beta_start"]), math.sqrt(cfg["beta_end"])
    betas = torch.tensor([(lo + (hi - lo) * i / (n - 1)) ** 2 for i in range(n)], dtype=torch.float64)
    abar = torch.empty(n, dtype=torch.float64)
    acc = 1.0
    for i in range(n):
        acc *= 1.0 - betas[i].item()
        abar[i] = acc
    return abar


def test_schedule_matches_spec_table(tiny_root, tiny_foundation):
    """Spec 2.6 table (ModelScope schedule: beta 0.00085 -> 0.012, 1000 steps) and vdit's copy of abar."""
    abar = _hand_alphas_cumprod(tiny_root / "t2v" / "scheduler")
    assert len(abar) == 1000
    table = {0: (0.99957, 0.0292), 4: (0.99785, 0.0655), 9: (0.99565, 0.0932), 49: (0.97603, 0.2177),
             99: (0.94629, 0.3233)}
    for t, (s_a, s_1ma) in table.items():
        assert abs(abar[t].sqrt().item() - s_a) < 5e-6, t  # table rounds to 5 decimals
        assert abs((1 - abar[t]).sqrt().item() - s_1ma) < 5e-5, t  # and to 4 here
    assert abs(1 - abar[0].item() - 0.00085) < 1e-12  # abar_0 = 1 - beta_0
    torch.testing.assert_close(tiny_foundation.alphas_cumprod.double(), abar, atol=1e-6, rtol=1e-6)


def _ref_video_noise(z: torch.Tensor, p: dict[str, torch.Tensor], eps: float) -> torch.Tensor:
    """Spec 2.6 steps 1-5 on latents [B*T,C,h,w]: conv 3x3 (bias) -> per pixel Linear-ReLU-Linear-Sigmoid
    (no biases) -> (e - mean) / (std + eps) with ONE mean and unbiased std over the whole tensor."""
    x = F.conv2d(z, p["noise_pred.weight"], p["noise_pred.bias"], padding=1)
    x = torch.einsum("oc,nchw->nohw", p["noise_fc.0.weight"], x)  # mixes channels at each pixel
    x = torch.clamp(x, min=0)
    x = torch.einsum("oc,nchw->nohw", p["noise_fc.2.weight"], x)
    x = 1 / (1 + torch.exp(-x))
    mean = x.sum() / x.numel()
    std = torch.sqrt(((x - mean) ** 2).sum() / (x.numel() - 1))
    return (x - mean) / (std + eps)


def test_video_noise_module_matches_reference():
    """Spec 2.6 on a batch of two clips: the standardisation statistics are shared across the batch."""
    b, c, t, h, w = 2, 4, 3, 5, 6
    torch.manual_seed(0)
    module = VideoNoise(c, 1e-5)
    _reinit_trainable(module, 7)
    module = module.double()
    z = torch.randn(b, c, t, h, w, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    got = module(z)  # [B,C,T,h,w]
    z_frames = z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    want = _ref_video_noise(z_frames, _params64(module), 1e-5).reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(got, want, **TOL64)


def _reference_latents(bb: DiffusionBackbone, frames: torch.Tensor) -> torch.Tensor:
    """Spec 2.1 + 2.5 with the stock VAE: x = 2 (frames * std + mean) - 1; z = posterior mean * 0.18215
    (the mean: vdit's eval setting), frames batch-major [B*T,4,h,w]."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = 2 * (frames.flatten(0, 1) * std + mean) - 1
    with torch.no_grad():
        dist = bb.vae.encode(x).latent_dist
    assert bb.vae.config.scaling_factor == pytest.approx(0.18215)
    return dist.mean * bb.vae.config.scaling_factor


def _run_capturing_unet_input(bb: DiffusionBackbone, frames: torch.Tensor, texts: list[str]) -> dict[str, torch.Tensor]:
    """The UNet's (noisy latent) input as conv_in sees it [B*T,4,h,w] and the timesteps given to time_proj.
    (vdit runs the stock UNet sub-modules, not UNet.forward, so the pre-hooks sit on its first layers.)"""
    got: dict[str, torch.Tensor] = {}
    with torch.no_grad(), _hooks((bb.unet.conv_in, lambda _m, a: got.__setitem__("x", a[0])),
                                 (bb.unet.time_proj, lambda _m, a: got.__setitem__("t", a[0])), pre=True):
        got["levels"] = bb(frames, texts)
    return got


NOISE_CASES = [("predicted", s) for s in (1, 5, 10, 50, 100)] + [("gaussian", 1), ("gaussian", 50),
                                                                 ("none", 1), ("none", 100)]


@pytest.mark.parametrize("kind,step", NOISE_CASES)
def test_unet_input_is_the_forward_diffusion_of_the_latents(tiny_root, tiny_foundation, kind, step):
    """Spec 2.6-2.7, Table B: the UNet sees z_noisy = sqrt(abar_t) z + sqrt(1 - abar_t) eps at t = step - 1
    (predicted: the reference video noise; gaussian: a standard normal from the global RNG; none: z itself),
    and receives t = step - 1 as its timestep."""
    b, t, h, w = 1, 2, 64, 64
    frames = _frames(b, t, h, w, seed=5)
    bb = _backbone(tiny_root, tiny_foundation, f"backbone.noise.kind={kind}", f"backbone.noise.step={step}")
    z = _reference_latents(bb, frames).double()  # [B*T,4,h,w]
    torch.manual_seed(1234)
    got = _run_capturing_unet_input(bb, frames, ["the red circle"])
    timestep = step - 1
    assert got["t"].tolist() == [timestep] * b
    abar = _hand_alphas_cumprod(tiny_root / "t2v" / "scheduler")[timestep]
    if kind == "none":
        want = z
    else:
        if kind == "predicted":
            eps = _ref_video_noise(z, _params64(bb, "noise."), bb.cfg.noise.std_eps)
        else:  # drawn once, shaped like the video latents [B,C,T,h,w]
            torch.manual_seed(1234)
            eps = torch.randn(b, 4, t, h // 8, w // 8).permute(0, 2, 1, 3, 4).reshape(b * t, 4, h // 8, w // 8)
        want = abar.sqrt() * z + (1 - abar).sqrt() * eps.double()
    torch.testing.assert_close(got["x"].double(), want, **TOL32)


def test_noise_kinds_give_different_unet_inputs(tiny_root, tiny_foundation):
    frames = _frames(1, 2, 64, 64, seed=6)
    inputs = {}
    for kind in ("predicted", "gaussian", "none"):
        bb = _backbone(tiny_root, tiny_foundation, f"backbone.noise.kind={kind}", "backbone.noise.step=50")
        inputs[kind] = _run_capturing_unet_input(bb, frames, ["a dog"])["x"]
    kinds = list(inputs)
    for i, ka in enumerate(kinds):
        for kb in kinds[i + 1 :]:
            assert (inputs[ka] - inputs[kb]).abs().max() > 1e-2, (ka, kb)


# ------------------------------------------------------------------ spec 2.5, 2.7, 2.8: taps and levels


def _capture_taps(bb: DiffusionBackbone, store: dict[str, torch.Tensor]) -> list[tuple[nn.Module, Callable]]:
    """Own hooks on the stock sub-modules: VAE tap B and UNet taps U0..U5 (spec 2.5, 2.7)."""
    unet = bb.unet

    def put(key: str, pick: Callable) -> Callable:
        return lambda _m, _i, out: store.__setitem__(key, pick(out))

    first = lambda out: out[0] if isinstance(out, tuple) else out.sample  # noqa: E731
    return [
        (bb.vae.encoder.down_blocks[2].resnets[1], put("B", lambda o: o)),  # before block 2's downsampler
        (unet.transformer_in, put("U0", first)),
        (unet.down_blocks[0], put("U1", lambda o: o[0])),  # (hidden after the downsampler, residuals)
        (unet.down_blocks[1], put("U2", lambda o: o[0])),
        (unet.up_blocks[0], put("U3", lambda o: o)),
        (unet.up_blocks[1], put("U4", lambda o: o)),
        (unet.up_blocks[2], put("U5", lambda o: o)),
    ]


def _ref_level(x: torch.Tensor, p: dict[str, torch.Tensor], level: int) -> torch.Tensor:
    """Spec 2.8: two 1x1 convolutions with bias, nothing in between."""
    y = F.conv2d(x, p[f"level_projections.{level}.0.weight"], p[f"level_projections.{level}.0.bias"])
    return F.conv2d(y, p[f"level_projections.{level}.1.weight"], p[f"level_projections.{level}.1.bias"])


def test_levels_are_projections_of_the_reference_taps(tiny_root, tiny_foundation):
    """Spec 2.8: L0 = proj(tapB), L1 = proj(cat(U0, U5)), L2 = proj(cat(U1, U4)), L3 = proj(cat(U2, U3)),
    with the taps captured by this test's hooks on the stock VAE/UNet sub-modules (spec 2.5, 2.7)."""
    b, t, h, w = 2, 2, 64, 96  # latent 8x12: not a multiple of 8, so the up blocks' sizes are forced
    bb = _backbone(tiny_root, tiny_foundation)
    taps: dict[str, torch.Tensor] = {}
    with torch.no_grad(), _hooks(*_capture_taps(bb, taps)):
        levels = bb(_frames(b, t, h, w, seed=9), ["the red circle", "a small blue square"])
    n = b * t
    c_unet = list(bb.unet.config.block_out_channels)
    c_vae = list(bb.vae.config.block_out_channels)
    # Spec 2.5 / 2.7 tables: channels and strides of the taps (ceil sizes for the UNet's stride-2 convs).
    expect = {"B": (c_vae[2], 4), "U0": (c_unet[0], 8), "U1": (c_unet[0], 16), "U2": (c_unet[1], 32),
              "U3": (c_unet[3], 32), "U4": (c_unet[2], 16), "U5": (c_unet[1], 8)}
    for key, (ch, s) in expect.items():
        assert taps[key].shape == (n, ch, -(-h // s), -(-w // s)), key
    p = _params64(bb)
    sources = [taps["B"], torch.cat([taps["U0"], taps["U5"]], dim=1), torch.cat([taps["U1"], taps["U4"]], dim=1),
               torch.cat([taps["U2"], taps["U3"]], dim=1)]
    assert len(levels) == 4
    for i, (src, got) in enumerate(zip(sources, levels)):
        want = _ref_level(src.double(), p, i)
        assert got.shape == want.shape, i
        torch.testing.assert_close(got.double(), want, **TOL32)


def test_unet_taps_equal_the_stock_unet_forward(tiny_root, tiny_foundation):
    """Spec 2.7: vdit runs the UNet's stock sub-modules itself (to keep per-frame prompts). With VD-T the
    per-frame prompt is the clip's text repeated per frame, which is exactly what the stock
    `UNet3DConditionModel.forward` builds; so the taps of both runs must agree."""
    b, t, h, w = 2, 2, 64, 96
    bb = _backbone(tiny_root, tiny_foundation, "backbone.prompt.mode=text", "backbone.noise.step=10")
    ours: dict[str, torch.Tensor] = {}
    text: dict[str, torch.Tensor] = {}
    with _hooks((tiny_foundation.t2v_text_encoder, lambda _m, _i, o: text.__setitem__("e", o[0]))), \
            _hooks(*_capture_taps(bb, ours)):
        got = _run_capturing_unet_input(bb, _frames(b, t, h, w, seed=10), ["the red circle", "a dog moving left"])
    sample = got["x"].reshape(b, t, *got["x"].shape[1:]).permute(0, 2, 1, 3, 4)  # [B,4,T,h,w]
    stock: dict[str, torch.Tensor] = {}
    with torch.no_grad(), _hooks(*_capture_taps(bb, stock)[1:]):
        bb.unet(sample, 9, encoder_hidden_states=text["e"])
    for key in ("U0", "U1", "U2", "U3", "U4", "U5"):
        torch.testing.assert_close(ours[key], stock[key], **TOL32)
