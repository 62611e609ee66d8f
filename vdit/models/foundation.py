"""Loading the frozen foundation models with the stock libraries.

`load_foundation(cfg)` reads, from local folders or hub ids (the hub is only reached when the user's
environment allows it; tests run with HF_HUB_OFFLINE=1 on tiny local folders):

- the text-to-video diffusers folder: unet/ (UNet3DConditionModel), vae/ (AutoencoderKL), text_encoder/
  (CLIPTextModel), tokenizer/ (CLIPTokenizer), scheduler/ (read into a DDPMScheduler, as VD-IT does);
- the CLIP vision tower (CLIPVisionModel: only `last_hidden_state` is used, so the projection is not
  loaded) and the preprocessing constants of its image processor config;
- the head's text encoder: RobertaModel + its tokenizer.

`build_foundation_on_meta(arch)` builds the same classes from `foundation_arch` on the meta device:
no files, no memory, exact parameter counts. `build_foundation_random(arch, dtype, device)` builds them
with random weights in memory (benchmarks at the real widths, no download).
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from vdit.config import FoundationConfig
from vdit.errors import ModelLoadError
from vdit.models.foundation_arch import CLIP_MEAN, CLIP_STD, SCHEDULER, arch

# Files each local folder must hold (any one of each tuple); checked before loading so that the user
# gets one error naming everything that is missing instead of a stack trace from deep inside a library.
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
            "diffusion_pytorch_model.safetensors.index.json", "model.safetensors", "pytorch_model.bin",
            "model.safetensors.index.json", "pytorch_model.bin.index.json")
_T2V_LAYOUT = {
    "unet": [("config.json",), _WEIGHTS],
    "vae": [("config.json",), _WEIGHTS],
    "text_encoder": [("config.json",), _WEIGHTS],
    "tokenizer": [("tokenizer.json", "vocab.json", "tokenizer_config.json")],
    "scheduler": [("scheduler_config.json",)],
}
_CLIP_LAYOUT = {".": [("config.json",), _WEIGHTS, ("preprocessor_config.json",)]}
_TEXT_LAYOUT = {".": [("config.json",), _WEIGHTS, ("tokenizer.json", "vocab.json", "tokenizer_config.json")]}


@dataclass
class ClipImageSpec:
    """What the CLIP image processor would do, as numbers (we preprocess on tensors, on device)."""

    shortest_edge: int
    crop_height: int
    crop_width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass
class Foundation:
    unet: nn.Module
    vae: nn.Module
    t2v_text_encoder: nn.Module
    t2v_tokenizer: Any
    alphas_cumprod: torch.Tensor  # [num_train_timesteps] of the DDPM schedule
    clip_vision: nn.Module
    clip_image: ClipImageSpec
    text_encoder: nn.Module
    text_tokenizer: Any
    vae_scaling_factor: float

    def modules(self) -> dict[str, nn.Module]:
        return {
            "unet": self.unet,
            "vae": self.vae,
            "t2v_text_encoder": self.t2v_text_encoder,
            "clip_vision": self.clip_vision,
            "text_encoder": self.text_encoder,
        }


def _is_local(name: str) -> bool:
    """A path that exists, or that is written as a path, is a local folder; anything else a hub id."""
    return os.path.exists(os.path.expanduser(name)) or name.startswith((".", "/", "~"))


def check_layout(path: str, layout: dict[str, list[tuple[str, ...]]], what: str) -> None:
    """Raise one ModelLoadError naming every missing subfolder/file of a local model folder."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ModelLoadError(f"{what}: folder {root} does not exist")
    missing = []
    for sub, needs in layout.items():
        folder = root / sub
        if not folder.is_dir():
            missing.append(f"{sub}/")
            continue
        for options in needs:
            if not any((folder / f).is_file() for f in options):
                missing.append(str(Path(sub) / options[0]) if len(options) == 1 else
                               f"{sub}/{{{' | '.join(options)}}}")
    if missing:
        raise ModelLoadError(f"{what} at {root} is incomplete; missing: {', '.join(missing)}")


