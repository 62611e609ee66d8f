"""Benchmark-vocabulary tokenizers: every word is one token, whatever the words share."""
from vdit.mini.data import SCENE_WORDS, vocabulary
from vdit.models.tokenizers import build_mini_clip_tokenizer, build_mini_roberta_tokenizer, learn_merges


def test_learned_merges_make_every_word_one_symbol():
    words = [list("and"), list("triangle"), list("an"), list("a")]
    merges = learn_merges(words)
    # Replaying the merges by rank (what BPE does at encoding time) yields one symbol per word.
    for word in words:
        symbols = list(word)
        while len(symbols) > 1:
            ranked = [(merges.index(p), i) for i, p in enumerate(zip(symbols, symbols[1:])) if p in merges]
            assert ranked, (word, symbols)
            _, i = min(ranked)
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        assert symbols == ["".join(word)]
    assert learn_merges(words) == merges  # deterministic


def test_every_benchmark_word_is_one_token():
    words = vocabulary()
    assert {"triangle", "and", "cyan", "purple", "above", *SCENE_WORDS} <= set(words)
    clip = build_mini_clip_tokenizer(words)
    rob = build_mini_roberta_tokenizer(words)
    for w in words:
        assert len(clip(w, add_special_tokens=False).input_ids) == 1, w
        assert len(rob(" " + w, add_special_tokens=False).input_ids) == 1, w
        assert len(rob(w, add_special_tokens=False).input_ids) == 1, w
    text = "the large triangle to the left of the cyan star"
    assert len(clip(text).input_ids) == len(text.split()) + 2
    assert clip.model_max_length == 77 and rob.mask_token_id == len(rob) - 1
    # Words outside the vocabulary still encode, byte by byte.
    assert len(clip("zebra", add_special_tokens=False).input_ids) > 1
