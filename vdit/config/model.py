"""The whole model's configuration: foundation, backbone, head and loss, validated together."""
from __future__ import annotations

from dataclasses import dataclass, field

from vdit.config.backbone import CLIP_PREPROCESS_MODES, NOISE_KINDS, PROMPT_MODES, VAE_LATENT_MODES, BackboneConfig
from vdit.config.foundation import UNET_INITS, FoundationConfig
from vdit.config.head import HeadConfig
from vdit.config.loss import LossConfig
from vdit.errors import ConfigError


@dataclass
class ModelConfig:
    foundation: FoundationConfig = field(default_factory=FoundationConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    # Control experiment (docs/miniature.md): the model ignores its input texts and reads the empty
    # caption everywhere (UNet prompt and head text encoder), in training and inference alike.
    text_blind: bool = False
    # Short side of the frames the model was trained at: VDITPredictor and `vdit segment` resize inputs
    # to it unless told otherwise. None = the benchmarks' evaluation size (EVAL_SHORT_SIDE, 360).
    input_short_side: int | None = None

    def validate(self) -> "ModelConfig":
        bb, hd = self.backbone, self.head
        if self.foundation.unet_init not in UNET_INITS:
            raise ConfigError(f"foundation.unet_init={self.foundation.unet_init!r}: expected one of {UNET_INITS}")
        if bb.prompt.mode not in PROMPT_MODES:
            raise ConfigError(f"backbone.prompt.mode={bb.prompt.mode!r}: expected one of {PROMPT_MODES}")
        if bb.noise.kind not in NOISE_KINDS:
            raise ConfigError(f"backbone.noise.kind={bb.noise.kind!r}: expected one of {NOISE_KINDS}")
        if self.input_short_side is not None and self.input_short_side < 1:
            raise ConfigError(f"input_short_side={self.input_short_side}: expected a positive size or None")
        if bb.noise.step < 1:
            raise ConfigError(f"backbone.noise.step={bb.noise.step}: steps count from 1 (step 1 = timestep 0)")
        if bb.vae_latent not in VAE_LATENT_MODES:
            raise ConfigError(f"backbone.vae_latent={bb.vae_latent!r}: expected one of {VAE_LATENT_MODES}")
        if bb.clip_preprocess not in CLIP_PREPROCESS_MODES:
            raise ConfigError(
                f"backbone.clip_preprocess={bb.clip_preprocess!r}: expected one of {CLIP_PREPROCESS_MODES}")
        if not (len(bb.level_channels) == len(bb.level_hidden_channels) == len(bb.level_strides) == 4):
            raise ConfigError("backbone: exactly 4 feature levels (channels, hidden channels, strides)")
        if hd.num_feature_levels != 4:
            raise ConfigError("head.num_feature_levels must be 4 (3 backbone levels + 1 extra stride-64 level)")
        if hd.hidden_dim % hd.group_norm_groups or hd.hidden_dim % hd.nheads:
            raise ConfigError("head.hidden_dim must be divisible by head.group_norm_groups and head.nheads")
        if hd.dec_layers < 1 or hd.enc_layers < 1 or hd.num_queries < 1:
            raise ConfigError("head: need at least one encoder layer, one decoder layer and one query")
        if hd.dynamic_mask_channels != hd.mask_out_stride ** 2:
            raise ConfigError(
                f"head.dynamic_mask_channels={hd.dynamic_mask_channels} must equal head.mask_out_stride**2 = "
                f"{hd.mask_out_stride ** 2}: the mask channels pixel-shuffle into one channel")
        if hd.controller_layers != 2:
            raise ConfigError("head.controller_layers: only the official 2 dynamic conv layers are implemented")
        return self
