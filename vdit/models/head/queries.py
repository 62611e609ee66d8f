"""Text-instance matching (spec 3.2): Q learned instance queries gated by cross-attention to the words."""
from __future__ import annotations

import torch
from torch import nn


class VisionLanguageFusionModule(nn.Module):
    """a = MHA(query=q0, key=words+pos, value=words); output q0 * a (a multiplicative gate, no residual)."""

    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)

    def forward(self, queries: torch.Tensor, words: torch.Tensor, word_pad: torch.Tensor,
                word_pos: torch.Tensor) -> torch.Tensor:
        """queries [Q,B,C]; words, word_pos [L,B,C]; word_pad [B,L] (True = pad) -> [Q,B,C]."""
        attn = self.multihead_attn(query=queries, key=words + word_pos, value=words,
                                   key_padding_mask=word_pad)[0]
        return queries * attn


class TextInstanceQueries(nn.Module):
    def __init__(self, num_queries: int, d_model: int, nhead: int):
        super().__init__()
        self.query_tensors = nn.Parameter(torch.randn(num_queries, d_model))
        self.fusion_module = VisionLanguageFusionModule(d_model, nhead)

    def forward(self, words: torch.Tensor, word_pad: torch.Tensor, word_pos: torch.Tensor) -> torch.Tensor:
        """words [B,L,C], word_pad [B,L], word_pos [B,L,C] -> text-conditioned queries [B,Q,C]."""
        b = words.shape[0]
        q0 = self.query_tensors[:, None].expand(-1, b, -1)
        q = self.fusion_module(q0, words.transpose(0, 1), word_pad, word_pos.transpose(0, 1))
        return q.transpose(0, 1)
