"""vision/201/image-to-text's judges: the COCO caption metrics, and the two captioners without a
decoder that every learnt one must beat.

The metrics are pycocoevalcap's, the code behind every captioning paper's table: BLEU-1…4 (n-gram
precision with a brevity penalty), METEOR (unigram matches with stems and synonyms, Java),
ROUGE-L (longest common subsequence) and CIDEr (n-grams weighted by TF-IDF over the test
references: what this image's describers said and others' did not). Captions are first
tokenised by Stanford's PTBTokenizer (Java too); where Java is missing they are lower-cased and
split on punctuation here, and METEOR is left out rather than guessed.

The baselines read the same encoder's features: nearest-neighbour retrieval (Devlin et al. 2015)
answers with a caption of the most similar training image — among that image's captions (or its
`k` nearest images'), the one that agrees most with the others — and the floor answers every
image with the training set's most frequent caption.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F

METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")


def has_java() -> bool:
    return shutil.which("java") is not None


def simple_tokens(caption: str) -> str:
    """Lower case, punctuation dropped (PTBTokenizer's result on plain captions, near enough)."""
    return " ".join(re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", caption.lower()))


def caption_scores(
    generated: Sequence[str], references: Sequence[Sequence[str]], *, java: bool | None = None
) -> dict[str, float]:
    """Corpus-level BLEU-1…4, METEOR, ROUGE-L and CIDEr of one generated caption per image
    against its references, by pycocoevalcap (without Java: no METEOR, simple tokens)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    java = has_java() if java is None else java
    refs = {i: list(r) for i, r in enumerate(references)}
    hyps = {i: [g] for i, g in enumerate(generated)}
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tokenizer = PTBTokenizer()
        refs = tokenizer.tokenize({i: [{"caption": c} for c in r] for i, r in refs.items()})
        hyps = tokenizer.tokenize({i: [{"caption": h[0]}] for i, h in hyps.items()})
    else:
        refs = {i: [simple_tokens(c) for c in r] for i, r in refs.items()}
        hyps = {i: [simple_tokens(h[0])] for i, h in hyps.items()}
    bleu, _ = Bleu(4).compute_score(refs, hyps, verbose=0)
    scores = {f"bleu_{n + 1}": float(b) for n, b in enumerate(bleu)}
    scores["rouge_l"] = float(Rouge().compute_score(refs, hyps)[0])
    scores["cider"] = float(Cider().compute_score(refs, hyps)[0])
    if java:
        from pycocoevalcap.meteor.meteor import Meteor

        scores["meteor"] = float(Meteor().compute_score(refs, hyps)[0])
    return scores


# -- captioners without a decoder -----------------------------------------------------------------
def ngrams(caption: str, n: int) -> Counter:
    words = simple_tokens(caption).split()
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def agreement(a: str, b: str) -> float:
    """How much two captions say alike: their shared unigrams and bigrams, each order's overlap
    divided by the geometric mean of the two counts (a cosine of n-gram counts, unweighted)."""
    total = 0.0
    for n in (1, 2):
        x, y = ngrams(a, n), ngrams(b, n)
        if x and y:
            total += sum((x & y).values()) / (sum(x.values()) * sum(y.values())) ** 0.5
    return total / 2


def consensus(candidates: Sequence[str]) -> str:
    """The candidate that agrees most, on average, with the others (the first of equals)."""
    if len(candidates) == 1:
        return candidates[0]
    scores = [
        sum(agreement(c, o) for j, o in enumerate(candidates) if j != i)
        for i, c in enumerate(candidates)
    ]
    return candidates[max(range(len(candidates)), key=scores.__getitem__)]


def nearest_neighbours(train: torch.Tensor, test: torch.Tensor, k: int) -> torch.Tensor:
    """Indices "test k" of each test vector's k most cosine-similar training vectors."""
    similarity = F.normalize(test.float(), dim=1) @ F.normalize(train.float(), dim=1).T
    return similarity.topk(k, dim=1).indices


def nearest_captions(
    train: torch.Tensor, captions: Sequence[Sequence[str]], test: torch.Tensor, k: int = 1
) -> list[str]:
    """Nearest-neighbour retrieval: for each test image (pooled features "n d"), the consensus
    caption of its k most similar training images' captions."""
    return [
        consensus([c for j in row for c in captions[j]])
        for row in nearest_neighbours(train, test, k).tolist()
    ]


def most_frequent_caption(captions: Sequence[Sequence[str]]) -> str:
    """The training set's most frequent caption (lower case, tokens as the metrics see them),
    ties to the first seen; written as first seen."""
    seen: dict[str, str] = {}
    counts: Counter = Counter()
    for caption in (c for per_image in captions for c in per_image):
        key = simple_tokens(caption)
        seen.setdefault(key, caption)
        counts[key] += 1
    return seen[counts.most_common(1)[0][0]]
