"""Deformable-DETR transformer of the VD-IT head (spec 3.4): post-norm encoder and decoder.

Every frame is an independent batch element (N = B*T). The encoder runs deformable self-attention over
all feature levels; the decoder runs query self-attention, deformable cross-attention into the encoder
memory and an FFN, with optional iterative box refinement through ``decoder.bbox_embed`` (a ModuleList
the head owns and assigns; the official checkpoints hold it under both names).

Parameter names follow the official state_dict (spec 10): ``level_embed``, ``encoder.layers.{i}.*``,
``decoder.layers.{i}.*``, ``reference_points``.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vdit.errors import ConfigError
from vdit.models.ops.device_values import tensor_on_device
from vdit.models.ops.ms_deform_attn import MSDeformAttn

# VD-IT head defaults (spec 3, opts defaults; no script overrides them).
DEFAULT_D_MODEL = 256
DEFAULT_NHEAD = 8
DEFAULT_ENCODER_LAYERS = 4
DEFAULT_DECODER_LAYERS = 4
DEFAULT_DIM_FEEDFORWARD = 2048
DEFAULT_DROPOUT = 0.1
DEFAULT_FEATURE_LEVELS = 4
DEFAULT_DEC_POINTS = 4
DEFAULT_ENC_POINTS = 4

INVERSE_SIGMOID_EPS = 1e-5
# Encoder reference points sit at pixel centres (i + 0.5).
_PIXEL_CENTRE = 0.5
_XY = 2  # a point reference (x, y); a box reference is (cx, cy, w, h)
_BOX = 4


def inverse_sigmoid(x: Tensor, eps: float = INVERSE_SIGMOID_EPS) -> Tensor:
    """logit(x) with x clamped to [0, 1] and both x and 1-x floored at ``eps``."""
    x = x.clamp(0.0, 1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


class TransformerOutput(NamedTuple):
    """What :meth:`DeformableTransformer.forward` returns; unpacks as a 4-tuple in this order.

    (The official code returns hs, memory, init_reference, inter_references, ...: a different order.)
    """

    hs: Tensor  # [n_dec, N, Q, C], decoder output after every layer
    init_reference: Tensor  # [N, Q, 2], sigmoid(reference_points(query_pos))
    inter_references: Tensor  # [n_dec, N, Q, 4] (detached); [n_dec, N, Q, 2] without bbox_embed
    memory_levels: list[Tensor]  # first num_levels-1 levels of encoder memory, [N, C, h_l, w_l]


def _ffn(x: Tensor, linear1: nn.Linear, linear2: nn.Linear, drop_hidden: nn.Dropout, drop_out: nn.Dropout,
         norm: nn.LayerNorm) -> Tensor:
    """Post-norm FFN: x + Dropout(Linear(Dropout(ReLU(Linear(x))))) -> LayerNorm.

    A function over the layer's own modules (not a sub-module) so parameter names match spec 10.
    """
    return norm(x + drop_out(linear2(drop_hidden(F.relu(linear1(x))))))


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention over all levels -> residual -> LN, then FFN -> residual -> LN."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        padding_mask: Tensor | None,
        check_values: bool = True,
    ) -> Tensor:
        attended = self.self_attn(
            _with_pos(src, pos), reference_points, src, spatial_shapes, level_start_index, padding_mask,
            check_values=check_values,
        )
        src = self.norm1(src + self.dropout1(attended))
        return _ffn(src, self.linear1, self.linear2, self.dropout2, self.dropout3, self.norm2)


class DeformableDecoderLayer(nn.Module):
    """Query self-attention -> LN; deformable cross-attention -> LN; FFN -> LN (all post-norm)."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        memory_padding_mask: Tensor | None,
        check_values: bool = True,
    ) -> Tensor:
        q = k = _with_pos(tgt, query_pos).transpose(0, 1)  # MultiheadAttention is sequence-first
        attended = self.self_attn(q, k, tgt.transpose(0, 1), need_weights=False)[0].transpose(0, 1)
        tgt = self.norm2(tgt + self.dropout2(attended))
        attended = self.cross_attn(
            _with_pos(tgt, query_pos), reference_points, memory, spatial_shapes, level_start_index,
            memory_padding_mask, check_values=check_values,
        )
        tgt = self.norm1(tgt + self.dropout1(attended))
        return _ffn(tgt, self.linear1, self.linear2, self.dropout3, self.dropout4, self.norm3)


def encoder_reference_points(spatial_shapes: list[tuple[int, int]], valid_ratios: Tensor) -> Tensor:
    """Pixel centres of every level, normalised to each sample's valid region, seen from every level.

    ``valid_ratios`` is [N, L, 2] (w, h fractions of the map that are not padding). Returns
    [N, S, L, 2] (x, y): a centre is divided by its own level's valid size, then multiplied by each
    level's valid ratio, so that it maps to the same relative place of the valid region everywhere.
    """
    device, dtype = valid_ratios.device, valid_ratios.dtype
    per_level = []
    for lvl, (h, w) in enumerate(spatial_shapes):
        ys = torch.arange(h, dtype=dtype, device=device) + _PIXEL_CENTRE
        xs = torch.arange(w, dtype=dtype, device=device) + _PIXEL_CENTRE
        ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
        ref_y = ref_y.reshape(1, -1) / (valid_ratios[:, lvl, 1:2] * h)
        ref_x = ref_x.reshape(1, -1) / (valid_ratios[:, lvl, 0:1] * w)
        per_level.append(torch.stack((ref_x, ref_y), dim=-1))
    reference = torch.cat(per_level, dim=1)  # [N, S, 2]
    return reference[:, :, None] * valid_ratios[:, None]


