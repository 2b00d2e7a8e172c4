"""The byte-level BPE of language/201, by hand and against Hugging Face `tokenizers`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from deepscape.data.text import gensim_test_data
from deepscape.labs.language.l201_bpe import BytePairTokenizer, chunks

TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"
UNICODE = "Ünïcödé: naïve café — “quotes”, 東京 and Ελληνικά 🎭🎭, 1234567 don't\n\n  tabs\tend "


def byte_chars() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte (`Ġ` for a space), as `tokenizers` shows them."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(others)}


def test_the_most_frequent_pair_is_merged_first_and_ties_go_to_the_smaller_pair():
    # Wikipedia's example: aa (4 times) first; then ab and Za tie at 2, and ab = (97, 98) is the
    # smaller pair; then Z+Y (aaab) twice; then four pairs seen once: ac = (97, 99) is smallest.
    tokenizer = BytePairTokenizer().train("aaabdaaabac", vocab_size=260)
    a, b, c = 97, 98, 99
    assert list(tokenizer.merges) == [(a, a), (a, b), (256, 257), (a, c)]
    assert tokenizer.vocab[258] == b"aaab"
    assert tokenizer.encode("aaabdaaabac") == [258, ord("d"), 258, 259]


def test_a_merge_of_bytes_already_in_the_vocabulary_reuses_their_id():
    a, b, c = 97, 98, 99
    tokenizer = BytePairTokenizer([(a, b), (256, c), (b, c), (a, 258)])  # ab, abc, bc, a+bc
    assert tokenizer.vocab[256:] == [b"ab", b"abc", b"bc"]
    assert tokenizer.merges[(a, 258)] == (3, 257) and tokenizer.vocab_size == 259


def test_chunks_are_those_of_tokenizers_byte_level_pre_tokenizer():
    ours = ["".join(byte_chars()[b] for b in chunk.encode()) for chunk in chunks(UNICODE)]
    theirs = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    assert ours == [piece for piece, _ in theirs.pre_tokenize_str(UNICODE)]


def test_round_trip_on_unicode_and_unseen_text(tmp_path: Path):
    tokenizer = BytePairTokenizer().train(UNICODE * 3, vocab_size=300)
    assert tokenizer.vocab_size == 300
    for text in (UNICODE, "never seen: ß ∑ 😀 \x00", ""):
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert len(tokenizer.encode(UNICODE)) < 0.6 * len(UNICODE.encode())  # 44 merges learned
    assert tokenizer.decode(list("🎭".encode())[:2]) == "\ufffd"  # half a character
    tokenizer.save(tmp_path / "bpe.json")
    again = BytePairTokenizer.load(tmp_path / "bpe.json")
    assert again.merges == tokenizer.merges and again.encode(UNICODE) == tokenizer.encode(UNICODE)


def test_a_saved_tokenizer_made_with_another_pattern_is_refused(tmp_path: Path):
    (tmp_path / "bpe.json").write_text(json.dumps({"pattern": r"\w+", "merges": []}))
    with pytest.raises(ValueError, match="another pre-tokeniser"):
        BytePairTokenizer.load(tmp_path / "bpe.json")


def hugging_face_bpe(text: str, vocab_size: int) -> Tokenizer:
    """`tokenizers`' byte-level BPE trained as ours is: all 256 bytes, no special tokens, every
    pair mergeable (min_frequency=0), the whole text as one sequence."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tokenizer.train_from_iterator([text], trainer=trainer)
    return tokenizer


def compare(train: str, held_out: str, vocab_size: int) -> dict:
    ours = BytePairTokenizer().train(train, vocab_size)
    theirs = hugging_face_bpe(train, vocab_size)
    shown = byte_chars()
    merges = [tuple("".join(shown[b] for b in ours.vocab[i]) for i in pair) for pair in ours.merges]
    their_merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        for m in json.loads(theirs.to_str())["model"]["merges"]
    ]
    ours_n, theirs_n = len(ours.encode(held_out)), len(theirs.encode(held_out).ids)
    figures = {
        "merges": len(merges),
        "same merges": set(merges) == set(their_merges),
        "same order": merges == their_merges,
        "held-out tokens": (ours_n, theirs_n),
        "ratio": ours_n / theirs_n,
    }
    print(figures)
    return figures


def test_lee_corpus_merges_and_token_counts_match_tokenizers():
    text = gensim_test_data("lee_background.cor").read_text()  # 360 KB of news
    figures = compare(text[:300_000], text[300_000:], vocab_size=512)
    # Equal counts may be merged in another order (the 256 bytes' ids are ordered differently
    # there), but the merges learned are the same, and so is every count of tokens.
    assert figures["merges"] == 256 and figures["same merges"]
    assert abs(figures["ratio"] - 1) < 0.01


@pytest.mark.slow
@pytest.mark.skipif(not TINY.is_file(), reason=f"no {TINY}")
def test_tiny_shakespeare_vocabulary_1024_matches_tokenizers():
    text = TINY.read_text()
    start = time.perf_counter()
    BytePairTokenizer().train(text[:1_000_000], vocab_size=512)
    print(f"vocab 512 on 1 MB: {time.perf_counter() - start:.1f} s")
    figures = compare(text[:1_000_000], text[1_000_000:], vocab_size=1024)
    assert figures["merges"] == 768 and figures["same merges"]
    assert abs(figures["ratio"] - 1) < 0.01


def test_training_again_builds_on_the_merges_learned():
    text = gensim_test_data("lee_background.cor").read_text()[:50_000]
    at_once = BytePairTokenizer().train(text, vocab_size=400)
    in_two_steps = BytePairTokenizer().train(text, vocab_size=300).train(text, vocab_size=400)
    assert in_two_steps.merges == at_once.merges
