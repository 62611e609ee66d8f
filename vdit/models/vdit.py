"""The VD-IT network: diffusion backbone + DETR-style referring head (spec 2-3).

    model = VDIT.from_config(cfg)                  # loads the frozen foundation models named in cfg
    out = model.predict(frames, texts)             # inference: best query per clip, masks M [B,T,H,W]
    head = model(frames, texts)                    # every decoder layer's predictions (vdit.models.outputs)
    video = model.encode_video(clip)               # one clip [T,3,H,W]: padded, its sentence-independent features
    seg = model.segment(video, texts)              # every sentence on it: SegmentOutput (typed, one shape)

Training (matching, refinement of the matched query, losses) lives in `vdit.training`: the model never
sees targets. Only the head's and the backbone's new modules are trainable (~30 M parameters at full
scale); the foundation models are frozen (`requires_grad=False`, eval mode) but gradients flow through
the UNet.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from vdit import __version__
from vdit.config import FOUNDATION_PARTS, ModelConfig, from_dict
from vdit.errors import ConfigError, InputError, ModelLoadError
from vdit.models.backbone.diffusion_backbone import MIN_SIDE, DiffusionBackbone, VisualFeatures, level_masks
from vdit.models.foundation import Foundation, build_foundation_on_meta, load_foundation
from vdit.models.head.deformable_transformer import DeformableTransformer, inverse_sigmoid
from vdit.models.head.dynamic_mask import (CONTROLLER_MLP_LAYERS, DynamicMaskHead, coords_first_to_official,
                                           mask_features)
from vdit.models.head.mask_optimiser import MaskOptimiser
from vdit.models.head.mlp import MLP
from vdit.models.head.position_encoding import PositionEmbeddingSine1D, PositionEmbeddingSine2D
from vdit.models.head.queries import TextInstanceQueries
from vdit.models.head.text import FeatureResizer, TextEncoder, check_texts
from vdit.models.outputs import HeadOutput, InferenceOutput, LayerPredictions
from vdit.models.ops.cpu_kernels import cpu_inference_kernels
from vdit.models.padding import INPUT_SIZE_DIVISIBILITY, pad_to_divisible
from vdit.models.segmentation import QUERY_MODES, EncodedVideo, SegmentOutput, expand_visual

if TYPE_CHECKING:
    from vdit.models.model_card import ModelCardInfo

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# What a `text_blind` model reads instead of every input text: the empty caption (the tokenizers turn it
# into their start/end tokens only). User input is still checked (an empty user text is an InputError);
# only this deliberate control bypasses the check.
BLIND_TEXT = ""
# Foundation paths in a saved config that start with this marker are relative to the installed vdit
# package (the built-in model ships its foundation inside the package, wherever it is installed).
PACKAGE_PATH_MARKER = "vdit-package:"
BOX_MLP_LAYERS = 3
WEIGHTS_LAYOUT = 3
"""Layout of the trainable weights `save_pretrained` writes, recorded in the safetensors metadata under
WEIGHTS_LAYOUT_KEY. 1: vdit before 2026-12 (written with a `vdit_version` but no layout key), whose dynamic
mask head read its layer-0 input as [coords ; feats]; 2: the official order [feats ; coords]; 3: the same
tensors under the self-explaining names (LAYOUT_3_RENAMES). Older layouts are migrated exactly when read
(`read_trainable`), one step after the other."""
WEIGHTS_LAYOUT_KEY = "vdit_weights_layout"
CONTROLLER_OUT = f"mask_head.controller.layers.{CONTROLLER_MLP_LAYERS - 1}."
# Layout 2 -> 3: parameter-name prefixes renamed (old, new); nothing else changes.
LAYOUT_3_RENAMES = (("mask_refine.", "mask_optimiser."), ("backbone.act_postprocess.", "backbone.level_projections."))


class VDIT(nn.Module):
    def __init__(self, cfg: ModelConfig, foundation: Foundation):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        hd = cfg.head
        c = hd.hidden_dim
        self.backbone = DiffusionBackbone(cfg.backbone, foundation)
        self.text_encoder = TextEncoder(foundation.text_encoder, foundation.text_tokenizer,
                                        official_dropout=cfg.backbone.official_frozen_dropout)
        self.text_proj = FeatureResizer(foundation.text_encoder.config.hidden_size, c, hd.text_proj_dropout,
                                        hd.text_proj_ln_eps)
        self.text_pos = PositionEmbeddingSine1D(c, normalize=True)
        self.position_embedding = PositionEmbeddingSine2D(c // 2, normalize=True)
        self.queries = TextInstanceQueries(hd.num_queries, c, hd.fusion_nheads)
        self.query_embed = nn.Embedding(hd.num_queries, c)

        lc = cfg.backbone.level_channels
        # Transformer inputs: levels 1..3 (s8, s16, s32) + one extra s64 level from the raw level 3.
        projs = [nn.Sequential(nn.Conv2d(ch, c, kernel_size=1), nn.GroupNorm(hd.group_norm_groups, c))
                 for ch in lc[1:]]
        projs.append(nn.Sequential(nn.Conv2d(lc[-1], c, kernel_size=3, stride=2, padding=1),
                                   nn.GroupNorm(hd.group_norm_groups, c)))
        self.input_proj = nn.ModuleList(projs)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)

        self.transformer = DeformableTransformer(
            d_model=c, nhead=hd.nheads, num_encoder_layers=hd.enc_layers, num_decoder_layers=hd.dec_layers,
            dim_feedforward=hd.dim_feedforward, dropout=hd.dropout, num_feature_levels=hd.num_feature_levels,
            dec_n_points=hd.dec_n_points, enc_n_points=hd.enc_n_points,
        )
        prior = -math.log((1 - hd.class_prior_prob) / hd.class_prior_prob)
        self.class_embed = nn.ModuleList(nn.Linear(c, 1) for _ in range(hd.dec_layers))
        self.bbox_embed = nn.ModuleList(MLP(c, c, 4, BOX_MLP_LAYERS) for _ in range(hd.dec_layers))
        for cls, box in zip(self.class_embed, self.bbox_embed):
            nn.init.constant_(cls.bias, prior)
            nn.init.zeros_(box.layers[-1].weight)
            nn.init.zeros_(box.layers[-1].bias)
        with torch.no_grad():
            self.bbox_embed[0].layers[-1].bias[2:] = hd.box_wh_bias_init
        # Iterative box refinement: the decoder refines its references with the head's box MLPs.
        self.transformer.decoder.bbox_embed = self.bbox_embed

        self.mask_head = DynamicMaskHead(c, hd.dynamic_mask_channels, hd.rel_coord, hd.mask_feat_stride)
        self.mask_optimiser = MaskOptimiser(hd.dynamic_mask_channels, lc[1], lc[0], hd.mask_out_stride)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, cfg: ModelConfig, torch_dtype: torch.dtype | None = None) -> "VDIT":
        """Load the frozen foundation models named by `cfg.foundation` and build the network
        (`foundation.unet_init="random"`: the UNet re-initialised at random, the random-UNet control)."""
        foundation = load_foundation(cfg.foundation, torch_dtype=torch_dtype)
        if cfg.foundation.unet_init == "random":
            foundation.unet = random_unet_like(foundation.unet, cfg.foundation.unet_init_seed)
        return cls(cfg, foundation)

    @classmethod
    def on_meta(cls, cfg: ModelConfig) -> "VDIT":
        """The whole network on the meta device: exact shapes and counts, no weights, no memory."""
        foundation = build_foundation_on_meta(cfg.foundation.arch)
        with torch.device("meta"):
            return cls(cfg, foundation)

    def trainable_named_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    # ------------------------------------------------------------------ weights on disk

    def save_pretrained(self, directory: str | Path, card: "ModelCardInfo | None" = None,
                        model_card: bool = True) -> Path:
        """Write `model.safetensors` (the trainable parameters only), `config.json` (the full model
        config, naming the frozen foundation models) and, with `model_card`, a `README.md` model card
        (`vdit.models.model_card`: what the weights are, the config, the foundation models and their
        licences, `card`'s source and scores; a README.md vdit did not write is left alone). Files are
        written to temporary names and renamed, so an interrupted save never leaves a half-written file
        behind."""
        from safetensors.torch import save_file

        from vdit.config import to_dict
        from vdit.fileio import write_json
        from vdit.models.model_card import write_model_card

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {n: p.detach().cpu().contiguous() for n, p in self.trainable_named_parameters().items()}
        tmp = directory / f".{WEIGHTS_NAME}.tmp"
        save_file(tensors, str(tmp), metadata={"format": "pt", "vdit_version": __version__,
                                               WEIGHTS_LAYOUT_KEY: str(WEIGHTS_LAYOUT)})
        os.replace(tmp, directory / WEIGHTS_NAME)
        # a non-finite config value is an error (it must load back exactly), never null
        write_json(directory / CONFIG_NAME, {"vdit_version": __version__, "model": to_dict(self.cfg)},
                   nonfinite="error")
        if model_card:
            write_model_card(directory, self.cfg, sum(t.numel() for t in tensors.values()), card)
        return directory

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, foundation: dict[str, str] | None = None,
                        torch_dtype: torch.dtype | None = None) -> "VDIT":
        """Build from a folder (or hub id) written by `save_pretrained`. `foundation` overrides the
        foundation model locations recorded in its config (e.g. local copies)."""
        cfg = load_model_config(name_or_path)
        for key, value in (foundation or {}).items():
            if not hasattr(cfg.foundation, key):
                raise ModelLoadError(f"unknown foundation key {key!r}; known: t2v, clip_vision, text_encoder")
            setattr(cfg.foundation, key, value)
        model = cls.from_config(cfg, torch_dtype=torch_dtype)
        model.load_trainable(_resolve(name_or_path, WEIGHTS_NAME))
        return model

    def load_trainable(self, weights_file: str | Path) -> None:
        """Load trainable parameters from a safetensors file (older layouts migrated, see WEIGHTS_LAYOUT);
        every key must match exactly."""
        tensors = read_trainable(weights_file, self.cfg)
        own = self.trainable_named_parameters()
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise ModelLoadError(
                f"{weights_file} does not fit this model: {len(missing)} missing (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}) parameters")
        # A diverged run's weights give empty masks silently; refuse them here, naming the tensors.
        bad = sorted(n for n, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all()))
        if bad:
            raise ModelLoadError(f"{weights_file}: {len(bad)} tensor(s) hold NaN/Inf values (e.g. {bad[:3]}); "
                                 "these weights are unusable")
        with torch.no_grad():
            for name, p in own.items():
                t = tensors[name]
                if t.shape != p.shape:
                    raise ModelLoadError(f"{weights_file}: {name} has shape {tuple(t.shape)}, "
                                         f"the model expects {tuple(p.shape)}")
                p.copy_(t.to(p.dtype))

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        frames: torch.Tensor,
        texts: list[str],
        pad_mask: torch.Tensor | None = None,
        sizes: torch.Tensor | None = None,
        valid_indices: list[list[int]] | None = None,
        visual: VisualFeatures | None = None,
        check_values: bool = True,
    ) -> HeadOutput:
        """Every decoder layer's predictions for every query (`HeadOutput`, shapes in vdit.models.outputs).

        frames [B,T,3,H,W] ImageNet-normalised; texts: one per clip; pad_mask [B,T,H,W] (True = pad);
        sizes [B,2] unpadded (h, w). Frames are padded to INPUT_SIZE_DIVISIBILITY here; the outputs are
        at the padded size. `valid_indices` (A2D/JHMDB): per clip, the frames the head runs on (spec 3.8).
        `visual` = precomputed `backbone.encode_visual(frames)` (shared by several sentences of a video).
        `check_values=False` skips the one check of input values (frames finite): it reads a flag back
        from the device, i.e. the host waits; for callers whose frames are finite by construction (e.g.
        made from 8-bit images). In eval on the CPU (no autograd, fp32) linears and convolutions run the
        kernels of `vdit.models.ops.cpu_kernels` (same maths, faster GEMMs; issue 16).
        """
        with cpu_inference_kernels(frames.device if isinstance(frames, torch.Tensor) else None, self):
            return self._forward(frames, texts, pad_mask, sizes, valid_indices, visual, check_values)

    def predict(self, frames: torch.Tensor, texts: list[str], pad_mask: torch.Tensor | None = None,
                sizes: torch.Tensor | None = None, valid_indices: list[list[int]] | None = None,
                visual: VisualFeatures | None = None, check_values: bool = True) -> InferenceOutput:
        """Inference: `forward` (same arguments), then the best query's refined masks M
        (`inference_outputs`)."""
        return self.inference_outputs(self(frames, texts, pad_mask=pad_mask, sizes=sizes, valid_indices=valid_indices,
                                           visual=visual, check_values=check_values))

    def _forward(self, frames, texts, pad_mask, sizes, valid_indices, visual, check_values) -> HeadOutput:
        frames, pad_mask, sizes = self._check_inputs(frames, texts, pad_mask, sizes, check_values)
        texts = check_texts(texts, frames.shape[0])
        if self.cfg.text_blind:
            texts = [BLIND_TEXT] * len(texts)
        b, t = frames.shape[:2]
        frames, pad_mask = self._pad_to_divisible(frames, pad_mask)

        levels = self.backbone(frames, texts, visual=visual)  # 4 x [B*T, C_l, h_l, w_l]
        pad = pad_mask.flatten(0, 1)
        frame_sizes = sizes.repeat_interleave(t, dim=0)
        if valid_indices is not None:  # A2D/JHMDB: the head runs on the annotated frame(s) only
            index = self._frame_index(valid_indices, b, t, frames.device)
            levels = [lv[index] for lv in levels]
            pad, frame_sizes = pad[index], frame_sizes[index]
            t = len(valid_indices[0])
        n = b * t

        # text branch and text-conditioned queries
        words, word_pad = self.text_encoder(texts, frames.device)
        words = self.text_proj(words.to(self.text_proj.fc.weight.dtype))
        word_pos = self.text_pos(word_pad)
        queries = self.queries(words, word_pad, word_pos)  # [B,Q,C]
        tgt = queries.repeat_interleave(t, dim=0)  # the same Q queries in every frame of a clip
        query_pos = self.query_embed.weight[None].expand(n, -1, -1)

        # transformer inputs: levels 1..3 + the extra s64 level
        srcs = [proj(lv) for proj, lv in zip(self.input_proj[:-1], levels[1:])]
        srcs.append(self.input_proj[-1](levels[-1]))
        masks = level_masks(pad, srcs)
        pos = [self.position_embedding(m).to(s.dtype) for m, s in zip(masks, srcs)]
        hs, init_ref, inter_refs, memory = self.transformer(srcs, masks, pos, tgt, query_pos)

        feats = mask_features(memory)  # [N,C,h8,w8]
        layers = []
        for lvl in range(hs.shape[0]):
            ref = init_ref if lvl == 0 else inter_refs[lvl - 1]
            logits = self.class_embed[lvl](hs[lvl])
            delta = self.bbox_embed[lvl](hs[lvl])
            if ref.shape[-1] == 4:
                delta = delta + inverse_sigmoid(ref)
            else:
                delta = torch.cat([delta[..., :2] + inverse_sigmoid(ref), delta[..., 2:]], dim=-1)
            boxes = delta.sigmoid()
            centers = inter_refs[lvl][..., :2].detach()
            dyn = self.mask_head(hs[lvl], feats, centers, frame_sizes)  # [N,Q,c,h8,w8]
            low = F.pixel_shuffle(dyn.flatten(0, 1), self.cfg.head.mask_out_stride)  # [N*Q,1,h2,w2]
            q = dyn.shape[1]
            layers.append(LayerPredictions(
                pred_logits=logits.reshape(b, t, q, 1),
                pred_boxes=boxes.reshape(b, t, q, 4),
                masks_low=low.reshape(b, t, q, *low.shape[-2:]),
                dynamic=dyn.reshape(b, t, q, *dyn.shape[2:]),
            ))
        return HeadOutput(layers=layers, levels=levels, sizes=sizes)

    def refine_masks(self, dyn_sel: torch.Tensor, levels: list[torch.Tensor]) -> torch.Tensor:
        """The mask refinement (MSO, spec 3.7) of one query per clip: dynamic features dyn_sel
        [B,T,c,h8,w8] and the backbone `levels` of `HeadOutput` -> mask logits M [B,T,H,W] at the padded
        input size. Training refines the matched query, inference the best one (or each)."""
        b, t = dyn_sel.shape[:2]
        with cpu_inference_kernels(dyn_sel.device, self):
            m = self.mask_optimiser(dyn_sel.flatten(0, 1), levels[1], levels[0])
        return m.reshape(b, t, *m.shape[-2:])

    @staticmethod
    def query_scores(layer: LayerPredictions) -> tuple[torch.Tensor, torch.Tensor]:
        """Each clip's query scores [B,Q] (mean over frames of the class score, max over classes) and the
        best query [B] (spec 6.1)."""
        scores = layer.pred_logits.sigmoid().mean(dim=1).amax(dim=-1)
        return scores, scores.argmax(dim=-1)

    def inference_outputs(self, head: HeadOutput) -> InferenceOutput:
        """The last layer's outputs with M of each clip's best query: the query with the highest mean
        score over frames."""
        layer = head.last
        scores, best = self.query_scores(layer)
        ar = torch.arange(best.shape[0], device=best.device)
        return InferenceOutput(pred_logits=layer.pred_logits, pred_boxes=layer.pred_boxes, scores=scores,
                               best_query=best, pred_masks=self.refine_masks(layer.dynamic[ar, :, best], head.levels),
                               masks_low=layer.masks_low, sizes=head.sizes)

    def all_query_masks(self, head: HeadOutput) -> torch.Tensor:
        """M of every query of the last layer, [B,T,Q,H,W] (one refinement per query)."""
        dyn = head.last.dynamic
        return torch.stack([self.refine_masks(dyn[:, :, q], head.levels) for q in range(dyn.shape[2])], dim=2)

    # ------------------------------------------------------------------ inference verbs

    def encode_video(self, frames: torch.Tensor, check_values: bool = True) -> EncodedVideo:
        """frames [T,3,h,w] ImageNet-normalised, one clip -> the clip padded to the model's divisibility
        (`vdit.models.padding`) and its text-independent backbone features, computed once and shared by
        every sentence `segment` runs on it. `check_values=False` skips the frames' finiteness check
        (a host read; for frames finite by construction, e.g. made from 8-bit images)."""
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise InputError(f"frames must be one clip, a [T,3,H,W] tensor, got {shape}")
        frames, pad_mask, sizes = self._check_inputs(frames[None], None, None, None, check_values)
        h, w = frames.shape[-2:]
        frames, pad_mask = pad_to_divisible(frames, INPUT_SIZE_DIVISIBILITY, pad_mask=pad_mask)
        return EncodedVideo(visual=self.backbone.encode_visual(frames), frames=frames, pad_mask=pad_mask,
                            sizes=sizes, size=(int(h), int(w)))

    def segment(self, video: EncodedVideo, texts: list[str], queries: str = "best",
                valid_indices: list[int] | None = None) -> SegmentOutput:
        """The head for every sentence of `texts` on one encoded clip, as one batch (memory grows with
        the number of sentences; split them to bound it, `SegmentOutput.cat` joins the parts).
        `queries`: "best" refines the mask of the query with the highest mean score per sentence,
        "all" every query's. `valid_indices`: run the head on these frames of the clip only (A2D/JHMDB:
        the annotated frame). Nothing is read back to the host here."""
        if queries not in QUERY_MODES:
            raise ValueError(f"queries must be one of {QUERY_MODES}, got {queries!r}")
        n = len(texts)
        head = self(video.frames.expand(n, *video.frames.shape[1:]), list(texts),
                    pad_mask=video.pad_mask.expand(n, *video.pad_mask.shape[1:]), sizes=video.sizes.expand(n, 2),
                    valid_indices=None if valid_indices is None else [list(valid_indices)] * n,
                    visual=expand_visual(video.visual, n), check_values=False)
        layer = head.last
        scores, best = self.query_scores(layer)
        if queries == "best":
            ar = torch.arange(n, device=best.device)
            masks, index = self.refine_masks(layer.dynamic[ar, :, best], head.levels)[:, :, None], best[:, None]
        else:
            masks = self.all_query_masks(head)
            index = torch.arange(masks.shape[2], device=best.device).expand(n, -1)
        return SegmentOutput(mask_logits=masks, mask_queries=index, query_logits=layer.pred_logits[..., 0],
                             scores=scores, best_query=best, size=video.size)

    # ------------------------------------------------------------------ input handling

    def _check_inputs(self, frames, texts, pad_mask, sizes, check_values=True):
        if not isinstance(frames, torch.Tensor) or frames.dim() != 5:
            shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise InputError(f"frames must be a [B,T,3,H,W] tensor, got {shape}")
        b, t, ch, h, w = frames.shape
        if ch != 3:
            kind = {1: "single-channel (grey)", 4: "RGBA"}.get(ch, f"{ch}-channel")
            raise InputError(f"frames are {kind}; VD-IT needs RGB frames [B,T,3,H,W] (convert them first)")
        if b == 0 or t == 0:
            raise InputError(f"empty input: {b} clips of {t} frames")
        if h < MIN_SIDE or w < MIN_SIDE:
            raise InputError(f"frames are {h}x{w}; the UNet needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
        if check_values and not torch.isfinite(frames).all():
            raise InputError("frames contain NaN or Inf values")
        if pad_mask is None:
            pad_mask = torch.zeros((b, t, h, w), dtype=torch.bool, device=frames.device)
        elif pad_mask.shape != (b, t, h, w):
            raise ValueError(f"pad_mask must be [B,T,H,W] = {(b, t, h, w)}, got {tuple(pad_mask.shape)}")
        if sizes is None:
            # filled on the device (a tensor built from a Python list would be a blocking upload)
            sizes = torch.full((b, 2), h, dtype=torch.long, device=frames.device)
            sizes[:, 1] = w
        return frames, pad_mask, sizes.to(frames.device)

    @staticmethod
    def _pad_to_divisible(frames, pad_mask):
        return pad_to_divisible(frames, INPUT_SIZE_DIVISIBILITY, pad_mask=pad_mask)

    @staticmethod
    def _frame_index(valid_indices: list[list[int]], b: int, t: int, device) -> torch.Tensor:
        k = len(valid_indices[0])
        if len(valid_indices) != b or any(len(v) != k or min(v) < 0 or max(v) >= t for v in valid_indices):
            raise ValueError(f"valid_indices must give {b} lists of the same length with frame positions in [0,{t})")
        return torch.tensor([i * t + j for i, v in enumerate(valid_indices) for j in v], device=device)


def weights_layout(weights_file: str | Path) -> int:
    """The WEIGHTS_LAYOUT a safetensors file was written with: its metadata key; 1 for a file vdit wrote
    before the key existed (metadata with `vdit_version` only); files from elsewhere count as current."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_file), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error type on truncated files
        raise ModelLoadError(f"cannot read weights {weights_file}: {exc}") from exc
    if WEIGHTS_LAYOUT_KEY in meta:
        try:
            layout = int(meta[WEIGHTS_LAYOUT_KEY])
        except ValueError:
            raise ModelLoadError(f"{weights_file}: bad {WEIGHTS_LAYOUT_KEY} {meta[WEIGHTS_LAYOUT_KEY]!r}") from None
        if not 1 <= layout <= WEIGHTS_LAYOUT:
            raise ModelLoadError(f"{weights_file} has weights layout {layout}; this vdit reads up to "
                                 f"{WEIGHTS_LAYOUT} (upgrade vdit)")
        return layout
    return 1 if "vdit_version" in meta else WEIGHTS_LAYOUT


