"""Word vectors learnt from context: skip-gram with negative sampling (Mikolov et al., 2013).

Every word has two vectors: an input vector (the embedding kept at the end) and an output vector
(used only to score contexts). For each (centre, context) pair of the text, training pushes
σ(in[centre] · out[context]) towards 1, and for `negatives` noise words drawn from the unigram
distribution raised to 0.75, σ(in[centre] · out[noise]) towards 0. Words seen in the same contexts
are pulled towards the same output vectors, so their input vectors end up close: meaning from
context. Frequent words are subsampled (an occurrence of a word of frequency f is kept with
probability (√(f/t) + 1) · t/f, word2vec's formula), which speeds training and sharpens the rest.

Both embeddings are sparse (`nn.Embedding(sparse=True)`): a batch touches a few thousand rows of
the vocabulary, and only those are updated — by word2vec's plain SGD (`sparse_sgd_step`), or by
`torch.optim.SparseAdam` (Adam's moments kept for the touched rows only), which learns far more
per pass: rare words get steps as large as frequent ones.

One departure from word2vec, for speed: noise words are drawn once for a group of `share`
consecutive (shuffled) pairs instead of once per pair, so the noise scores of a group are one
small matrix product (B/share of them in a batched matmul) rather than `share` separate gathers
of k vectors. Each pair still meets k noise words; on a CPU this makes training ~2× faster at
the same quality (`share=1` is word2vec's way). The idea comes from Ji et al. (2016), who share
noise words among the contexts of one centre word.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepscape.data.corpus import google_analogies, simlex999, wordsim353
from deepscape.models.glove import WordVectors


class LogSigmoid(torch.autograd.Function):
    """log σ(x), with gradient 1 − σ(x): word2vec's whole update rule (`F.logsigmoid` computes
    the same, several times slower on CPUs where its log1p is not vectorised)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x)
        ctx.save_for_backward(s)
        return torch.log(s.clamp(min=1e-30))  # −69 where σ(x) underflows (x < −69)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (s,) = ctx.saved_tensors
        return grad * (1 - s)


