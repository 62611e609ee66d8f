"""Byte-level BPE tokenizers (CLIP and RoBERTa flavours) in which every benchmark word is one token.

`build_clip_tokenizer(words)` / `build_roberta_tokenizer(words)` (the tokenizers of the test kit,
`vdit.testing`, and of `vdit.models.foundation.build_foundation_random`) add, per word, the left-to-right
merges that assemble it. BPE applies merges by rank over the whole word, so a pair from an earlier word
can pre-empt a later word's chain: with the benchmark's vocabulary, "and" ranks (a, n) before
"triangle"'s (tri, a), and "triangle" ends as six tokens. Here the merges are *learned* as BPE learns them (repeatedly merge the most frequent
adjacent pair over the word list until every word is one symbol); applying learned merges by rank
reproduces the learning-time segmentation of every listed word, so each word becomes exactly one token.
`clip_tokenizer_from_merges` / `roberta_tokenizer_from_merges` assemble a tokenizer from any merge list
(every byte is a token, then one token per merge, with the real models' special tokens);
`build_mini_clip_tokenizer` / `build_mini_roberta_tokenizer` (the miniature world's, `vdit mini pretrain`)
use learned merges.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

CLIP_WORD_END = "</w>"
ROBERTA_SPACE = "\u0120"  # byte-level BPE's printable stand-in for a leading space ("Ġ")
CLIP_MAX_LENGTH = 77
ROBERTA_MAX_LENGTH = 128


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-character map of byte-level BPE (GPT-2 / CLIP / RoBERTa)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def clip_tokenizer_from_merges(merges: Sequence[tuple[str, str]], max_length: int = CLIP_MAX_LENGTH):
    """CLIPTokenizer: start/end tokens, every byte with and without the word-end mark, one token per merge."""
    from transformers import CLIPTokenizer

    base = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in ["<|startoftext|>", "<|endoftext|>"] + base + [c + CLIP_WORD_END for c in base]:
        vocab.setdefault(tok, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = CLIPTokenizer(vocab=vocab, merges=list(merges))
    tok.model_max_length = max_length
    return tok


def roberta_tokenizer_from_merges(merges: Sequence[tuple[str, str]], max_length: int = ROBERTA_MAX_LENGTH):
    """RobertaTokenizer: <s> <pad> </s> <unk>, every byte, one token per merge, then <mask>."""
    from transformers import RobertaTokenizer

    vocab: dict[str, int] = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in bytes_to_unicode().values():
        vocab.setdefault(c, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<mask>"] = len(vocab)
    tok = RobertaTokenizer(vocab=vocab, merges=list(merges))
    tok.model_max_length = max_length
    return tok


def _merge_pair(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def learn_merges(words: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """BPE merges learned until every word (a sequence of initial symbols) is one symbol. Ties between
    equally frequent pairs go to the lexicographically smallest pair (deterministic)."""
    seqs = [list(w) for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        counts = Counter(pair for s in seqs for pair in zip(s, s[1:]))
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        seqs = [_merge_pair(s, best) for s in seqs]


def _clip_symbols(word: str) -> list[str]:
    chars = list(word)
    chars[-1] += CLIP_WORD_END
    return chars


def build_mini_clip_tokenizer(words: Sequence[str], max_length: int = CLIP_MAX_LENGTH):
    """CLIPTokenizer over bytes + learned merges of `words` (lower-case words, no spaces)."""
    return clip_tokenizer_from_merges(learn_merges([_clip_symbols(w) for w in words]), max_length)


def build_mini_roberta_tokenizer(words: Sequence[str], max_length: int = ROBERTA_MAX_LENGTH):
    """RobertaTokenizer over bytes + learned merges of `words`, with and without a leading space."""
    merges = learn_merges([list(ROBERTA_SPACE + w) for w in words] + [list(w) for w in words])
    return roberta_tokenizer_from_merges(merges, max_length)


# Words the tiny tokenizers know as whole tokens (the generated benchmark's vocabulary and a few more).
DEFAULT_WORDS = (
    "a the of and is in on to with left right up down moving small large big red green blue yellow "
    "purple orange white black circle square triangle star diamond cross shape object person dog "
    "above below near far next top bottom fast slow that which one"
).split()


def _word_merges(words: list[str], suffix: str) -> list[tuple[str, str]]:
    """Left-to-right merges that assemble each word into one token (`suffix` marks a word end)."""
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in words:
        pieces = list(word)
        pieces[-1] = pieces[-1] + suffix
        current = pieces[0]
        for piece in pieces[1:]:
            pair = (current, piece)
            current = current + piece
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
    return merges


def build_clip_tokenizer(words: list[str] | tuple[str, ...] = DEFAULT_WORDS, max_length: int = 77):
    """CLIPTokenizer over bytes + per-word left-to-right merges of `words` (lower-case words, no spaces)."""
    merges = _word_merges(list(words), CLIP_WORD_END)
    return clip_tokenizer_from_merges(merges, max_length)


def build_roberta_tokenizer(words: list[str] | tuple[str, ...] = DEFAULT_WORDS, max_length: int = 128):
    """RobertaTokenizer over bytes + per-word left-to-right merges of `words`, with a leading space too."""
    # RoBERTa marks a leading space with "Ġ" (byte 0x20 mapped); words after the first carry it.
    merges = _word_merges([ROBERTA_SPACE + w for w in words] + list(words), "")
    return roberta_tokenizer_from_merges(merges, max_length)