def migrate_name(name: str, layout: int) -> str:
    """A parameter name (optionally "<name>::<optimiser key>") of weights layout `layout` -> its name in
    WEIGHTS_LAYOUT (layout 2 -> 3 renames the prefixes of LAYOUT_3_RENAMES)."""
    if layout < 3:
        for old, new in LAYOUT_3_RENAMES:
            if name.startswith(old):
                return new + name[len(old):]
    return name


def migrate_trainable(tensors: dict[str, torch.Tensor], layout: int, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Tensors keyed by parameter name (optionally "<name>::<optimiser key>") in weights layout `layout`
    -> the same tensors in WEIGHTS_LAYOUT. Layout 1 -> 2 permutes the rows of the dynamic mask head's
    controller output layer (and of their optimiser moments) to the official [feats ; coords] order;
    2 -> 3 renames keys only (`migrate_name`)."""
    out = dict(tensors)
    if layout < 2 and cfg.head.rel_coord:
        for key, value in tensors.items():
            if key.startswith(CONTROLLER_OUT) and value.dim() >= 1:
                out[key] = coords_first_to_official(value, cfg.head.hidden_dim, cfg.head.dynamic_mask_channels)
    return {migrate_name(key, layout): value for key, value in out.items()}


def read_trainable(weights_file: str | Path, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, migrated to the current WEIGHTS_LAYOUT for a model of config `cfg`."""
    from safetensors.torch import load_file

    layout = weights_layout(weights_file)
    try:
        tensors = load_file(str(weights_file))
    except Exception as exc:  # safetensors raises its own error type on truncated files
        raise ModelLoadError(f"cannot read weights {weights_file}: {exc}") from exc
    return migrate_trainable(tensors, layout, cfg)


def random_unet_like(unet: nn.Module, seed: int) -> nn.Module:
    """A UNet of the same class and config as `unet` with the library's random initialisation, drawn from
    a generator seeded with `seed` (the global RNG is left untouched); frozen and in eval mode."""
    dtype = next(unet.parameters()).dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(unet).from_config(unet.config)
    if next(fresh.parameters()).dtype != dtype:
        fresh = fresh.to(dtype)
    fresh.requires_grad_(False)
    return fresh.eval()


def resolve_package_path(value: str) -> str:
    """`vdit-package:assets/x` -> the absolute path of assets/x inside the installed vdit package."""
    if not value.startswith(PACKAGE_PATH_MARKER):
        return value
    import vdit

    return str(Path(vdit.__file__).resolve().parent / value[len(PACKAGE_PATH_MARKER):])


def _resolve(name_or_path: str | Path, filename: str) -> Path:
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        path = local / filename
        if not path.is_file():
            raise ModelLoadError(f"{local} has no {filename} (expected a folder written by save_pretrained)")
        return path
    if local.exists() or str(name_or_path).startswith((".", "/", "~")):
        raise ModelLoadError(f"weights path {name_or_path} is not a folder written by save_pretrained")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(str(name_or_path), filename))
    except Exception as exc:  # offline, unknown repo, ...: one line for the user
        raise ModelLoadError(f"cannot get {filename} of {name_or_path}: {str(exc).splitlines()[0]}") from exc


def load_model_config(name_or_path: str | Path) -> ModelConfig:
    """The ModelConfig stored beside weights written by `VDIT.save_pretrained`."""
    path = _resolve(name_or_path, CONFIG_NAME)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or "model" not in data:
        raise ModelLoadError(f"{path} is not a vdit config (no 'model' section)")
    try:
        cfg = from_dict(ModelConfig, data["model"]).validate()
    except ConfigError as exc:
        raise ModelLoadError(f"{path}: {exc}") from exc
    for key in FOUNDATION_PARTS:
        setattr(cfg.foundation, key, resolve_package_path(getattr(cfg.foundation, key)))
    return cfg