class SkipGram(nn.Module):
    """Input and output embeddings of a vocabulary, and the negative-sampling loss."""

    def __init__(self, *, vocab_size: int, dim: int = 100, sparse: bool = True):
        super().__init__()
        self.inputs = nn.Embedding(vocab_size, dim, sparse=sparse)
        self.outputs = nn.Embedding(vocab_size, dim, sparse=sparse)
        # word2vec's start: small random input vectors, output vectors at zero
        nn.init.uniform_(self.inputs.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.outputs.weight)

    def forward(
        self, centre: torch.Tensor, context: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """Loss of each pair, −log σ(u·v) − Σ log σ(−u·n): centre "b", context "b", and noise
        "g k" shared by groups of b/g consecutive pairs (b a multiple of g; g = b: a draw per
        pair) -> "b"."""
        groups, k = noise.shape
        rows = self.outputs(torch.cat([context, noise.flatten()]))  # one lookup: (b + g·k) d
        v, n = rows.split([len(context), groups * k])  # b d, (g k) d
        n = n.view(groups, k, -1)  # g k d
        u = self.inputs(centre)  # b d
        positive = (u * v).sum(-1)  # b
        negative = torch.bmm(u.view(groups, -1, u.shape[-1]), n.transpose(1, 2))  # g b/g k
        return -(LogSigmoid.apply(positive) + LogSigmoid.apply(-negative).sum(-1).flatten())

    def vectors(self, words: list[str], rows: torch.Tensor | None = None) -> WordVectors:
        """The input embeddings of `words` (row i for words[i], or rows[i] when given)."""
        weight = self.inputs.weight.detach()
        weight = weight if rows is None else weight[rows]
        return WordVectors(words=words, vectors=weight.cpu().numpy().copy())


@torch.no_grad()
def sparse_sgd_step(model: nn.Module, lr: float) -> None:
    """W[rows] −= lr · ∇W[rows] for the rows the batch used; gradients are cleared after."""
    for weight in model.parameters():
        if weight.grad is not None:
            grad = weight.grad
            weight.index_add_(0, grad._indices()[0], grad._values(), alpha=-lr)
            weight.grad = None


def keep_probability(counts: torch.Tensor, sample: float) -> torch.Tensor:
    """Chance of keeping each occurrence of a word seen `counts` times (word2vec's subsampling:
    (√(f/t) + 1) · t/f with f the word's share of the corpus, t = `sample`; 0 keeps all)."""
    counts = counts.double()
    if sample <= 0:
        return torch.ones_like(counts, dtype=torch.float)
    threshold = sample * counts.sum()
    kept = ((counts / threshold).sqrt() + 1) * threshold / counts.clamp(min=1)
    return kept.clamp(max=1.0).float()


class NoiseSampler:
    """Noise words drawn from the unigram distribution to the power 0.75 (rare words drawn more
    often than their share of the text), through a table as word2vec does: one index per draw."""

    def __init__(self, counts: torch.Tensor, *, power: float = 0.75, table_size: int = 10**7):
        weights = counts.double().pow(power)
        self.probabilities = weights / weights.sum()
        repeats = (self.probabilities * table_size).round().long()
        self.table = torch.repeat_interleave(torch.arange(len(counts)), repeats)

    def __call__(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return self.table[torch.randint(len(self.table), shape, generator=generator)]


def context_pairs(
    ids: torch.Tensor, documents: torch.Tensor, *, window: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre, context) pairs "p" of a token stream "n" whose document ids are `documents` "n":
    each centre draws its reach b from 1..`window` (word2vec's reduced window, which weighs near
    words more) and pairs with the words up to b before and after it in its document."""
    reach = torch.randint(1, window + 1, (len(ids),), generator=generator)
    centres, contexts = [], []
    for offset in range(1, min(window, len(ids) - 1) + 1):
        same = documents[offset:] == documents[:-offset]  # positions i and i + offset
        right = same & (reach[:-offset] >= offset)  # the centre at i reaches i + offset
        left = same & (reach[offset:] >= offset)  # the centre at i + offset reaches i
        centres += [ids[:-offset][right], ids[offset:][left]]
        contexts += [ids[offset:][right], ids[:-offset][left]]
    if not centres:
        return torch.zeros(0, dtype=ids.dtype), torch.zeros(0, dtype=ids.dtype)
    return torch.cat(centres), torch.cat(contexts)


# -- what the vectors know ------------------------------------------------------------------------
def unit_rows(vectors: np.ndarray) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-8)


def similarity_rho(
    vectors: WordVectors, pairs: list[tuple[str, str, float]]
) -> tuple[float, list[tuple[str, str, float]]]:
    """Spearman ρ between human ratings and cosine similarities over the pairs whose two words
    the vectors know, and those pairs (ρ is nan under 3 pairs)."""
    from scipy.stats import spearmanr

    known = [(a, b, s) for a, b, s in pairs if a in vectors and b in vectors]
    if len(known) < 3:
        return float("nan"), known
    first = unit_rows(np.stack([vectors[a] for a, _, _ in known]))
    second = unit_rows(np.stack([vectors[b] for _, b, _ in known]))
    cosines = (first * second).sum(1)
    return float(spearmanr([s for *_, s in known], cosines).statistic), known


def most_frequent(vectors: WordVectors, top: int) -> WordVectors:
    """The `top` first words, in memory (the most frequent, when `vectors` is in that order)."""
    if len(vectors.words) <= top:
        return vectors
    return WordVectors(words=vectors.words[:top], vectors=np.asarray(vectors.vectors[:top]))


def nearest(
    vectors: WordVectors, query: np.ndarray, *, k: int = 5, exclude: tuple[str, ...] = ()
) -> list[tuple[str, float]]:
    """The k words whose vectors have the highest cosine with `query`, `exclude` left out."""
    cosines = unit_rows(vectors.vectors) @ unit_rows(query[None])[0]
    found = []
    for row in np.argsort(-cosines)[: k + len(exclude)]:
        if vectors.words[row] not in exclude:
            found.append((vectors.words[row], round(float(cosines[row]), 3)))
    return found[:k]


def analogy(vectors: WordVectors, a: str, b: str, c: str, *, k: int = 3) -> list[tuple[str, float]]:
    """Words nearest to b − a + c ("a is to b as c is to ?"), the three words left out."""
    unit = unit_rows(np.stack([vectors[a], vectors[b], vectors[c]]))
    return nearest(vectors, unit[1] - unit[0] + unit[2], k=k, exclude=(a, b, c))


def analogy_accuracy(
    vectors: WordVectors,
    questions: list[tuple[str, str, str, str, str]],
    *,
    restrict: int = 30_000,
    batch: int = 1024,
) -> tuple[float, int]:
    """Share of analogies a:b = c:d answered by d = argmax cos(x, b − a + c) over the `restrict`
    most frequent words (the three question words excluded; 3CosAdd, as Mikolov et al. and
    gensim score them), counting only questions whose four words are among them; and how many
    such questions there were. `vectors.words` must be in order of frequency."""
    words = vectors.words[:restrict]
    index = {w: i for i, w in enumerate(words)}
    known = [q[1:] for q in questions if all(w in index for w in q[1:])]
    if not known:
        return float("nan"), 0
    unit = torch.from_numpy(unit_rows(vectors.vectors[: len(words)]))
    ids = torch.tensor([[index[w] for w in q] for q in known])
    correct = 0
    for start in range(0, len(ids), batch):
        a, b, c, d = ids[start : start + batch].T
        scores = (unit[b] - unit[a] + unit[c]) @ unit.T  # q v
        for asked in (a, b, c):
            scores[torch.arange(len(a)), asked] = -torch.inf
        correct += int((scores.argmax(1) == d).sum())
    return correct / len(known), len(known)


def benchmark(vectors: WordVectors, *, analogy_vocab: int = 30_000) -> dict[str, float | int]:
    """WordSim-353 and SimLex-999 ρ, Google-analogy accuracy, and how many pairs and questions
    each was measured on (those whose words `vectors` knows)."""
    wordsim, wordsim_pairs = similarity_rho(vectors, wordsim353())
    simlex, simlex_pairs = similarity_rho(vectors, simlex999())
    accuracy, asked = analogy_accuracy(vectors, google_analogies(), restrict=analogy_vocab)
    return {
        "wordsim353": wordsim,
        "simlex999": simlex,
        "analogy_accuracy": accuracy,
        "wordsim353_pairs": len(wordsim_pairs),
        "simlex999_pairs": len(simlex_pairs),
        "analogy_questions": asked,
    }