def _load(what: str, fn, *args, **kwargs):
    """Run a from_pretrained call, turning library errors (truncated file, bad json) into one line."""
    try:
        return fn(*args, **kwargs)
    except ModelLoadError:
        raise
    except (OSError, ValueError, RuntimeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load {what}: {msg}") from exc
    except Exception as exc:  # safetensors raises its own error type for truncated headers
        if type(exc).__name__ in ("SafetensorError", "HeaderTooLarge", "HeaderTooSmall"):
            raise ModelLoadError(f"cannot load {what}: {exc}") from exc
        raise


def _clip_image_spec(path: str) -> ClipImageSpec:
    """Read the CLIP image processor's numbers from its preprocessor_config.json."""
    if _is_local(path):
        cfg_file = Path(path).expanduser() / "preprocessor_config.json"
    else:
        from huggingface_hub import hf_hub_download

        cfg_file = Path(_load("CLIP preprocessor config", hf_hub_download, path, "preprocessor_config.json"))
    try:
        cfg = json.loads(Path(cfg_file).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {cfg_file}: {exc}") from exc
    size = cfg.get("size", 224)
    shortest = size.get("shortest_edge", size.get("height", 224)) if isinstance(size, dict) else int(size)
    crop = cfg.get("crop_size", shortest)
    ch, cw = (crop["height"], crop["width"]) if isinstance(crop, dict) else (int(crop), int(crop))
    return ClipImageSpec(
        shortest_edge=int(shortest),
        crop_height=int(ch),
        crop_width=int(cw),
        mean=tuple(cfg.get("image_mean", CLIP_MEAN)),
        std=tuple(cfg.get("image_std", CLIP_STD)),
    )


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """The libraries print load reports (e.g. the unused text tower of a full CLIP checkpoint) and
    progress bars for every model; vdit loads known layouts, so keep only their errors."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    saved = (tlog.get_verbosity(), dlog.get_verbosity())
    tlog.set_verbosity_error()
    dlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(saved[0])
        dlog.set_verbosity(saved[1])
        tlog.enable_progress_bar()
        dlog.enable_progress_bar()


def load_foundation(cfg: FoundationConfig, torch_dtype: torch.dtype | None = None) -> Foundation:
    """Load every frozen model named by `cfg` (local folders are validated first)."""
    with quiet_libraries():
        return _load_foundation(cfg, torch_dtype)


def _load_foundation(cfg: FoundationConfig, torch_dtype: torch.dtype | None) -> Foundation:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTokenizer, CLIPVisionModel, RobertaModel

    if _is_local(cfg.t2v):
        check_layout(cfg.t2v, _T2V_LAYOUT, "text-to-video model")
    if _is_local(cfg.clip_vision):
        check_layout(cfg.clip_vision, _CLIP_LAYOUT, "CLIP vision model")
    if _is_local(cfg.text_encoder):
        check_layout(cfg.text_encoder, _TEXT_LAYOUT, "text encoder")
    dtype_kw = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
    t2v = str(Path(cfg.t2v).expanduser()) if _is_local(cfg.t2v) else cfg.t2v

    unet = _load(f"UNet from {t2v}/unet", UNet3DConditionModel.from_pretrained, t2v, subfolder="unet", **dtype_kw)
    vae = _load(f"VAE from {t2v}/vae", AutoencoderKL.from_pretrained, t2v, subfolder="vae", **dtype_kw)
    t2v_text = _load(f"text encoder from {t2v}/text_encoder", CLIPTextModel.from_pretrained, t2v,
                     subfolder="text_encoder", **dtype_kw)
    t2v_tok = _load(f"tokenizer from {t2v}/tokenizer", CLIPTokenizer.from_pretrained, t2v, subfolder="tokenizer")
    scheduler = _load(f"scheduler from {t2v}/scheduler", DDPMScheduler.from_pretrained, t2v, subfolder="scheduler")
    clip_vision = _load(f"CLIP vision model from {cfg.clip_vision}", CLIPVisionModel.from_pretrained,
                        cfg.clip_vision, **dtype_kw)
    text_encoder = _load(f"text encoder from {cfg.text_encoder}", RobertaModel.from_pretrained,
                         cfg.text_encoder, add_pooling_layer=False, **dtype_kw)
    text_tok = _load(f"tokenizer from {cfg.text_encoder}", AutoTokenizer.from_pretrained, cfg.text_encoder)
    return Foundation(
        unet=unet,
        vae=vae,
        t2v_text_encoder=t2v_text,
        t2v_tokenizer=t2v_tok,
        alphas_cumprod=scheduler.alphas_cumprod.clone().float(),
        clip_vision=clip_vision,
        clip_image=_clip_image_spec(cfg.clip_vision),
        text_encoder=text_encoder,
        text_tokenizer=text_tok,
        vae_scaling_factor=float(vae.config.scaling_factor),
    )


def build_foundation_on_meta(arch_name: str) -> Foundation:
    """The foundation models of an architecture, built on the meta device (no weights, no memory).
    Tokenizers are None: nothing that needs text can run on such a model."""
    # Tiny archs size their vocabulary from the tokenizer; any number works for counting.
    return _build_foundation(arch_name, torch.device("meta"), vocab=512)


def build_foundation_random(
    arch_name: str,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Foundation:
    """The foundation models of an architecture with the libraries' random initialisation, built in
    memory (no files): for benchmarks and memory/FLOP accounting at the real widths without weights.

    The tokenizers are the test kit's stand-ins (`vdit.models.tokenizers.build_clip_tokenizer` /
    `build_roberta_tokenizer`: byte-level BPE over a small vocabulary). Token ids therefore differ from the
    real tokenizers', but sequence shapes do not (the T2V prompt is always padded to 77 tokens; RoBERTa
    sees one token per word or byte), so compute and memory are those of the real models. Models are
    initialised in fp32 (the libraries' init needs it) one at a time and then cast to `dtype`, so the
    transient fp32 copy is one model, not the whole foundation. `overrides` replaces entries of the
    architecture per model, e.g. `{"clip_vision": {"num_hidden_layers": 2}}` (the shallow-encoder setting
    of bench/cpu_official_setting.py).
    """
    from vdit.models.tokenizers import build_clip_tokenizer, build_roberta_tokenizer

    clip_tok, rob_tok = build_clip_tokenizer(), build_roberta_tokenizer()
    torch.manual_seed(seed)
    return _build_foundation(arch_name, torch.device(device), vocab=None, dtype=dtype,
                             tokenizers=(clip_tok, rob_tok), overrides=overrides)


def arch_with_overrides(arch_name: str, overrides: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """The architecture table of `arch_name` with `overrides` ({model: {key: value}}) applied to a copy;
    an unknown model or key is a ConfigError (a typo must not silently build the stock model)."""
    from vdit.errors import ConfigError

    table = {name: dict(entry) for name, entry in arch(arch_name).items()}
    for name, entries in (overrides or {}).items():
        if name not in table:
            raise ConfigError(f"architecture override for unknown model {name!r}; known: {sorted(table)}")
        unknown = sorted(set(entries) - set(table[name]))
        if unknown:
            raise ConfigError(f"architecture override of {name}: unknown keys {unknown}")
        table[name].update(entries)
    return table


def _build_foundation(arch_name: str, device: torch.device, vocab: int | None,
                      dtype: torch.dtype | None = None, tokenizers: tuple[Any, Any] | None = None,
                      overrides: dict[str, dict[str, Any]] | None = None) -> Foundation:
    """Build every foundation model of `arch_name` (with `overrides`, see `arch_with_overrides`) from its
    published architecture on `device`. Vocabulary sizes an arch leaves open (None) come from `vocab` or,
    failing that, the tokenizers."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel, RobertaConfig
    from transformers import RobertaModel

    a = arch_with_overrides(arch_name, overrides)
    clip_tok, rob_tok = tokenizers if tokenizers is not None else (None, None)
    text_vocab = vocab or (len(clip_tok) if clip_tok is not None else None)
    rob_vocab = vocab or (len(rob_tok) if rob_tok is not None else None)

    def make(build):
        with torch.device(device):
            module = build()
        return module if dtype is None else module.to(dtype)

    with quiet_libraries():
        unet = make(lambda: UNet3DConditionModel(**a["unet"]))
        vae = make(lambda: AutoencoderKL(**a["vae"]))
        text_cfg = {**a["t2v_text"], "vocab_size": a["t2v_text"]["vocab_size"] or text_vocab}
        if clip_tok is not None:
            text_cfg.update(bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id)
        t2v_text = make(lambda: CLIPTextModel(CLIPTextConfig(**text_cfg)))
        vis = {k: v for k, v in a["clip_vision"].items() if k != "projection_dim"}
        clip_vision = make(lambda: CLIPVisionModel(CLIPVisionConfig(**vis)))
        rob = {**a["text_encoder"], "vocab_size": a["text_encoder"]["vocab_size"] or rob_vocab}
        text_encoder = make(lambda: RobertaModel(RobertaConfig(**rob), add_pooling_layer=False))
    for module in (unet, vae, t2v_text, clip_vision, text_encoder):
        module.eval()
    image = a["clip_vision"]["image_size"]
    return Foundation(
        unet=unet,
        vae=vae,
        t2v_text_encoder=t2v_text,
        t2v_tokenizer=clip_tok,
        alphas_cumprod=DDPMScheduler(**SCHEDULER).alphas_cumprod.float(),
        clip_vision=clip_vision,
        clip_image=ClipImageSpec(image, image, image, CLIP_MEAN, CLIP_STD),
        text_encoder=text_encoder,
        text_tokenizer=rob_tok,
        vae_scaling_factor=float(a["vae"]["scaling_factor"]),
    )
