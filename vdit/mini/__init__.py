"""The miniature world: tiny foundation models trained here from scratch on the generated benchmark.

`vdit mini pretrain` (vdit.mini.build.build_mini_foundation) trains a CLIP, a VAE, a text-to-video UNet and
a RoBERTa on the generated referring-video benchmark and saves them in the layouts of the real models
(ModelScope T2V, LAION CLIP, roberta-base), so VD-IT loads them with its normal code. The trained models
ship in vdit/assets/mini/foundation (`MINI_FOUNDATION_DIR`). See docs/miniature.md.
"""
from vdit.mini.preset import MINI_FOUNDATION_DIR

__all__ = ["MINI_FOUNDATION_DIR"]
