"""Model cards: the `README.md` that `VDIT.save_pretrained` (and so `vdit convert-official`, `vdit train`'s
final/ folder and `vdit mini train`'s head) writes beside `model.safetensors` and `config.json`.

The card is in the format the Hugging Face Hub shows: YAML front matter (`license`, `library_name: vdit`,
`tags`, `base_model`: the foundation models' Hub ids) and a markdown body: what the weights are (the
trainable ~30 M parameters only; the frozen foundation models load from the locations config.json
records), the configuration, the foundation models with their licences, the scores when the caller
knows them, and how to load it (`VDIT.from_pretrained` reads local folders and Hub ids alike).

    card = model_card(cfg, num_parameters=n, info=ModelCardInfo(scores={"Ref-YouTube-VOS valid": {"J&F": 0.6}}))
    write_model_card(folder, cfg, num_parameters=n, info=info)   # leaves a card a person wrote alone

Licences: ModelScope T2V 1.7B is CC BY-NC 4.0, the OpenCLIP ViT-H/14 LAION-2B vision tower and
roberta-base are MIT; the miniature world's foundation (`vdit mini pretrain`) and the tiny test
foundation are vdit's own, under the project's licence (Apache-2.0). The card's `license` is the most
restrictive of the foundation licences the weights need to run: the head is useless without them.
The text is a function of the config and the arguments only (no dates), so saving the same model twice
writes the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from vdit.config import FOUNDATION_PARTS, ModelConfig

CARD_NAME = "README.md"
# First body line of every card vdit writes. A README.md without it was written by a person and is
# never overwritten.
GENERATED_MARKER = ("<!-- Written by vdit (vdit.models.model_card). Delete this line to keep your edits: vdit "
                    "then never overwrites this file. -->")
PROJECT_LICENCE = "apache-2.0"  # vdit's licence (pyproject.toml), and that of the foundations it trains
PAPER = ("Zhu et al., *Exploring Pre-trained Text-to-Video Diffusion Models for Referring Video Object "
         "Segmentation*, ECCV 2024 ([arXiv:2403.12042](https://arxiv.org/abs/2403.12042))")
TAGS = ("vdit", "vd-it", "referring-video-object-segmentation", "video-segmentation", "text-to-video",
        "diffusion")
# Hub licence ids from the most to the least restrictive (the card takes the first one a part needs).
LICENCE_ORDER = ("cc-by-nc-4.0", "other", "apache-2.0", "mit")
DEFAULT_LOCATION = "path/to/this/folder"
# The usage example's sentence: one the weights can understand.
EXAMPLE_TEXT = "the dog on the left"
EXAMPLE_TEXTS = {"mini": "the small red circle moving left"}


@dataclass(frozen=True)
class FoundationModel:
    """One frozen foundation model: its part (FoundationConfig field), name, Hub id and licence."""

    part: str
    name: str
    hub_id: str | None
    licence: str
    role: str


_VDIT_T2V_ROLE = "frozen video backbone: VAE encoder, UNet3D features, T2V text encoder"
FOUNDATIONS: dict[str, tuple[FoundationModel, ...]] = {
    "modelscope-1.7b": (
        FoundationModel("t2v", "ModelScope text-to-video 1.7B", "damo-vilab/text-to-video-ms-1.7b", "cc-by-nc-4.0",
                        _VDIT_T2V_ROLE),
        FoundationModel("clip_vision", "OpenCLIP ViT-H/14 (LAION-2B) vision tower",
                        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "mit", "image tokens of the text-guided prompt"),
        FoundationModel("text_encoder", "RoBERTa base", "roberta-base", "mit", "the head's text encoder"),
    ),
    "mini": (
        FoundationModel("t2v", "vdit miniature-world text-to-video model (`vdit mini pretrain`)", None,
                        PROJECT_LICENCE, _VDIT_T2V_ROLE),
        FoundationModel("clip_vision", "vdit miniature-world CLIP vision tower (`vdit mini pretrain`)", None,
                        PROJECT_LICENCE, "image tokens of the text-guided prompt"),
        FoundationModel("text_encoder", "vdit miniature-world RoBERTa (`vdit mini pretrain`)", None,
                        PROJECT_LICENCE, "the head's text encoder"),
    ),
    "tiny": (
        FoundationModel("t2v", "tiny random text-to-video model (`vdit.testing.build_tiny_foundation`)", None,
                        PROJECT_LICENCE, _VDIT_T2V_ROLE),
        FoundationModel("clip_vision", "tiny random CLIP vision tower (`vdit.testing`)", None, PROJECT_LICENCE,
                        "image tokens of the text-guided prompt"),
        FoundationModel("text_encoder", "tiny random RoBERTa (`vdit.testing`)", None, PROJECT_LICENCE,
                        "the head's text encoder"),
    ),
}
# What the weights are, by foundation architecture.
DESCRIPTIONS = {
    "modelscope-1.7b": "VD-IT at full scale: the referring head and the backbone's new modules on top of "
                       "ModelScope T2V 1.7B, OpenCLIP ViT-H/14 and RoBERTa base.",
    "mini": "VD-IT's head on vdit's miniature world: tiny foundation models trained from scratch on generated "
            "64x64 clips of coloured shapes (docs/miniature.md). It knows that world's vocabulary "
            "('the small red circle moving left'), not real videos.",
    "tiny": "A tiny VD-IT on random foundation models, for tests: its masks mean nothing.",
}


@dataclass
class ModelCardInfo:
    """What the caller knows beyond the config.

    title: the card's heading (default from the architecture). source: one sentence on where the
    weights come from ("trained with `vdit train --preset ytvos`", "converted from ..."). scores:
    {"<benchmark> <split>": {"J&F": 0.379, ...}} as fractions, shown in percent. location: how the
    usage example names the weights (a Hub id once uploaded; default a folder placeholder).
    notes: extra markdown paragraphs."""

    title: str | None = None
    source: str | None = None
    scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    location: str | None = None
    notes: tuple[str, ...] = ()


def foundation_models(cfg: ModelConfig) -> tuple[FoundationModel, ...]:
    """The foundation models a config needs (an unknown architecture: its parts, licence "other")."""
    known = FOUNDATIONS.get(cfg.foundation.arch)
    if known is not None:
        return known
    return tuple(FoundationModel(part, f"{part} ({cfg.foundation.arch})", None, "other", "")
                 for part in FOUNDATION_PARTS)


def card_licence(parts: tuple[FoundationModel, ...]) -> str:
    """The most restrictive licence among `parts` (LICENCE_ORDER)."""
    ranks = [LICENCE_ORDER.index(p.licence) if p.licence in LICENCE_ORDER else 0 for p in parts]
    return LICENCE_ORDER[min(ranks)] if ranks else PROJECT_LICENCE


def front_matter(cfg: ModelConfig) -> dict[str, Any]:
    """The card's YAML metadata (Hub model card fields)."""
    parts = foundation_models(cfg)
    meta: dict[str, Any] = {"license": card_licence(parts), "library_name": "vdit", "tags": list(TAGS)}
    if meta["license"] == "other":
        meta["license_name"] = "see-foundation-models"
    base = [p.hub_id for p in parts if p.hub_id]
    if base:
        meta["base_model"] = base
    return meta


