"""Convert a released VD-IT checkpoint (the official code's format, spec 10) into a vdit weights folder.

    report = convert_official("vdit_ytvos.pth", "weights/vdit-ytvos")        # foundation from the hub ids
    report = convert_official(ckpt, out, foundation_root="models/", check_frozen=True)

An official checkpoint is a legacy (non-zip) torch pickle of ``{'model': full state_dict, 'optimizer',
'lr_scheduler', 'epoch', 'args': argparse.Namespace}``. It is read with torch's restricted
``weights_only`` unpickler, which accepts tensors, plain containers and the few globals torch lists as
safe; we add only ``argparse.Namespace`` (the pickled ``args``). A file that references any other global
(arbitrary code on load) is refused before anything of it runs, with an error naming those globals.

Key mapping (official -> vdit parameter):

* the trainable modules keep their names except for the container paths:
  ``backbone.0.diff_ftex.{cross_attn,projection}`` -> ``backbone.prompt.*``,
  ``backbone.0.diff_ftex.{noise_pred,noise_fc}`` -> ``backbone.noise.*``,
  ``backbone.0.diff_ftex.act_postprocess.{i}`` and its duplicate ``act_{i+1}_postprocess`` ->
  ``backbone.level_projections.{i}``, ``query_tensors`` / ``fusion_module`` -> ``queries.*``,
  ``controller`` -> ``mask_head.controller``, ``mask_refine`` -> ``mask_optimiser``; ``transformer``,
  ``input_proj``, ``class_embed``, ``bbox_embed`` (and its duplicate view
  ``transformer.decoder.bbox_embed``), ``text_proj`` and ``query_embed`` are identical;
* duplicate keys (the same tensor registered twice officially) must hold equal values;
* the frozen foundation weights (VAE, UNet, the T2V CLIP text encoder, CLIP vision, RoBERTa) are not
  copied: vdit loads them from their published folders. ``--check-frozen`` compares them with those;
* ``sentence_proj`` (computed but unused officially), CLIP's ``visual_projection`` and RoBERTa's pooler
  are frozen weights vdit does not hold; ``position_ids`` buffers are ignored.

Every key that no rule covers and every vdit parameter that no key fills is reported; either one stops
the conversion (unmapped keys can be allowed explicitly).

The network is built on the meta device (no foundation weights are needed to convert), its trainable
parameters are replaced by the converted tensors, and `VDIT.save_pretrained` writes the folder, plus
``conversion_report.json``. Head sizes come from the checkpoint's tensors and ``args``.
"""
from __future__ import annotations

import argparse
import io
import pickletools
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import nn

from vdit.config import HeadConfig, ModelConfig, apply_overrides, preset
from vdit.errors import ConfigError, ModelLoadError

REPORT_NAME = "conversion_report.json"

# Globals the official checkpoints need beyond torch's own weights_only allowlist: the pickled `args`.
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
# A legacy torch file is a sequence of pickles: magic number, protocol version, sys info, the object,
# the storage keys (then the raw storage bytes).
LEGACY_PICKLES = 5

OFFICIAL_BACKBONE = "backbone.0.diff_ftex."
DDP_PREFIX = "module."
LEVEL_PROJECTIONS = "backbone.level_projections."

# Official prefix -> vdit prefix of the trainable parameters (first match wins; exact names included).
TRAINABLE_PREFIXES: tuple[tuple[str, str], ...] = (
    (OFFICIAL_BACKBONE + "cross_attn.", "backbone.prompt.cross_attn."),
    (OFFICIAL_BACKBONE + "projection.", "backbone.prompt.projection."),
    (OFFICIAL_BACKBONE + "noise_pred.", "backbone.noise.noise_pred."),
    (OFFICIAL_BACKBONE + "noise_fc.", "backbone.noise.noise_fc."),
    (OFFICIAL_BACKBONE + "act_postprocess.", LEVEL_PROJECTIONS),
    ("query_tensors", "queries.query_tensors"),
    ("fusion_module.", "queries.fusion_module."),
    ("controller.", "mask_head.controller."),
    ("transformer.", "transformer."),
    ("input_proj.", "input_proj."),
    ("class_embed.", "class_embed."),
    ("bbox_embed.", "bbox_embed."),
    ("text_proj.", "text_proj."),
    ("mask_refine.", "mask_optimiser."),
    ("query_embed.", "query_embed."),
)
# `act_{n}_postprocess` (n = 1..4) is the official second registration of `act_postprocess.{n-1}`.
ACT_DUPLICATE = re.compile(r"^" + re.escape(OFFICIAL_BACKBONE) + r"act_(\d+)_postprocess\.(.+)$")

