"""The head's text branch (spec 3.1): frozen RoBERTa word features -> trainable 256-d projection."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from vdit.errors import InputError
from vdit.models.text_cache import TextFeatureCache, autocast_key, usable


class FeatureResizer(nn.Module):
    """Linear -> LayerNorm -> Dropout (names as the official `text_proj`: fc, layer_norm)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float, eps: float):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.layer_norm = nn.LayerNorm(out_dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.layer_norm(self.fc(x)))


class TextEncoder(nn.Module):
    """Frozen RoBERTa + tokenizer. Returns word features [B,L,768] and the padding mask [B,L] (True = pad).

    The official code pads to the longest sentence with no maximum; RoBERTa has a hard position limit, so
    longer texts are truncated to it, with one warning.

    `feature_cache` (None by default; the trainer sets one, `train.text_cache`): per-sentence word
    features of the frozen encoder, reused while it is frozen and in eval mode (vdit.models.text_cache).
    """

    def __init__(self, model: nn.Module, tokenizer, official_dropout: bool = False):
        super().__init__()
        self.text_backbone = model
        self.tokenizer = tokenizer
        self.official_dropout = official_dropout
        self.text_backbone.requires_grad_(False)
        self.text_backbone.eval()
        cfg = model.config
        # RoBERTa positions start after the padding index: usable length = max positions - pad - 1.
        self.max_tokens = int(cfg.max_position_embeddings) - int(getattr(cfg, "pad_token_id", 1) or 0) - 1
        self._warned = False
        self.feature_cache: TextFeatureCache | None = None

    @property
    def hidden_size(self) -> int:
        return int(self.text_backbone.config.hidden_size)

    @property
    def trainable(self) -> bool:
        """RoBERTa is frozen in the main recipes and fine-tuned in RefCOCO pre-training."""
        return any(p.requires_grad for p in self.text_backbone.parameters())

    def train(self, mode: bool = True) -> "TextEncoder":
        super().train(mode)
        # A frozen encoder stays in eval mode unless the official dropout side effect is asked for; one
        # being fine-tuned trains normally (dropout on), as in SgMg's pre-training.
        self.text_backbone.train(mode and (self.official_dropout or self.trainable))
        return self

    def forward(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if usable(self.feature_cache, self.text_backbone):
            return self._cached(texts, torch.device(device))
        return self._encode(texts, device)

    def _cached(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Word features from the cache (each sentence encoded alone, then kept), padded to the longest
        sentence with zeros; the padding mask marks the padding, as in `_encode`."""
        entries = self.feature_cache.get_or_compute(  # type: ignore[union-attr]
            texts, lambda text: (self._encode([text], device)[0][0],), device, (autocast_key(device.type),))
        feats = [e[0] for e in entries]  # [L_i, D] each
        longest = max(f.shape[0] for f in feats)
        if all(f.shape[0] == longest for f in feats):
            words = torch.stack(feats)
            return words, torch.zeros(words.shape[:2], dtype=torch.bool, device=words.device)
        words = feats[0].new_zeros((len(feats), longest, feats[0].shape[1]))
        pad = torch.ones((len(feats), longest), dtype=torch.bool, device=words.device)
        for i, f in enumerate(feats):
            words[i, : f.shape[0]] = f
            pad[i, : f.shape[0]] = False
        return words, pad

    def _encode(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        if max(lengths) > self.max_tokens and not self._warned:
            warnings.warn(f"a text is longer than the text encoder's {self.max_tokens} tokens; it is truncated",
                          stacklevel=3)
            self._warned = True
        enc = self.tokenizer(texts, padding="longest", truncation=True, max_length=self.max_tokens,
                             return_tensors="pt").to(device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable):
            out = self.text_backbone(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return out.last_hidden_state, enc["attention_mask"].ne(1)


def check_texts(texts: list[str], batch: int) -> list[str]:
    if len(texts) != batch:
        raise InputError(f"got {len(texts)} texts for {batch} clips: one referring expression per clip")
    cleaned = [" ".join(str(t).split()) for t in texts]
    for i, t in enumerate(cleaned):
        if not t:
            raise InputError(f"text {i} is empty: give a referring expression")
    return cleaned
