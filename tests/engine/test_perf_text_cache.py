"""Per-sentence caches of the frozen text encoders (issue 17, vdit.models.text_cache).

References are the Hugging Face encoders called directly, as spec 2.2 / 3.1 describe them (tokenise,
run, last hidden state), not vdit's encoding path. Cached outputs equal them: bit for bit for one
sentence (the video recipes' batch), within float rounding for a padded batch of several. The caches
stay unused while an encoder has dropout on (`official_frozen_dropout`) or is trained; the trainer
attaches them accordingly.
"""
from __future__ import annotations

import pytest
import torch

from _batch_helpers import box_batch
from vdit.errors import ConfigError
from vdit.models.text_cache import TextFeatureCache

SENTENCES = ["the red circle moving left", "a small square", "the big blue triangle at the top right corner"]


def test_lru_eviction_hits_and_key():
    cache = TextFeatureCache(2)
    calls: list[str] = []

    def encode(text: str):
        calls.append(text)
        return (torch.full((len(text),), float(len(calls))),)

    dev = torch.device("cpu")
    first = cache.get_or_compute(["a", "bb", "a"], encode, dev)
    assert calls == ["a", "bb"] and (cache.hits, cache.misses) == (1, 2)
    assert torch.equal(first[0][0], first[2][0])
    cache.get_or_compute(["ccc"], encode, dev)  # evicts the least recently used: "bb"
    cache.get_or_compute(["a", "bb"], encode, dev)
    assert calls == ["a", "bb", "ccc", "bb"] and len(cache) == 2
    cache.get_or_compute(["a"], encode, dev, key_extra=(torch.bfloat16,))  # another key: computed again
    assert calls[-1] == "a"
    with pytest.raises(ConfigError):
        TextFeatureCache(0)


@pytest.fixture(scope="module")
def model(tiny_root):
    from vdit.config import tiny_config
    from vdit.models.vdit import VDIT

    torch.manual_seed(0)
    return VDIT.from_config(tiny_config(tiny_root)).train()


def _roberta_reference(model, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec 3.1: tokenizer padded to the longest, RoBERTa last hidden state, pad = attention_mask != 1."""
    enc = model.text_encoder.tokenizer(texts, padding="longest", return_tensors="pt")
    with torch.no_grad():
        out = model.text_encoder.text_backbone(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    return out.last_hidden_state, enc["attention_mask"] != 1


def _t2v_reference(model, texts: list[str]) -> torch.Tensor:
    """Spec 2.2: CLIP tokenizer padded to max length (77), truncated; no attention mask; output [0]."""
    tok = model.backbone.tokenizer
    ids = tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    with torch.no_grad():
        return model.backbone.t2v_text_encoder(ids)[0]


def test_cached_text_features_equal_the_encoders(model):
    model.text_encoder.feature_cache = TextFeatureCache(16)
    model.backbone.prompt_cache = TextFeatureCache(16)
    try:
        for _ in range(2):  # a miss, then a hit
            words, pad = model.text_encoder([SENTENCES[0]], torch.device("cpu"))
            ref_words, ref_pad = _roberta_reference(model, [SENTENCES[0]])
            assert torch.equal(words, ref_words) and torch.equal(pad, ref_pad)
            assert torch.equal(model.backbone.encode_prompt_text([SENTENCES[0]]), _t2v_reference(model, [SENTENCES[0]]))
        assert model.text_encoder.feature_cache.hits == 1 and model.backbone.prompt_cache.hits == 1

        words, pad = model.text_encoder(SENTENCES, torch.device("cpu"))  # padded batch of three lengths
        ref_words, ref_pad = _roberta_reference(model, SENTENCES)
        assert torch.equal(pad, ref_pad) and pad.any()
        torch.testing.assert_close(words[~pad], ref_words[~ref_pad], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.backbone.encode_prompt_text(SENTENCES), _t2v_reference(model, SENTENCES),
                                   atol=1e-5, rtol=1e-5)
        # a cached entry does not depend on its batch companions: alone it is the same tensor
        alone, _ = model.text_encoder([SENTENCES[1]], torch.device("cpu"))
        assert torch.equal(words[1, : alone.shape[1]], alone[0])
    finally:
        model.text_encoder.feature_cache = model.backbone.prompt_cache = None


def test_training_outputs_unchanged_by_the_cache(model):
    from vdit.training import TrainingWrapper

    batch = box_batch(torch.randn(1, 2, 3, 64, 64, generator=torch.Generator().manual_seed(3)), [SENTENCES[2]])
    step = TrainingWrapper.from_model(model)
    outs = []
    for cached in (False, True, True):
        if cached:
            model.text_encoder.feature_cache = model.text_encoder.feature_cache or TextFeatureCache(4)
            model.backbone.prompt_cache = model.backbone.prompt_cache or TextFeatureCache(4)
        torch.manual_seed(5)  # same VAE posterior sample
        with torch.no_grad():
            outs.append(step.matched_outputs(batch))
    model.text_encoder.feature_cache = model.backbone.prompt_cache = None
    for out in outs[1:]:  # a miss, then a hit: both bit-identical to the uncached forward
        for key in ("pred_logits", "pred_boxes", "pred_masks", "pred_masks_low", "matched_query"):
            assert torch.equal(out[key], outs[0][key]), key


def test_cache_unused_with_dropout_or_a_trained_encoder(tiny_root):
    from vdit.config import tiny_config
    from vdit.engine.optim import set_text_encoder_trainable
    from vdit.models.vdit import VDIT

    cfg = tiny_config(tiny_root)
    cfg.backbone.official_frozen_dropout = True
    torch.manual_seed(0)
    noisy = VDIT.from_config(cfg).train()
    noisy.text_encoder.feature_cache, noisy.backbone.prompt_cache = TextFeatureCache(4), TextFeatureCache(4)
    noisy.text_encoder([SENTENCES[0]], torch.device("cpu"))
    noisy.backbone.encode_prompt_text([SENTENCES[0]])
    assert len(noisy.text_encoder.feature_cache) == 0 and len(noisy.backbone.prompt_cache) == 0

    torch.manual_seed(0)
    trained = VDIT.from_config(tiny_config(tiny_root)).train()
    set_text_encoder_trainable(trained, True)
    trained.text_encoder.feature_cache = TextFeatureCache(4)
    words, _ = trained.text_encoder([SENTENCES[0]], torch.device("cpu"))
    assert words.requires_grad and len(trained.text_encoder.feature_cache) == 0
    trained.eval()  # eval mode alone does not make an encoder being trained cacheable
    trained.text_encoder([SENTENCES[0]], torch.device("cpu"))
    assert len(trained.text_encoder.feature_cache) == 0

    set_text_encoder_trainable(trained, False)  # frozen again: cached from here on, ...
    trained.text_encoder([SENTENCES[0]], torch.device("cpu"))
    assert len(trained.text_encoder.feature_cache) == 1
    set_text_encoder_trainable(trained, True)  # ... and forgotten once its weights may change
    assert len(trained.text_encoder.feature_cache) == 0


def test_autocast_outputs_are_cached_apart(model):
    model.backbone.prompt_cache = TextFeatureCache(4)
    try:
        plain = model.backbone.encode_prompt_text([SENTENCES[0]])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.backbone.encode_prompt_text([SENTENCES[0]])
        assert model.backbone.prompt_cache.misses == 2 and len(model.backbone.prompt_cache) == 2
        assert torch.equal(model.backbone.encode_prompt_text([SENTENCES[0]]), plain)
        assert not torch.equal(low.float(), plain)  # bf16 matmuls: another value, hence another entry
    finally:
        model.backbone.prompt_cache = None