def valid_ratios_of(mask: Tensor) -> Tensor:
    """[N, h, w] padding mask -> [N, 2] (w, h) fraction of valid columns/rows (padding is bottom/right).

    A fully padded map is counted as one valid pixel so the encoder's normalisation stays finite.
    """
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).clamp(min=1)
    valid_w = (~mask[:, 0, :]).sum(1).clamp(min=1)
    return torch.stack((valid_w.float() / w, valid_h.float() / h), dim=-1)


class DeformableTransformerEncoder(nn.Module):
    """A stack of :class:`DeformableEncoderLayer` sharing the pixel-centre reference points."""

    def __init__(self, layer: DeformableEncoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(
        self,
        src: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        valid_ratios: Tensor,
        pos: Tensor,
        padding_mask: Tensor,
        shapes: list[tuple[int, int]] | None = None,
    ) -> Tensor:
        """``shapes``: the levels' (h, w) as Python ints, when the caller knows them (then
        ``spatial_shapes`` and ``level_start_index`` are taken to match them, and nothing reads tensor
        values back to the host); without, they are read from ``spatial_shapes`` and every attention
        call checks its inputs' values."""
        check_values = shapes is None
        if shapes is None:
            shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
        reference_points = encoder_reference_points(shapes, valid_ratios)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index, padding_mask, check_values)
        return src


