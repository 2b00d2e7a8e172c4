"""Byte-level BPE, written out: the tokenizer of GPT-2, small enough to read top to bottom.

A language model sees token ids, not characters. Characters make long sequences (one id per
letter); whole words make a huge vocabulary that still misses new words. Byte pair encoding
(Sennrich et al., 2016; byte-level in GPT-2, Radford et al., 2019) lands in between:

1. Start from the 256 byte values: every text, in any script, is some sequence of them.
2. Count every pair of neighbouring tokens in the training text and merge the most frequent pair
   into a new token (`t` + `h` → `th`, then `th` + `e` → `the`, ...).
3. Repeat until the vocabulary has `vocab_size` tokens. The list of merges *is* the tokenizer.

Encoding a new text replays the merges in the order they were learned; decoding concatenates the
tokens' bytes. Before counting, GPT-2 cuts the text into chunks with a regular expression (words
with their leading space, numbers, runs of punctuation, whitespace), so that no token spans two
words and `dog.`, `dog!`, `dog?` don't each become a token.

Two things make training fast enough in Python (a vocabulary of 512 on 1 MB of Shakespeare in
about a second): each distinct chunk is counted once, weighted by how often it occurs, and after a
merge only the chunks that held the merged pair have their pair counts updated.

The result matches Hugging Face `tokenizers` (`models.BPE` + `pre_tokenizers.ByteLevel`, trained
by `trainers.BpeTrainer` on the same text): the same chunks, the same counts, the same rule for
ties (the most frequent pair; among equals, the smaller pair of ids), and the same handling of a
merge whose bytes are already a token (it reuses that token's id). Only the ids of the 256
bytes are ordered differently, so equal counts may be merged in another order: on Shakespeare
and on news text the merges are the same set and held-out text gets exactly as many tokens
(tests/test_bpe.py).
Used by language/201/transformers to tokenize Shakespeare for a GPT.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import regex

Pair = tuple[int, int]

# GPT-2's pre-tokeniser (also Hugging Face's ByteLevel(use_regex=True)): contractions, letters with
# an optional leading space, numbers likewise, other symbols likewise, then whitespace — a run of
# spaces gives its last space to the word that follows (`\s+(?!\S)`).
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CHUNKS = regex.compile(GPT2_SPLIT)


def chunks(text: str) -> list[str]:
    """The pieces BPE works within: no merge ever crosses from one chunk into the next."""
    return CHUNKS.findall(text)


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """`ids` with every occurrence of `pair`, left to right, replaced by `new_id`."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BytePairTokenizer:
    """A byte-level BPE tokenizer: `train` it on text, then `encode`, `decode`, `save`, `load`."""

    def __init__(self, merges: Sequence[Pair] = ()):
        self.vocab: list[bytes] = [bytes([b]) for b in range(256)]  # token id → its bytes
        self.ids: dict[bytes, int] = {token: i for i, token in enumerate(self.vocab)}
        self.merges: dict[Pair, tuple[int, int]] = {}  # pair → (rank, id of the merged token)
        self._cache: dict[str, list[int]] = {}  # chunk → its ids: text repeats its words
        for pair in merges:
            self._add(pair)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _add(self, pair: Pair) -> int:
        """Record the merge of `pair`; the merged token's id (new, or the id of equal bytes)."""
        token = self.vocab[pair[0]] + self.vocab[pair[1]]
        if token not in self.ids:  # `a`+`bc` after `ab`+`c`: the same bytes, the same token
            self.ids[token] = len(self.vocab)
            self.vocab.append(token)
        self.merges[pair] = (len(self.merges), self.ids[token])
        self._cache.clear()
        return self.ids[token]

    # -- training ----------------------------------------------------------------------------------
    def train(self, text: str, vocab_size: int) -> BytePairTokenizer:
        """Learn merges on `text` until the vocabulary holds `vocab_size` tokens (or no pair is
        left to merge); merges learned before are kept and built on. Returns self."""
        # Each distinct chunk once, as token ids (its bytes, unless merges exist), with how often
        # it occurs.
        counted = Counter(chunks(text))
        words = [self._encode_chunk(chunk.encode("utf-8")) for chunk in counted]
        weights = list(counted.values())

        # How often each pair occurs in the text, and which words hold it.
        counts: Counter[Pair] = Counter()
        holders: defaultdict[Pair, set[int]] = defaultdict(set)
        for w, word in enumerate(words):
            for pair in pairwise(word):
                counts[pair] += weights[w]
                holders[pair].add(w)

        # A heap of (−count, pair): popping gives the most frequent pair, and among equals the
        # smallest. A count that changed is pushed again, so an entry whose count is no longer
        # the pair's is stale and skipped.
        heap = [(-n, pair) for pair, n in counts.items()]
        heapq.heapify(heap)
        while self.vocab_size < vocab_size and heap:
            n, pair = heapq.heappop(heap)
            if -n != counts[pair]:
                continue
            new_id = self._add(pair)
            changed: set[Pair] = set()
            for w in holders.pop(pair):
                word, weight = words[w], weights[w]
                # Take the word's pairs out of the counts, merge, put the new pairs in.
                for old in pairwise(word):
                    counts[old] -= weight
                    changed.add(old)
                words[w] = word = merge(word, pair, new_id)
                for new in pairwise(word):
                    counts[new] += weight
                    holders[new].add(w)
                    changed.add(new)
            for other in changed:
                if counts[other] > 0:
                    heapq.heappush(heap, (-counts[other], other))
        return self

    # -- using it ----------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`: each chunk's bytes, merged in the order the merges were learned."""
        ids: list[int] = []
        for chunk in chunks(text):
            if chunk not in self._cache:
                self._cache[chunk] = self._encode_chunk(chunk.encode("utf-8"))
            ids += self._cache[chunk]
        return ids

    def _encode_chunk(self, data: bytes) -> list[int]:
        ids = list(data)
        while len(ids) > 1:
            # The earliest-learned merge among the pairs present; none left → done.
            ranked = [(self.merges[p][0], p) for p in pairwise(ids) if p in self.merges]
            if not ranked:
                break
            _, pair = min(ranked)
            ids = merge(ids, pair, self.merges[pair][1])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`. A sequence cut inside a multi-byte character decodes with U+FFFD."""
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    # -- with the run ------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """The merges in order, as JSON: all a run needs to tokenize again."""
        record = {"type": "byte-level BPE", "pattern": GPT2_SPLIT, "merges": list(self.merges)}
        path.write_text(json.dumps(record))

    @classmethod
    def load(cls, path: Path) -> BytePairTokenizer:
        record = json.loads(path.read_text())
        if record.get("pattern") != GPT2_SPLIT:
            raise ValueError(f"{path} was made with another pre-tokeniser than GPT-2's")
        return cls([(a, b) for a, b in record["merges"]])