def _percent(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{100 * float(value):.1f}" if value == value else "n/a"  # NaN: not a number to show
    return "n/a" if value is None else str(value)


def _scores_table(scores: Mapping[str, Mapping[str, float]]) -> list[str]:
    columns: list[str] = []
    for figures in scores.values():
        columns.extend(k for k in figures if k not in columns)
    lines = ["| benchmark | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, figures in scores.items():
        lines.append(f"| {name} | " + " | ".join(_percent(figures.get(c)) for c in columns) + " |")
    return lines


def _config_rows(cfg: ModelConfig, num_parameters: int | None) -> list[tuple[str, str]]:
    bb, hd = cfg.backbone, cfg.head
    rows = [
        ("foundation architecture", f"`{cfg.foundation.arch}`"),
        ("text-guided image prompt (Table A)", f"`{bb.prompt.mode}`"),
        ("noise (Table B)", f"`{bb.noise.kind}`, step {bb.noise.step}"),
        ("queries", str(hd.num_queries)),
        ("head", f"width {hd.hidden_dim}, {hd.enc_layers} encoder / {hd.dec_layers} decoder layers, "
                 f"{hd.num_feature_levels} feature levels"),
        ("model input short side", f"{cfg.input_short_side} px" if cfg.input_short_side else
         "360 px (the evaluation protocols' size)"),
    ]
    if num_parameters is not None:
        rows.insert(0, ("trainable parameters (in model.safetensors)", f"{num_parameters:,}"))
    if cfg.text_blind:
        rows.append(("control", "text-blind: every text is read as the empty caption"))
    if cfg.foundation.unet_init != "pretrained":
        rows.append(("control", f"UNet re-initialised at random (seed {cfg.foundation.unet_init_seed})"))
    return rows


def model_card(cfg: ModelConfig, num_parameters: int | None = None, info: ModelCardInfo | None = None) -> str:
    """The card's text (front matter + markdown), a function of its arguments only."""
    import yaml

    from vdit import __version__

    info = info or ModelCardInfo()
    parts = foundation_models(cfg)
    meta = front_matter(cfg)
    arch = cfg.foundation.arch
    title = info.title or ("VD-IT (vdit)" if arch == "modelscope-1.7b" else f"VD-IT, {arch} foundation (vdit)")
    location = info.location or DEFAULT_LOCATION
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", GENERATED_MARKER, "",
             f"# {title}", "", DESCRIPTIONS.get(arch, f"VD-IT on the `{arch}` foundation models."), ""]
    if info.source:
        lines += [info.source, ""]
    lines += [
        f"VD-IT is referring video object segmentation with a frozen text-to-video diffusion model as the video "
        f"backbone ({PAPER}). These are weights of vdit {__version__}'s implementation: "
        "`model.safetensors` holds the trainable parameters only (the backbone's new modules and the "
        "DETR-style head); `config.json` holds the full model configuration and names the frozen foundation "
        "models, which load from those locations (a local folder or a Hugging Face Hub id) and are not part "
        "of these files.",
        "",
        "## Use",
        "",
        "```bash",
        f'vdit segment --weights {location} --video clip.mp4 --text "{EXAMPLE_TEXTS.get(arch, EXAMPLE_TEXT)}" '
        "--out out/",
        f"vdit mini eval --weights {location}" if arch == "mini" else
        f"vdit evaluate --preset ytvos --weights {location} --data data/ref-youtube-vos",
        "```",
        "",
        "```python",
        "from vdit.models.vdit import VDIT",
        "",
        f'model = VDIT.from_pretrained("{location}")  # a folder or a Hub id',
        "```",
        "",
        "## Configuration",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in _config_rows(cfg, num_parameters)]
    lines += ["", "## Foundation models (frozen, not included)", "",
              "| part | model | location in config.json | licence |", "|---|---|---|---|"]
    recorded = {part: getattr(cfg.foundation, part) for part in FOUNDATION_PARTS}
    for p in parts:
        name = f"[{p.name}](https://huggingface.co/{p.hub_id})" if p.hub_id else p.name
        lines.append(f"| `{p.part}`: {p.role} | {name} | `{recorded.get(p.part, '')}` | {p.licence} |")
    lines += ["", "## Licence", "",
              f"`{meta['license']}`: the most restrictive licence of the foundation models these weights need "
              "to run (they are useless without them). The datasets the weights were trained on have their own "
              f"terms. vdit itself is {PROJECT_LICENCE}.", ""]
    lines += ["## Scores", ""]
    if info.scores:
        lines += ["In percent (vdit's evaluators; see `vdit evaluate`).", ""] + _scores_table(info.scores) + [""]
    else:
        lines += ["None recorded with these weights: `vdit evaluate --preset ytvos|davis|mevis|a2d|jhmdb|refcoco "
                  f"--weights {location} --data ROOT` measures them.", ""]
    for note in info.notes:
        lines += [note, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def is_generated(path: Path) -> bool:
    """True when the file at `path` is a card vdit wrote (it may replace it), False for a person's."""
    try:
        return GENERATED_MARKER in path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def write_model_card(directory: str | Path, cfg: ModelConfig, num_parameters: int | None = None,
                     info: ModelCardInfo | None = None) -> Path | None:
    """Write `directory/README.md` atomically, unless a README.md vdit did not write is there (then
    nothing is written and None returned)."""
    from vdit.fileio import write_text_atomic

    path = Path(directory) / CARD_NAME
    if path.exists() and not is_generated(path):
        return None
    return write_text_atomic(path, model_card(cfg, num_parameters, info))


def read_front_matter(text: str) -> dict[str, Any]:
    """The YAML metadata of a card's text ({} when it has none)."""
    import yaml

    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 4)
    return yaml.safe_load(text[4:end]) if end > 0 else {}


__all__ = ["CARD_NAME", "FOUNDATIONS", "FoundationModel", "ModelCardInfo", "card_licence", "front_matter",
           "is_generated", "model_card", "read_front_matter", "write_model_card"]