class DeformableTransformerDecoder(nn.Module):
    """A stack of :class:`DeformableDecoderLayer`; returns every layer's output and reference.

    ``bbox_embed`` (None or a ModuleList with one box MLP per layer, assigned by the head) enables
    iterative box refinement: after layer l the reference becomes
    ``sigmoid(bbox_embed[l](out) + inverse_sigmoid(ref))``, detached. A 2-d reference turns into a box
    after the first refined layer: only (cx, cy) receive the inverse-sigmoid offset, (w, h) are
    ``sigmoid`` of the raw head output.
    """

    def __init__(self, layer: DeformableDecoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.bbox_embed: nn.ModuleList | None = None

    def forward(
        self,
        tgt: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        valid_ratios: Tensor,
        query_pos: Tensor,
        memory_padding_mask: Tensor,
        check_values: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """``check_values=False``: ``spatial_shapes`` / ``level_start_index`` are known to match the
        memory (built by :class:`DeformableTransformer`), so the attention calls do not read them back."""
        if self.bbox_embed is not None and len(self.bbox_embed) < len(self.layers):
            raise ConfigError(
                f"deformable decoder: bbox_embed has {len(self.bbox_embed)} heads for {len(self.layers)} layers"
            )
        outputs, references = [], []
        for lid, layer in enumerate(self.layers):
            # References are relative to the valid region; the sampler works on the padded map.
            if reference_points.shape[-1] == _BOX:
                scale = torch.cat((valid_ratios, valid_ratios), dim=-1)
            else:
                scale = valid_ratios
            level_refs = reference_points[:, :, None] * scale[:, None]
            tgt = layer(tgt, query_pos, level_refs, memory, spatial_shapes, level_start_index, memory_padding_mask,
                        check_values)
            if self.bbox_embed is not None:
                reference_points = refine_reference(self.bbox_embed[lid](tgt), reference_points).detach()
            outputs.append(tgt)
            references.append(reference_points)
        return torch.stack(outputs), torch.stack(references)


def refine_reference(delta: Tensor, reference: Tensor) -> Tensor:
    """One box-refinement step: ``delta`` [.., 4] raw head output, ``reference`` [.., 2 or 4] in (0, 1)."""
    if reference.shape[-1] == _BOX:
        return (delta + inverse_sigmoid(reference)).sigmoid()
    centre = delta[..., :_XY] + inverse_sigmoid(reference)
    return torch.cat((centre, delta[..., _XY:]), dim=-1).sigmoid()


class DeformableTransformer(nn.Module):
    """Deformable-DETR encoder/decoder of VD-IT (post-norm; no two-stage)."""

    def __init__(
        self,
        d_model: int = DEFAULT_D_MODEL,
        nhead: int = DEFAULT_NHEAD,
        num_encoder_layers: int = DEFAULT_ENCODER_LAYERS,
        num_decoder_layers: int = DEFAULT_DECODER_LAYERS,
        dim_feedforward: int = DEFAULT_DIM_FEEDFORWARD,
        dropout: float = DEFAULT_DROPOUT,
        num_feature_levels: int = DEFAULT_FEATURE_LEVELS,
        dec_n_points: int = DEFAULT_DEC_POINTS,
        enc_n_points: int = DEFAULT_ENC_POINTS,
    ) -> None:
        super().__init__()
        if num_encoder_layers < 0 or num_decoder_layers < 1 or num_feature_levels < 1 or dim_feedforward < 1:
            raise ConfigError(
                "DeformableTransformer: need num_encoder_layers >= 0, num_decoder_layers >= 1, "
                f"num_feature_levels >= 1, dim_feedforward >= 1; got {num_encoder_layers}, "
                f"{num_decoder_layers}, {num_feature_levels}, {dim_feedforward}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"DeformableTransformer: dropout must be in [0, 1), got {dropout}")
        self.d_model, self.nhead, self.num_feature_levels = d_model, nhead, num_feature_levels
        enc_layer = DeformableEncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points)
        dec_layer = DeformableDecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead, dec_n_points)
        self.encoder = DeformableTransformerEncoder(enc_layer, num_encoder_layers)
        self.decoder = DeformableTransformerDecoder(dec_layer, num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reference_points = nn.Linear(d_model, _XY)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier on every matrix, then the MSDeformAttn scheme, reference_points and level_embed."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight)
        nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)

    def forward(
        self,
        srcs: list[Tensor],
        masks: list[Tensor],
        pos_embeds: list[Tensor],
        tgt: Tensor,
        query_pos: Tensor,
    ) -> TransformerOutput:
        """Encode the levels, decode the queries.

        Args:
            srcs: per level [N, C, h_l, w_l] (projected features, finest first).
            masks: per level [N, h_l, w_l] bool, True at padding.
            pos_embeds: per level [N, C, h_l, w_l] position encodings (level_embed is added here).
            tgt: [N, Q, C] decoder queries; query_pos: [N, Q, C] their positions (also the source of
                the initial reference points).
        """
        self._check_inputs(srcs, masks, pos_embeds, tgt, query_pos)
        shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        device = srcs[0].device
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], dim=1)  # [N, S, C]
        mask_flat = torch.cat([m.flatten(1) for m in masks], dim=1)  # [N, S]
        pos_flat = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1) for lvl, p in enumerate(pos_embeds)],
            dim=1,
        )
        # Built from the Python shapes with fills, not uploaded: no host-device sync (issue 16).
        spatial_shapes = tensor_on_device(shapes, torch.long, device)
        level_start_index = tensor_on_device([sum(h * w for h, w in shapes[:i]) for i in range(len(shapes))],
                                             torch.long, device)
        valid_ratios = torch.stack([valid_ratios_of(m) for m in masks], dim=1).to(src_flat.dtype)  # [N, L, 2]

        memory = self.encoder(src_flat, spatial_shapes, level_start_index, valid_ratios, pos_flat, mask_flat,
                              shapes=shapes)

        init_reference = self.reference_points(query_pos).sigmoid()
        hs, inter_references = self.decoder(
            tgt, init_reference, memory, spatial_shapes, level_start_index, valid_ratios, query_pos, mask_flat,
            check_values=False,
        )
        n, _, c = memory.shape
        memory_levels = []
        for (h, w), level_memory in zip(shapes[:-1], memory.split([h * w for h, w in shapes], dim=1)):
            memory_levels.append(level_memory.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous())
        return TransformerOutput(hs, init_reference, inter_references, memory_levels)

    def _check_inputs(
        self, srcs: list[Tensor], masks: list[Tensor], pos_embeds: list[Tensor], tgt: Tensor, query_pos: Tensor
    ) -> None:
        levels = self.num_feature_levels
        if not (len(srcs) == len(masks) == len(pos_embeds) == levels):
            raise ValueError(
                f"DeformableTransformer: expected {levels} levels of srcs/masks/pos_embeds, "
                f"got {len(srcs)}/{len(masks)}/{len(pos_embeds)}"
            )
        n = srcs[0].shape[0]
        for lvl, (src, mask, pos) in enumerate(zip(srcs, masks, pos_embeds)):
            if src.dim() != 4 or src.shape[0] != n or src.shape[1] != self.d_model:
                raise ValueError(
                    f"DeformableTransformer: srcs[{lvl}] must be [{n}, {self.d_model}, h, w], got {tuple(src.shape)}"
                )
            if tuple(pos.shape) != tuple(src.shape):
                raise ValueError(
                    f"DeformableTransformer: pos_embeds[{lvl}] shape {tuple(pos.shape)} "
                    f"!= srcs[{lvl}] {tuple(src.shape)}"
                )
            expected = (n, src.shape[2], src.shape[3])
            if mask.dtype != torch.bool or tuple(mask.shape) != expected:
                raise ValueError(
                    f"DeformableTransformer: masks[{lvl}] must be bool {expected}, got {mask.dtype} {tuple(mask.shape)}"
                )
        if tgt.dim() != 3 or tgt.shape[0] != n or tgt.shape[2] != self.d_model or query_pos.shape != tgt.shape:
            raise ValueError(
                f"DeformableTransformer: tgt and query_pos must both be [{n}, Q, {self.d_model}], "
                f"got {tuple(tgt.shape)} and {tuple(query_pos.shape)}"
            )
