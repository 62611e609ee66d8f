"""The model's answer -> masks at the original resolution: the one post-processing of every driver.

For each mask of a `SegmentOutput` (the best query per sentence, or every query): the logits are cropped
to the unpadded input size, bilinearly upsampled to the original frame size, passed through a sigmoid
and thresholded (spec 6.1 / 6.3: `sigmoid > 0.5`). Everything is computed on the model's device for
all sentences of a clip in one pass, and the results reach the host in one transfer (`to_host`): the
host waits once per clip (window), not once per sentence or per value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from vdit.models.segmentation import SegmentOutput

# `to_host`'s dtypes (a table: asking torch, `torch.empty(0, dtype=d).numpy()`, is a host read of its own).
_NUMPY_DTYPES = {torch.bool: np.bool_, torch.uint8: np.uint8, torch.int32: np.int32, torch.int64: np.int64,
                 torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


@dataclass
class ClipMasks:
    """The post-processed answer for S sentences on one clip of t frames, on the host; K masks per
    sentence (1: the best query; Q: every query), in the order of `SegmentOutput.mask_queries`.

    masks:        [S,t,K,H0,W0] bool, original resolution
    mask_queries: [S,K] int64, the query of each mask
    frame_scores: [S,t,K] float32, sigmoid of each mask's query logit in each frame
    query_scores: [S,Q] float32, every query's mean score over the frames (what picks the best)
    probs:        [S,t,K,H0,W0] float32 (only with return_probs=True)
    """

    masks: np.ndarray
    mask_queries: np.ndarray
    frame_scores: np.ndarray
    query_scores: np.ndarray
    probs: np.ndarray | None = None


def logits_to_probs(logits: torch.Tensor, size: tuple[int, int], original: tuple[int, int]) -> torch.Tensor:
    """Mask logits [..., Hp, Wp] at the padded input size -> probabilities [..., H0, W0] float32: crop
    the padding to the unpadded `size`, bilinearly upsample to the `original` size, sigmoid (spec 6.1)."""
    h, w = size
    lead = logits.shape[:-2]
    x = logits[..., :h, :w].float().reshape(-1, 1, h, w)
    if (h, w) != tuple(original):
        x = F.interpolate(x, size=tuple(original), mode="bilinear", align_corners=False)
    return x.reshape(*lead, *x.shape[-2:]).sigmoid()


def postprocess(out: SegmentOutput, original: tuple[int, int], threshold: float,
                return_probs: bool = False) -> ClipMasks:
    """`out` (on the model's device) -> ClipMasks on the host, with one device->host transfer."""
    # Probabilities sentence by sentence (no host sync either way): on the CPU the vectorised sigmoid
    # rounds an element by 1 ulp differently depending on where it falls in the loop, so this way a
    # sentence's probabilities do not depend on which other sentences share its batch.
    probs = torch.stack([logits_to_probs(m, out.size, original) for m in out.mask_logits])  # [S,t,K,H0,W0]
    s, t, k = out.mask_logits.shape[:3]
    chosen = torch.gather(out.query_logits, 2, out.mask_queries[:, None, :].expand(s, t, k))  # [S,t,K]
    values = {"masks": probs > threshold, "mask_queries": out.mask_queries,
              "frame_scores": chosen.float().sigmoid(), "query_scores": out.scores.float()}
    if return_probs:
        values["probs"] = probs
    return ClipMasks(**to_host(values))


def to_host(tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Tensors of one device -> numpy arrays of the same dtypes and shapes, in ONE device->host copy:
    their bytes are packed into one buffer on the device, copied, and viewed back on the host (widest
    dtype first, so every array starts aligned). The arrays share that one host buffer."""
    items = sorted(tensors.items(), key=lambda kv: -kv[1].element_size())
    unknown = sorted({str(t.dtype) for _, t in items if t.dtype not in _NUMPY_DTYPES})
    if unknown:
        raise TypeError(f"to_host: no numpy dtype for {', '.join(unknown)} (convert first, e.g. .float())")
    parts = [t.detach().contiguous().view(-1).view(torch.uint8) for _, t in items]
    host = torch.cat(parts).cpu().numpy()
    out: dict[str, np.ndarray] = {}
    offset = 0
    for (name, t), part in zip(items, parts):
        n = part.numel()
        out[name] = host[offset:offset + n].view(_NUMPY_DTYPES[t.dtype]).reshape(tuple(t.shape))
        offset += n
    return out


__all__ = ["ClipMasks", "logits_to_probs", "postprocess", "to_host"]
