"""The four training functions: smoke runs, determinism, the pieces of their losses."""
import math

import pytest
import torch

from vdit.errors import ConfigError
from vdit.mini import pretrain as P
from vdit.mini.pretrain.vae import VAE_CHROMA_WEIGHT, _vae_batch, chroma_weighted_mse


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_clip_learns_shapes_and_is_deterministic(smoke_corpora, smoke_tokenizers, smoke_plan):
    train, _ = smoke_corpora
    tok = smoke_tokenizers[0]
    cfg = smoke_plan.clip
    records = []
    a = P.train_clip(train, tok, cfg, seed=0, log=records.append, progress=False)
    b = P.train_clip(train, tok, cfg, seed=0, progress=False)
    c = P.train_clip(train, tok, cfg, seed=1, progress=False)
    assert _same(_state(a), _state(b))
    assert not _same(_state(a), _state(c))
    assert not a.training
    assert a.config.vision_config.image_size == 64 and a.config.text_config.vocab_size == len(tok)
    done = [r for r in records if r.get("event") == "done"]
    assert len(done) == 1 and math.isfinite(done[0]["loss"])
    text = P.clip_text_tower(a)
    ids = tok(["the red circle"], return_tensors="pt").input_ids
    assert torch.allclose(text(ids).last_hidden_state, a.text_model(ids).last_hidden_state)


@pytest.mark.slow
def test_train_vae_sets_measured_scaling_factor(smoke_corpora, smoke_plan):
    train, valid = smoke_corpora
    records = []
    vae = P.train_vae(train, smoke_plan.vae, seed=0, eval_corpus=valid, log=records.append, progress=False)
    again = P.train_vae(train, smoke_plan.vae, seed=0, progress=False)
    assert _same(_state(vae), _state(again))
    scale = vae.config.scaling_factor
    assert scale == P.measure_scaling_factor(vae, train, seed=0)
    with torch.no_grad():
        z = vae.encode(P.frames_to_unit(train.frames[:, 0]) * 2 - 1).latent_dist.mean * scale
    assert 0.3 < z.std().item() < 3.0  # ~unit std once scaled
    assert vae.encoder.down_blocks[2].resnets[1] is not None  # VD-IT's tap B exists
    done = [r for r in records if r.get("event") == "done"][0]
    assert done["scaling_factor"] == scale and "eval_psnr" in done


def test_vae_batches_are_whole_mirrored_frames(smoke_corpora):
    train, _ = smoke_corpora
    x = _vae_batch(train, 64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    frames = P.frames_to_unit(train.frames.flatten(0, 1)) * 2 - 1
    as_is = [(f == frames).flatten(1).all(1).any().item() for f in x]
    mirrored = [(f.flip(-1) == frames).flatten(1).all(1).any().item() for f in x]
    assert all(a or m for a, m in zip(as_is, mirrored)) and any(mirrored) and any(as_is)


def test_chroma_weighted_mse_restated_per_pixel():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 5, 4, generator=g) * 2 - 1
    rec = torch.rand(2, 3, 5, 4, generator=g) * 2 - 1
    x[0, :, 0, 0] = torch.tensor([0.2, 0.2, 0.2])  # grey: weight 1
    num = den = 0.0
    for n in range(2):
        for i in range(5):
            for j in range(4):
                rgb01 = [(x[n, c, i, j].item() + 1) / 2 for c in range(3)]
                w = 1 + VAE_CHROMA_WEIGHT * (max(rgb01) - min(rgb01))
                for c in range(3):
                    num += w * (rec[n, c, i, j].item() - x[n, c, i, j].item()) ** 2
                    den += w
    assert chroma_weighted_mse(rec, x).item() == pytest.approx(num / den, rel=1e-5)
    plain = torch.nn.functional.mse_loss(rec, x)
    assert chroma_weighted_mse(rec, x, weight=0.0).item() == pytest.approx(plain.item(), rel=1e-6)
    # an error on a saturated pixel costs more than the same error on a grey one
    grey, blue = torch.zeros(1, 3, 1, 2), torch.zeros(1, 3, 1, 2)
    grey[..., 1] = 0.2
    blue[0, :, 0, 1] = torch.tensor([-0.65, -0.3, 0.76])  # the benchmark's blue (45, 90, 225)
    err = torch.zeros(1, 3, 1, 2)
    err[0, 1, 0, 1] = 0.1
    assert chroma_weighted_mse(blue + err, blue) > chroma_weighted_mse(grey + err, grey)