# Official prefix -> the vdit module holding the same frozen weights (None: vdit does not hold them).
FROZEN_PREFIXES: tuple[tuple[str, str | None], ...] = (
    (OFFICIAL_BACKBONE + "vae.", "backbone.vae"),
    (OFFICIAL_BACKBONE + "unet.", "backbone.unet"),
    (OFFICIAL_BACKBONE + "text_encoder.", "backbone.t2v_text_encoder"),
    (OFFICIAL_BACKBONE + "cv_model.visual_projection.", None),  # CLIP's projection: unused by VD-IT
    (OFFICIAL_BACKBONE + "cv_model.", "backbone.clip_vision"),
    ("text_encoder.text_backbone.pooler.", None),  # feeds only the unused sentence_proj
    ("text_encoder.text_backbone.", "text_encoder.text_backbone"),
    ("sentence_proj.", None),  # computed but unused officially (spec 3.1)
)
# Wrapper levels of older transformers versions (the official code's), absent from newer state_dicts.
TRANSFORMERS_WRAPPERS = ("text_model.", "vision_model.")
IGNORED_BUFFER_SUFFIX = ".position_ids"

# Official `args` that set our head's architecture (same names as HeadConfig).
HEAD_ARGS = ("hidden_dim", "nheads", "enc_layers", "dec_layers", "dim_feedforward", "dropout",
             "num_feature_levels", "enc_n_points", "dec_n_points", "num_queries", "controller_layers",
             "dynamic_mask_channels", "rel_coord")
# Official variants our head implements; any other value cannot be converted faithfully.
REQUIRED_ARGS: dict[str, Any] = {"with_box_refine": True, "two_stage": False, "pre_norm": False}

# Frozen-weight comparison: loose enough for an fp16 copy of the same weights, far below any real change.
FROZEN_RTOL = 1e-3
FROZEN_ATOL = 1e-4


# ------------------------------------------------------------------------------------------------ loading


def _global_name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def allowed_globals() -> set[str]:
    """Names (module.qualname) of every global the restricted load accepts."""
    names = {_global_name(g) for g in SAFE_GLOBALS}
    for entry in torch.serialization.get_safe_globals():
        names.add(entry[1] if isinstance(entry, tuple) else _global_name(entry))
    try:  # torch's own allowlist (private, so only used to word the error message)
        from torch._weights_only_unpickler import _get_allowed_globals

        names |= set(_get_allowed_globals())
    except (ImportError, AttributeError):
        pass
    return names


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
               "STRING"}


