"""Stage 1: a CLIPModel (text + vision towers) trained from scratch with a symmetric contrastive loss
between one frame and a caption of its video (a referring expression or the motion-free scene caption)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vdit.mini.data import CaptionCorpus
from vdit.mini.pretrain.common import (
    LogFn, StageConfig, StageRecorder, adamw_with_schedule, frames_to_unit, optimizer_step, stage_generator,
)
from vdit.models.foundation import ClipImageSpec
from vdit.models.foundation_arch import CLIP_MEAN, CLIP_STD, arch

# CLIP: share of captions that are the scene caption (else one of the video's expressions). 0: the scene
# caption names every object at once, so it teaches little about which colour word goes with which object;
# on referring expressions alone all six colour words came apart in the text tower (2000 steps: pooled
# cosine <= 0.91, at the colour word <= 0.90; the shipped 4000 steps: <= 0.80 and <= 0.71), while a 50/50
# mixture left blue and cyan at 0.98 and the colour word's own features at 0.99 (docs/miniature.md, "Where
# the error is").
CLIP_SCENE_PROB = 0.0


def clip_image_spec(arch_name: str) -> ClipImageSpec:
    size = int(arch(arch_name)["clip_vision"]["image_size"])
    return ClipImageSpec(size, size, size, CLIP_MEAN, CLIP_STD)


def build_clip(tokenizer: Any, arch_name: str = "mini"):
    """A randomly initialised CLIPModel of `arch_name` whose text tower fits `tokenizer`."""
    from transformers import CLIPConfig, CLIPModel

    a = arch(arch_name)
    text = {k: v for k, v in a["t2v_text"].items() if k != "projection_dim"}
    text.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = {k: v for k, v in a["clip_vision"].items() if k != "projection_dim"}
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision,
                                projection_dim=a["clip_vision"]["projection_dim"]))


def contrastive_loss(logits_per_image: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE where every item whose caption is the same string counts as a positive
    (short captions repeat within a batch: "the small circle")."""
    same = torch.tensor([[a == b for b in texts] for a in texts], dtype=logits_per_image.dtype)
    targets = same / same.sum(dim=1, keepdim=True)
    loss_i = -(targets * F.log_softmax(logits_per_image, dim=1)).sum(dim=1).mean()
    loss_t = -(targets * F.log_softmax(logits_per_image.t(), dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def _clip_batch(corpus: CaptionCorpus, batch: int, g: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    n, t = corpus.frames.shape[:2]
    videos = torch.randperm(n, generator=g)[: min(batch, n)]
    frame_idx = torch.randint(0, t, (len(videos),), generator=g)
    # drawn even at CLIP_SCENE_PROB = 0: the same random stream rebuilds the shipped foundation bit for bit
    use_scene = torch.rand(len(videos), generator=g) < CLIP_SCENE_PROB
    texts = []
    for v, scene in zip(videos.tolist(), use_scene.tolist()):
        exps = corpus.expressions[v]
        pick = int(torch.randint(0, len(exps), (1,), generator=g)) if exps else 0
        texts.append(corpus.frame_captions[v] if scene or not exps else exps[pick])
    return corpus.frames[videos, frame_idx], texts


def train_clip(corpus: CaptionCorpus, tokenizer: Any, cfg: StageConfig, *, arch_name: str = "mini", seed: int = 0,
               log: LogFn | None = None, progress: bool = True):
    """Contrastive image-caption training of a CLIPModel from scratch; returns it in eval mode."""
    from vdit.models.backbone.clip_image import clip_preprocess_fast

    torch.manual_seed(seed)
    model = build_clip(tokenizer, arch_name)
    model.train()
    spec = clip_image_spec(arch_name)
    opt, sched = adamw_with_schedule(model, cfg)
    g = stage_generator(seed, "clip")
    rec = StageRecorder("clip", cfg.steps, log, progress)
    for step in range(cfg.steps):
        frames, texts = _clip_batch(corpus, cfg.batch_size, g)
        # The shipped miniature CLIP was pre-trained on the tensor path; kept so that it rebuilds identically.
        pixels = clip_preprocess_fast(frames_to_unit(frames), spec)
        tok = tokenizer(texts, padding=True, return_tensors="pt")
        out = model(input_ids=tok.input_ids, attention_mask=tok.attention_mask, pixel_values=pixels)
        loss = contrastive_loss(out.logits_per_image, texts)
        optimizer_step(loss, model, opt, sched, cfg)
        with torch.no_grad():
            hit = [texts[j] == texts[i] for i, j in enumerate(out.logits_per_image.argmax(dim=1).tolist())]
        rec.update(step, loss=loss.item(), acc=sum(hit) / len(hit))
    rec.emit({"event": "done", "loop_s": round(rec.close(), 1), **rec.last})
    return model.eval()


def clip_text_tower(clip: Any):
    """The CLIPModel's text tower as a standalone CLIPTextModel (ModelScope's text_encoder/ class)."""
    from transformers import CLIPTextModel

    text = CLIPTextModel(clip.config.text_config)
    text.load_state_dict(clip.text_model.state_dict())
    return text.eval()
