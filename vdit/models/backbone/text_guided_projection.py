"""Text-guided image projection (spec 2.4) and its Table A variants.

The per-frame prompt that conditions the frozen UNet's cross-attention:
- `image`  (VD-I):  projected CLIP image tokens of the frame, [BT, N_img, D];
- `text`   (VD-T):  the T2V text encoder's tokens, repeated per frame, [BT, 77, D];
- `concat` (VD-IT concat): [text ; projected image] along the sequence, then a token-wise residual MLP
  whose trainable parameter count equals the attention block's (the supplementary's fair comparison);
- `attn`   (VD-IT): text tokens query the projected image tokens (one post-LN decoder block).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vdit.config import PromptConfig


class ResidualMLP(nn.Module):
    """h1 = W1 v; out = h1 + W2 h1 (no activation, no norm: as the official projection)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear1 = nn.Linear(in_dim, out_dim)
        self.linear2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)
        return h + self.linear2(h)


class TextQueriedAttention(nn.Module):
    """Multi-head attention with text as queries and image tokens as keys/values; post-LN residual on
    the un-projected text. Names follow the official checkpoint (w_qs, w_ks, w_vs, fc, layer_norm)."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"prompt width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.w_qs = nn.Linear(dim, dim, bias=False)
        self.w_ks = nn.Linear(dim, dim, bias=False)
        self.w_vs = nn.Linear(dim, dim, bias=False)
        self.fc = nn.Linear(dim, dim, bias=False)
        self.layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        n, lq, d = text.shape
        lk = image.shape[1]
        h, hd = self.num_heads, self.head_dim
        q = self.w_qs(text).view(n, lq, h, hd).transpose(1, 2)
        k = self.w_ks(image).view(n, lk, h, hd).transpose(1, 2)
        v = self.w_vs(image).view(n, lk, h, hd).transpose(1, 2)
        # softmax(q k^T / sqrt(d_k)) v, no mask, no dropout (temperature sqrt(64) = 8 at full width)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(n, lq, d)
        return self.layer_norm(text + self.fc(out))


class PositionwiseFeedForward(nn.Module):
    """LN(y + W2 ReLU(W1 y))."""

    def __init__(self, dim: int, hidden: int, eps: float):
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)
        self.layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(x + self.w_2(torch.relu(self.w_1(x))))


class CrossAttn(nn.Module):
    """The VD-IT `attn` prompt block: p_ve = FFN(LN(p_e + softmax(p_e W_Q (p_v W_K)^T / sqrt d) p_v W_V))."""

    def __init__(self, dim: int, cfg: PromptConfig):
        super().__init__()
        self.cros_attn = TextQueriedAttention(dim, cfg.num_heads, cfg.layer_norm_eps)
        self.pos_ffn = PositionwiseFeedForward(dim, cfg.ffn_dim, cfg.layer_norm_eps)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.pos_ffn(self.cros_attn(text, image))


def concat_mlp_hidden(dim: int, ffn_dim: int) -> int:
    """Hidden width giving the concat MLP exactly the attention block's parameter count.

    attn block: 4 d^2 (q,k,v,fc) + 2d (LN) + (2 d f + f + d) (FFN) + 2d (LN) = (2d+1)(f+2d) + 3d
    concat MLP: (2d+1) h + 3d (W1, W2 with biases, one LN)  =>  h = f + 2d, exactly, for any widths.
    """
    return ffn_dim + 2 * dim


class ConcatMLP(nn.Module):
    """Token-wise LN(x + W2 ReLU(W1 x)) over the concatenated [text ; image] sequence."""

    def __init__(self, dim: int, cfg: PromptConfig):
        super().__init__()
        self.mlp = PositionwiseFeedForward(dim, concat_mlp_hidden(dim, cfg.ffn_dim), cfg.layer_norm_eps)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([text, image], dim=1))


class TextGuidedProjection(nn.Module):
    """Builds the per-frame UNet prompt from text tokens [BT, L, D] and CLIP image tokens [BT, N, Dv]."""

    def __init__(self, image_dim: int, prompt_dim: int, cfg: PromptConfig):
        super().__init__()
        self.mode = cfg.mode
        self.uses_image = cfg.mode != "text"
        # VD-T never looks at the image tokens: no projection, no CLIP vision forward.
        self.projection = ResidualMLP(image_dim, prompt_dim) if self.uses_image else None
        if cfg.mode == "attn":
            self.cross_attn = CrossAttn(prompt_dim, cfg)
        elif cfg.mode == "concat":
            self.cross_attn = ConcatMLP(prompt_dim, cfg)
        else:
            self.cross_attn = None

    def forward(self, text: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "text":
            return text
        assert image is not None and self.projection is not None
        image = self.projection(image)
        if self.mode == "image":
            return image
        return self.cross_attn(text, image)