@pytest.mark.slow
def test_train_t2v_unet_epsilon_training_with_eval(smoke_corpora, smoke_tokenizers, smoke_plan):
    train, valid = smoke_corpora
    tok = smoke_tokenizers[0]
    clip = P.train_clip(train, tok, smoke_plan.clip, progress=False)
    text = P.clip_text_tower(clip)
    vae = P.train_vae(train, smoke_plan.vae, progress=False)
    records = []
    unet = P.train_t2v_unet(train, vae, text, tok, smoke_plan.t2v, seed=0, eval_corpus=valid,
                            log=records.append, progress=False)
    again = P.train_t2v_unet(train, vae, text, tok, smoke_plan.t2v, seed=0, progress=False)
    assert _same(_state(unet), _state(again))
    assert unet.config.cross_attention_dim == text.config.hidden_size
    assert len(unet.down_blocks) == 4 and len(unet.up_blocks) == 4
    evals = [r for r in records if "eval_caption" in r]
    assert [r["step"] for r in evals if "step" in r] == [0, 1, 2]  # EVAL_POINTS spread over 2 steps
    assert {"eval_caption", "eval_empty", "eval_other_caption"} <= set(evals[-1])
    # The saved weights are the moving average, not the last online weights.
    assert all(not p.requires_grad for p in unet.parameters())


def test_encode_prompts_uses_full_padded_sequence(smoke_corpora, smoke_tokenizers):
    tok = smoke_tokenizers[0]
    clip = P.build_clip(tok)
    emb = P.encode_prompts(P.clip_text_tower(clip), tok, ["the red circle", ""])
    assert emb.shape == (2, tok.model_max_length, clip.config.text_config.hidden_size)


def test_train_roberta_returns_base_model(smoke_corpora, smoke_tokenizers, smoke_plan):
    train, _ = smoke_corpora
    tok = smoke_tokenizers[1]
    a = P.train_roberta(train, tok, smoke_plan.roberta, seed=0, progress=False)
    b = P.train_roberta(train, tok, smoke_plan.roberta, seed=0, progress=False)
    assert type(a).__name__ == "RobertaModel" and _same(_state(a), _state(b))
    out = a(**tok(["the small red circle"], return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == a.config.hidden_size


def test_mask_tokens_targets(smoke_tokenizers):
    tok = smoke_tokenizers[1]
    batch = tok(["the red circle", "a small blue square moving left and a cyan star"], padding=True,
                return_special_tokens_mask=True, return_tensors="pt")
    special = batch.special_tokens_mask.bool() | ~batch.attention_mask.bool()
    g = torch.Generator().manual_seed(0)
    inputs, labels = P.mask_tokens(batch.input_ids, special, tok, g)
    target = labels != -100
    assert target.any(dim=1).all()  # every row has at least one target
    assert not (target & special).any()  # specials and padding are never targets
    assert torch.equal(labels[target], batch.input_ids[target])
    assert torch.equal(inputs[~target], batch.input_ids[~target])


def test_contrastive_loss_treats_identical_captions_as_positives():
    texts = ["the red circle", "the red circle", "a blue star"]
    logits = torch.tensor([[10.0, 10.0, -10.0], [10.0, 10.0, -10.0], [-10.0, -10.0, 10.0]])
    # Perfect scores: the only loss left is the split of probability between the two duplicates,
    # which the soft targets expect.
    assert P.contrastive_loss(logits, texts).item() == pytest.approx((2 * math.log(2)) / 3, abs=1e-4)
    wrong = logits[:, [2, 1, 0]]
    assert P.contrastive_loss(wrong, texts) > P.contrastive_loss(logits, texts) + 1


def test_plan_for_budget_scales_steps():
    full = P.plan_for_budget(P.DEFAULT_MINUTES)
    half = P.plan_for_budget(P.DEFAULT_MINUTES / 2)
    assert full == P.PretrainPlan()
    assert half.t2v.steps == round(full.t2v.steps / 2) and half.clip.batch_size == full.clip.batch_size
    assert P.plan_for_budget(0.001).vae.steps == P.MIN_STAGE_STEPS
    with pytest.raises(ConfigError):
        P.plan_for_budget(0)
