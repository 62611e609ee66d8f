"""Training the miniature world's foundation models from scratch, one stage (module) per model, plus
`common` (the plan, optimiser schedule, generators and recorder every stage shares).

- `train_clip`: a CLIPModel (text + vision towers), symmetric contrastive loss between one frame and a
  caption of its video (a referring expression or the motion-free scene caption).
- `train_vae`: an AutoencoderKL, MSE reconstruction + a small KL term on single frames; its
  `scaling_factor` is then measured so that scaled latents have unit standard deviation.
- `train_t2v_unet`: a UNet3DConditionModel as a text-to-video diffusion model: epsilon prediction under the
  DDPM schedule of ModelScope, on VAE latents of 2-8-frame clips, conditioned on the frozen CLIP text
  tower's last hidden state over the full padded 77 tokens (exactly what VD-IT feeds it), with caption
  dropout for classifier-free guidance. The saved weights are an exponential moving average.
- `train_roberta`: RobertaForMaskedLM trained to reconstruct BERT-corrupted captions (the masked-LM
  corruption, with the loss on every token); the base RobertaModel is what VD-IT's head uses.

Every function is deterministic given its seed: the model is initialised after `torch.manual_seed(seed)`
and all data sampling uses a `torch.Generator` seeded from it (same process settings -> same weights).
`plan_for_budget` turns a minute budget into step counts, so a budget always means the same models.
"""
from vdit.mini.pretrain.clip import build_clip, clip_image_spec, clip_text_tower, contrastive_loss, train_clip
from vdit.mini.pretrain.common import (
    DEFAULT_MINUTES, MIN_STAGE_STEPS, PIXEL_MAX, PretrainPlan, StageConfig, frames_to_unit, plan_for_budget,
)
from vdit.mini.pretrain.roberta import build_roberta_mlm, mask_tokens, train_roberta
from vdit.mini.pretrain.t2v import EMPTY_PROMPT, build_unet, encode_latent_stats, encode_prompts, train_t2v_unet
from vdit.mini.pretrain.vae import (
    build_vae, init_posterior_logvar, measure_scaling_factor, reconstruction_psnr, train_vae,
)

__all__ = [
    "DEFAULT_MINUTES", "EMPTY_PROMPT", "MIN_STAGE_STEPS", "PIXEL_MAX", "PretrainPlan", "StageConfig",
    "build_clip", "build_roberta_mlm", "build_unet", "build_vae", "clip_image_spec", "clip_text_tower",
    "contrastive_loss", "encode_latent_stats", "encode_prompts", "frames_to_unit", "init_posterior_logvar",
    "mask_tokens", "measure_scaling_factor", "plan_for_budget", "reconstruction_psnr", "train_clip",
    "train_roberta", "train_t2v_unet", "train_vae",
]
