"""The DETR-style head (spec 3)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HeadConfig:
    """DETR-style head (spec 3)."""

    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 4
    dec_layers: int = 4
    dim_feedforward: int = 2048
    dropout: float = 0.1
    num_feature_levels: int = 4
    enc_n_points: int = 4
    dec_n_points: int = 4
    num_queries: int = 5  # Q = 5 instance queries
    controller_layers: int = 2
    dynamic_mask_channels: int = 16
    rel_coord: bool = True
    mask_feat_stride: int = 8
    mask_out_stride: int = 4  # pixel_shuffle factor giving M_o at s2 and M at s1
    group_norm_groups: int = 32
    text_proj_dropout: float = 0.1
    text_proj_ln_eps: float = 1e-12
    fusion_nheads: int = 8
    class_prior_prob: float = 0.01  # class bias init -log((1-p)/p) = -log(99)
    box_wh_bias_init: float = -2.0  # bbox_embed[0] last-layer bias for (w,h)
