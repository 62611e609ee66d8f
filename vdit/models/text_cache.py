"""Per-sentence cache of a frozen text encoder's outputs (issue 17).

The two text encoders VD-IT runs on every training step, RoBERTa (head, spec 3.1) and the T2V text
tower (backbone, spec 2.2), are frozen and, in eval mode, deterministic functions of the sentence: their
outputs for a sentence seen before can be reused instead of recomputed (31 ms of launches per step on an
H200 for one sentence; nothing of the step's arithmetic). `TextFeatureCache` is an LRU keyed by the
sentence (plus the autocast state, which changes the outputs' precision).

Exactness: a sentence missing from the cache is encoded alone (a batch of one), never together with the
other sentences of its batch, so what the cache holds, and returns, does not depend on which sentences
shared a batch or on what was cached before: a run resumed with an empty cache computes exactly what an
uninterrupted one did. With one sentence per batch (the video recipes) this is also bit-identical to
the uncached path; with several, the uncached path pads them into one batch and differs by float
rounding only (pad positions are masked out downstream).

The owners (`TextEncoder`, `DiffusionBackbone`) use their cache only while the encoder is frozen and in
eval mode: not with `backbone.official_frozen_dropout=true` (dropout on) and not while the text encoder
is trained (`train.train_text_encoder`); see `usable`. Whoever changes a frozen encoder's weights must
`clear()` its cache (`vdit.engine.optim.set_text_encoder_trainable` does; the trainer attaches the
caches after every weight is loaded).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import nn

from vdit.errors import ConfigError

Entry = tuple[torch.Tensor, ...]


class TextFeatureCache:
    """LRU of per-sentence encoder outputs: at most `capacity` sentences.

    `storage`: where entries are kept (None: where they were computed; "cpu" on a CUDA run keeps them
    in host memory, so the cache costs no device memory; a hit copies them back with `non_blocking=True`,
    which from pageable host memory stages the data at once and never waits on the device). Counters
    `hits` / `misses` for logs and tests.
    """

    def __init__(self, capacity: int, storage: torch.device | str | None = None):
        if int(capacity) < 1:
            raise ConfigError(f"text cache capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.storage = torch.device(storage) if storage is not None else None
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def get_or_compute(self, texts: Sequence[str], compute: Callable[[str], Entry], device: torch.device,
                       key_extra: tuple = ()) -> list[Entry]:
        """One entry per text, in order: the cached one (moved to `device`) or `compute(text)` (one
        sentence alone), which is then cached. `key_extra` is part of the key (e.g. the autocast dtype)."""
        out: list[Entry] = []
        for text in texts:
            key = (text, *key_extra)
            entry = self._entries.get(key)
            if entry is not None:
                self.hits += 1
                self._entries.move_to_end(key)
                out.append(tuple(t.to(device, non_blocking=True) for t in entry))
                continue
            self.misses += 1
            values = tuple(t.detach() for t in compute(text))
            self._entries[key] = tuple(self._store(t) for t in values)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            out.append(values)
        return out

    def _store(self, t: torch.Tensor) -> torch.Tensor:
        # A miss copies its result off the device once (a sync, once per sentence and run).
        return t if self.storage is None else t.to(self.storage)


def autocast_key(device_type: str) -> torch.dtype | None:
    """The autocast dtype in force for `device_type` (None when off): part of a cache key, since an
    encoder with fp32 weights gives lower-precision outputs under autocast."""
    if device_type == "meta" or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def usable(cache: TextFeatureCache | None, encoder: nn.Module) -> bool:
    """A cache applies while the encoder is frozen and in eval mode (deterministic outputs)."""
    if cache is None or encoder.training:
        return False
    return not any(p.requires_grad for p in encoder.parameters())
