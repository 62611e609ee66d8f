"""Stage 4: RobertaForMaskedLM trained to reconstruct BERT-corrupted captions (the masked-LM corruption,
with the loss on every token); the base RobertaModel is what VD-IT's head uses."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vdit.mini.data import CaptionCorpus
from vdit.mini.pretrain.common import (
    LogFn, StageConfig, StageRecorder, adamw_with_schedule, optimizer_step, stage_generator,
)
from vdit.models.foundation_arch import arch

# RoBERTa masked-language modelling (BERT's recipe).
MLM_PROB = 0.15
MLM_MASK_SHARE, MLM_RANDOM_SHARE = 0.8, 0.1  # of the selected tokens; the rest stay unchanged


def build_roberta_mlm(tokenizer: Any, arch_name: str = "mini"):
    from transformers import RobertaConfig, RobertaForMaskedLM

    cfg = dict(arch(arch_name)["text_encoder"])
    cfg["vocab_size"] = len(tokenizer)
    return RobertaForMaskedLM(RobertaConfig(**cfg))


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, tokenizer: Any,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: MLM_PROB of the maskable tokens (at least one per row) become targets; of those
    80% -> <mask>, 10% -> a random token, 10% unchanged. Returns (inputs, labels with -100 elsewhere)."""
    maskable = ~special
    chosen = (torch.rand(input_ids.shape, generator=g) < MLM_PROB) & maskable
    # Rows without a target get one, so every caption contributes to every step's loss.
    scores = torch.rand(input_ids.shape, generator=g).masked_fill(~maskable, -1.0)
    forced = F.one_hot(scores.argmax(dim=1), input_ids.shape[1]).bool() & maskable
    chosen |= forced & ~chosen.any(dim=1, keepdim=True)
    labels = input_ids.masked_fill(~chosen, -100)
    action = torch.rand(input_ids.shape, generator=g)
    inputs = input_ids.clone()
    inputs[chosen & (action < MLM_MASK_SHARE)] = tokenizer.mask_token_id
    rand_pos = chosen & (action >= MLM_MASK_SHARE) & (action < MLM_MASK_SHARE + MLM_RANDOM_SHARE)
    inputs[rand_pos] = torch.randint(0, len(tokenizer), (int(rand_pos.sum()),), generator=g)
    return inputs, labels


def train_roberta(corpus: CaptionCorpus, tokenizer: Any, cfg: StageConfig, *, arch_name: str = "mini", seed: int = 0,
                  log: LogFn | None = None, progress: bool = True):
    """Denoising language-model training on every caption of the corpus; returns the base RobertaModel.

    The inputs are corrupted as in BERT's masked-language modelling (`mask_tokens`), but the loss covers
    every (non-special) token, not only the corrupted ones: the model reconstructs the whole caption.
    Plain MLM is degenerate on this corpus: the attribute words are exchangeable in every context (any
    colour fits "the small ___ circle"), so predicting masked words never separates "red" from "blue",
    and with the LM head tied to the word embeddings a plain-MLM model ended with "red"/"blue" input
    embeddings at cosine 0.92 and output features at 0.98, too alike for VD-IT's head to tell the
    referred object apart. Reconstructing the unmasked words too makes every word's output feature
    identify that word, as a large pre-trained RoBERTa's do."""
    texts = corpus.all_texts()
    torch.manual_seed(seed)
    model = build_roberta_mlm(tokenizer, arch_name)
    model.train()
    opt, sched = adamw_with_schedule(model, cfg)
    g = stage_generator(seed, "roberta")
    rec = StageRecorder("roberta", cfg.steps, log, progress)
    for step in range(cfg.steps):
        pick = torch.randint(0, len(texts), (cfg.batch_size,), generator=g).tolist()
        tok = tokenizer([texts[i] for i in pick], padding=True, return_special_tokens_mask=True, return_tensors="pt")
        special = tok.special_tokens_mask.bool() | ~tok.attention_mask.bool()
        inputs, masked_labels = mask_tokens(tok.input_ids, special, tokenizer, g)
        labels = tok.input_ids.masked_fill(special, -100)
        logits = model(input_ids=inputs, attention_mask=tok.attention_mask).logits
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        optimizer_step(loss, model, opt, sched, cfg)
        with torch.no_grad():
            hit = logits.argmax(-1) == tok.input_ids
            masked = masked_labels != -100
            acc = hit[masked].float().mean().item()
            acc_all = hit[~special].float().mean().item()
        rec.update(step, loss=loss.item(), acc=acc, acc_all=acc_all)
    rec.emit({"event": "done", "loop_s": round(rec.close(), 1), **rec.last})
    return model.roberta.eval()