def _globals_in_stream(stream, count: int) -> set[str]:
    """module.name of the GLOBAL / STACK_GLOBAL opcodes of `count` consecutive pickles (never executed)."""
    found: set[str] = set()
    try:
        for _ in range(count):
            memo: dict[int, Any] = {}
            pushed: list[Any] = []
            for op, arg, _pos in pickletools.genops(stream):
                name = op.name
                if name == "GLOBAL":
                    found.add(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL" and len(pushed) >= 2:
                    found.add(f"{pushed[-2]}.{pushed[-1]}")
                if name in _STRING_OPS:
                    pushed.append(str(arg))
                elif name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = pushed[-1] if pushed else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    pushed.append(memo.get(int(arg)))
                elif name != "STACK_GLOBAL" and op.stack_after:
                    pushed.append(None)
    except (ValueError, EOFError):  # truncated or not a pickle: report what was seen so far
        pass
    return found


def pickle_globals(path: str | Path) -> list[str]:
    """Every global a torch checkpoint's pickles reference (legacy or zip format), read without loading."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            found: set[str] = set()
            for name in zf.namelist():
                if name.endswith("data.pkl"):
                    found |= _globals_in_stream(io.BytesIO(zf.read(name)), 1)
            return sorted(found)
    with open(path, "rb") as f:
        return sorted(_globals_in_stream(f, LEGACY_PICKLES))


def load_official_checkpoint(path: str | Path) -> Any:
    """Load a torch checkpoint without executing pickled code (tensors, containers, argparse.Namespace).

    ModelLoadError when the file is missing, truncated or corrupt, or references other globals (named).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types on bad files; each becomes one message
        allowed = allowed_globals()
        named_by_torch = re.findall(r"GLOBAL ([\w.]+)", str(exc))  # torch names the first one it refused
        refused = sorted({g for g in pickle_globals(path) if g not in allowed} | set(named_by_torch))
        if refused:
            raise ModelLoadError(
                f"refusing to load {path}: it references globals that are not plain data: {', '.join(refused)}. "
                "Loading them would run arbitrary code; an official VD-IT checkpoint only holds tensors, "
                "containers and argparse.Namespace") from None
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise ModelLoadError(f"cannot read checkpoint {path}: the file is truncated or corrupt "
                             f"({type(exc).__name__}{': ' + detail if detail else ''})") from None


def split_checkpoint(obj: Any, path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, args as a dict) of a loaded checkpoint; a bare state_dict is accepted too."""
    if isinstance(obj, Mapping) and "model" in obj:
        state, args = obj["model"], obj.get("args")
    elif isinstance(obj, Mapping):
        state, args = obj, None
    else:
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict with a 'model' entry")
    if not isinstance(state, Mapping) or not state:
        raise ModelLoadError(f"{path}: 'model' is not a non-empty state_dict")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelLoadError(f"{path}: state_dict entries that are not tensors: {bad[:5]}")
    if all(k.startswith(DDP_PREFIX) for k in state):  # saved from the DistributedDataParallel wrapper
        state = {k[len(DDP_PREFIX):]: v for k, v in state.items()}
    if args is None:
        arg_dict: dict[str, Any] = {}
    elif isinstance(args, argparse.Namespace):
        arg_dict = vars(args)
    elif isinstance(args, Mapping):
        arg_dict = dict(args)
    else:
        raise ModelLoadError(f"{path}: 'args' is a {type(args).__name__}, expected an argparse.Namespace")
    return dict(state), arg_dict


# ------------------------------------------------------------------------------------------------ names


def classify_key(key: str) -> tuple[str, str | None]:
    """Where an official key goes: ("trainable", vdit parameter name), ("frozen", vdit module or None)
    or ("unknown", None)."""
    for prefix, module in FROZEN_PREFIXES:
        if key.startswith(prefix):
            return "frozen", module
    match = ACT_DUPLICATE.match(key)
    if match:
        return "trainable", f"{LEVEL_PROJECTIONS}{int(match.group(1)) - 1}.{match.group(2)}"
    for official, ours in TRAINABLE_PREFIXES:
        if key == official or (official.endswith(".") and key.startswith(official)):
            return "trainable", ours + key[len(official):]
    return "unknown", None


def parameter_aliases(model: nn.Module) -> dict[str, str]:
    """Every name under which a trainable parameter is reachable -> its canonical (saved) name."""
    canonical = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    return {n: canonical[id(p)] for n, p in model.named_parameters(remove_duplicate=False) if id(p) in canonical}


# ------------------------------------------------------------------------------------------------ config


def head_sizes_from_state(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Head sizes readable from the tensors themselves (hidden width, queries, layers, FFN, mask channels)."""
    sizes: dict[str, int] = {}
    if "query_embed.weight" in state:
        sizes["num_queries"], sizes["hidden_dim"] = (int(s) for s in state["query_embed.weight"].shape)
    enc = {int(m.group(1)) for k in state if (m := re.match(r"^transformer\.encoder\.layers\.(\d+)\.", k))}
    dec = {int(m.group(1)) for k in state if (m := re.match(r"^class_embed\.(\d+)\.", k))}
    if enc:
        sizes["enc_layers"] = max(enc) + 1
    if dec:
        sizes["dec_layers"] = max(dec) + 1
    if "transformer.encoder.layers.0.linear1.weight" in state:
        sizes["dim_feedforward"] = int(state["transformer.encoder.layers.0.linear1.weight"].shape[0])
    if "mask_refine.conv2_1div8.weight" in state:
        sizes["dynamic_mask_channels"] = int(state["mask_refine.conv2_1div8.weight"].shape[0])
    return sizes


def head_config_from_checkpoint(head: HeadConfig, state: Mapping[str, torch.Tensor],
                                args: Mapping[str, Any], where: str = "checkpoint") -> HeadConfig:
    """`head` updated with the sizes the checkpoint's tensors and `args` give (they must agree)."""
    for name, wanted in REQUIRED_ARGS.items():
        if name in args and bool(args[name]) != wanted:
            raise ModelLoadError(f"{where}: args.{name}={args[name]!r}; vdit implements only {name}={wanted}")
    from_state = head_sizes_from_state(state)
    for name in HEAD_ARGS:
        if name not in args or args[name] is None:
            continue
        value = type(getattr(head, name))(args[name])
        if name in from_state and from_state[name] != value:
            raise ModelLoadError(f"{where}: args.{name}={args[name]!r} but the tensors say {from_state[name]}")
        setattr(head, name, value)
    for name, value in from_state.items():
        setattr(head, name, value)
    root = int(round(head.dynamic_mask_channels ** 0.5))
    if root * root == head.dynamic_mask_channels:
        head.mask_out_stride = root  # the mask channels pixel-shuffle into one channel
    return head


def config_for_checkpoint(state: Mapping[str, torch.Tensor], args: Mapping[str, Any], preset_name: str = "full",
                          foundation_root: str | Path | None = None, overrides: Iterable[str] = (),
                          where: str = "checkpoint") -> ModelConfig:
    """The model config of the converted weights: preset, head sizes of the checkpoint, foundation folders,
    then the user's `key=value` overrides."""
    cfg = preset(preset_name)
    head_config_from_checkpoint(cfg.head, state, args, where)
    if foundation_root is not None:
        from vdit.engine.recipes import point_foundation

        point_foundation(cfg, Path(foundation_root).expanduser().resolve())
    try:
        return apply_overrides(cfg, list(overrides)).validate()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# ------------------------------------------------------------------------------------------------ plan


@dataclass
class ConversionPlan:
    """How an official state_dict maps onto a vdit model."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # canonical vdit name -> tensor
    sources: dict[str, list[str]] = field(default_factory=dict)  # canonical vdit name -> official keys
    frozen: dict[str, list[str]] = field(default_factory=dict)  # vdit module (or "not held") -> official keys
    ignored_buffers: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # official keys no rule / no vdit parameter takes
    unfilled: list[str] = field(default_factory=list)  # vdit trainable parameters no key fills
    shape_mismatches: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> list[list[str]]:
        return [keys for keys in self.sources.values() if len(keys) > 1]


NOT_HELD = "not held by vdit"


def plan_conversion(state: Mapping[str, torch.Tensor], model: nn.Module) -> ConversionPlan:
    """Map every official key onto `model`'s trainable parameters; duplicates must be equal."""
    aliases = parameter_aliases(model)
    params = dict(model.named_parameters())
    plan = ConversionPlan()
    for key, tensor in state.items():
        kind, target = classify_key(key)
        if kind == "frozen":
            if key.endswith(IGNORED_BUFFER_SUFFIX):
                plan.ignored_buffers.append(key)
            else:
                plan.frozen.setdefault(target or NOT_HELD, []).append(key)
            continue
        if kind == "unknown" or target not in aliases:
            plan.unmapped.append(key)
            continue
        name = aliases[target]
        if name in plan.tensors:
            first = plan.sources[name][0]
            if plan.tensors[name].shape != tensor.shape or not torch.equal(plan.tensors[name], tensor):
                raise ModelLoadError(f"duplicate official keys {first} and {key} (both {name}) hold different values")
            plan.sources[name].append(key)
            continue
        if tuple(tensor.shape) != tuple(params[name].shape):
            plan.shape_mismatches.append(f"{key} -> {name}: checkpoint {tuple(tensor.shape)}, "
                                         f"model {tuple(params[name].shape)}")
        plan.tensors[name] = tensor
        plan.sources[name] = [key]
    plan.unfilled = sorted(set(aliases.values()) - set(plan.tensors))
    return plan


def fill_trainable(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Replace every trainable parameter of `model` (possibly on the meta device) by its converted tensor."""
    current = dict(model.named_parameters())
    for name, tensor in tensors.items():
        module_path, _, attr = name.rpartition(".")
        module = model.get_submodule(module_path)
        old = current[name]
        value = tensor.detach().to(device="cpu", dtype=old.dtype).contiguous().clone()
        setattr(module, attr, nn.Parameter(value, requires_grad=old.requires_grad))
    left = [n for n, p in model.named_parameters() if p.requires_grad and p.is_meta]
    if left:
        raise ModelLoadError(f"{len(left)} trainable parameters were not filled, e.g. {left[:3]}")


# ------------------------------------------------------------------------------------------------ frozen check


@dataclass
class FrozenCheck:
    """Official frozen tensors compared with the foundation models vdit loads."""

    compared: int = 0
    mismatched: list[dict[str, Any]] = field(default_factory=list)  # {"key", "reason"}
    not_in_model: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatched


def _frozen_lookup(key: str, prefix: str, module_state: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    rest = key[len(prefix):]
    candidates = [rest] + [rest[len(w):] for w in TRANSFORMERS_WRAPPERS if rest.startswith(w)]
    for candidate in candidates:
        if candidate in module_state:
            return module_state[candidate]
    return None


def check_frozen_weights(state: Mapping[str, torch.Tensor], plan: ConversionPlan, model: nn.Module) -> FrozenCheck:
    """Compare the checkpoint's frozen foundation tensors with `model`'s (which must hold real weights)."""
    check = FrozenCheck()
    prefixes = {module: prefix for prefix, module in FROZEN_PREFIXES if module is not None}
    for module_path, keys in plan.frozen.items():
        if module_path == NOT_HELD:
            continue
        module_state = model.get_submodule(module_path).state_dict()
        for key in keys:
            ours = _frozen_lookup(key, prefixes[module_path], module_state)
            if ours is None:
                check.not_in_model.append(key)
                continue
            theirs = state[key]
            check.compared += 1
            if tuple(ours.shape) != tuple(theirs.shape):
                check.mismatched.append({"key": key, "reason": f"shape {tuple(theirs.shape)} vs {tuple(ours.shape)}"})
                continue
            a, b = theirs.detach().float().cpu(), ours.detach().float().cpu()
            if not torch.allclose(a, b, rtol=FROZEN_RTOL, atol=FROZEN_ATOL):
                diff = float((a - b).abs().max()) if a.numel() else 0.0
                check.mismatched.append({"key": key, "reason": f"max abs difference {diff:.3g}"})
    return check


# ------------------------------------------------------------------------------------------------ conversion


@dataclass
class ConversionReport:
    checkpoint: str
    out_dir: str
    num_keys: int
    trainable_parameters: int
    trainable_keys: int
    duplicates: list[list[str]]
    frozen_keys: dict[str, int]
    ignored_buffers: int
    unmapped: list[str]
    unfilled: list[str]
    head: dict[str, Any]
    args: dict[str, Any]
    epoch: Any = None
    frozen_check: dict[str, Any] | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def _json_safe(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)


def _problems(plan: ConversionPlan, allow_unmapped: bool) -> list[str]:
    lines = []
    if plan.shape_mismatches:
        lines.append(f"{len(plan.shape_mismatches)} shape mismatch(es): " + "; ".join(plan.shape_mismatches[:10]))
    if plan.unfilled:
        lines.append(f"{len(plan.unfilled)} vdit parameter(s) not filled by any key: " + ", ".join(plan.unfilled[:20]))
    if plan.unmapped and not allow_unmapped:
        lines.append(f"{len(plan.unmapped)} checkpoint key(s) not mapped: " + ", ".join(plan.unmapped[:20]))
    return lines


# Stages `convert_official` reports to its `progress` callback (the last four; the first two with check_frozen).
CONVERSION_STAGES = ("read the checkpoint", "loaded the foundation models", "mapped the keys",
                     "compared the frozen weights", "wrote the weights folder")


def conversion_steps(check_frozen: bool) -> int:
    """How many times `convert_official` calls `progress`."""
    return len(CONVERSION_STAGES) if check_frozen else len(CONVERSION_STAGES) - 2


def _model_card_info(checkpoint: Path, obj: Any) -> Any:
    from vdit.models.model_card import ModelCardInfo

    epoch = _json_safe(obj.get("epoch")) if isinstance(obj, Mapping) else None
    when = f" (epoch {epoch})" if isinstance(epoch, int) else ""
    return ModelCardInfo(source=f"Converted from the released VD-IT checkpoint `{checkpoint.name}`{when} "
                                "(github.com/buxiangzhiren/VD-IT, Hugging Face `buxiangzhiren/VD-IT`) with "
                                "`vdit convert-official`; see `conversion_report.json` beside it. The "
                                "checkpoint's own terms are those of its authors' release.")


def convert_official(checkpoint: str | Path, out_dir: str | Path, *, foundation_root: str | Path | None = None,
                     preset_name: str = "full", overrides: Iterable[str] = (), check_frozen: bool = False,
                     allow_unmapped: bool = False,
                     progress: Callable[[str], None] | None = None) -> ConversionReport:
    """Convert an official checkpoint into a `VDIT.save_pretrained` folder (with its model card); returns the
    report (also written to `out_dir/conversion_report.json`).

    `foundation_root`: folder with t2v/, clip_vision/, text_encoder/ recorded in the output config (default:
    the preset's hub ids). `check_frozen`: load those foundation models and compare the checkpoint's frozen
    weights with them (the report lists the differences; the conversion itself does not depend on them).
    `progress(stage)`: called after each finished stage (`conversion_steps(check_frozen)` calls).
    """
    from vdit.config import to_dict
    from vdit.fileio import dumps_json
    from vdit.models.vdit import VDIT

    def done(stage: str) -> None:
        if progress is not None:
            progress(stage)

    checkpoint = Path(checkpoint).expanduser()
    obj = load_official_checkpoint(checkpoint)
    state, args = split_checkpoint(obj, checkpoint)
    done(CONVERSION_STAGES[0])
    cfg = config_for_checkpoint(state, args, preset_name, foundation_root, overrides, where=str(checkpoint))
    model = VDIT.from_config(cfg) if check_frozen else VDIT.on_meta(cfg)
    if check_frozen:
        done(CONVERSION_STAGES[1])
    plan = plan_conversion(state, model)
    problems = _problems(plan, allow_unmapped)
    if problems:
        raise ModelLoadError(f"cannot convert {checkpoint}: " + " | ".join(problems))
    done(CONVERSION_STAGES[2])
    frozen = check_frozen_weights(state, plan, model) if check_frozen else None
    if check_frozen:
        done(CONVERSION_STAGES[3])
    fill_trainable(model, plan.tensors)
    out_dir = Path(out_dir).expanduser()
    model.save_pretrained(out_dir, card=_model_card_info(checkpoint, obj))
    report = ConversionReport(
        checkpoint=str(checkpoint), out_dir=str(out_dir), num_keys=len(state),
        trainable_parameters=len(plan.tensors), trainable_keys=sum(len(v) for v in plan.sources.values()),
        duplicates=plan.duplicates, frozen_keys={k: len(v) for k, v in plan.frozen.items()},
        ignored_buffers=len(plan.ignored_buffers), unmapped=list(plan.unmapped), unfilled=list(plan.unfilled),
        head=to_dict(cfg.head), args=_json_safe(args),
        epoch=_json_safe(obj.get("epoch")) if isinstance(obj, Mapping) else None,
        frozen_check=None if frozen is None else {"ok": frozen.ok, **asdict(frozen)},
    )
    (out_dir / REPORT_NAME).write_text(dumps_json(report.to_json_dict(), indent=2) + "\n")
    done(CONVERSION_STAGES[4])
    return report


__all__ = [
    "ConversionPlan", "ConversionReport", "FrozenCheck", "REPORT_NAME", "SAFE_GLOBALS", "allowed_globals",
    "check_frozen_weights", "classify_key", "config_for_checkpoint", "convert_official", "fill_trainable",
    "head_config_from_checkpoint", "head_sizes_from_state", "load_official_checkpoint", "parameter_aliases",
    "pickle_globals", "plan_conversion", "split_checkpoint",
]
