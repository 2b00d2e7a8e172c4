"""Retrieval: cut documents into passages, index them two ways, fuse, and score the rankings.

    passages = chunk_sentences("France", sentences, words=80)   # or chunk_words(…, overlap=20)
    sparse = SparseIndex.build([p.text for p in passages])      # BM25 (bm25s)
    dense = DenseIndex.build(encoder.embed(texts), kind="hnsw", encoder=encoder.name)  # FAISS
    fused = reciprocal_rank_fusion([sparse_ranking, dense_ranking])
    retrieval_scores(rankings, relevant, ks=(1, 5, 10))         # recall@k, MRR, nDCG@10

A sparse index matches words (BM25: rare words that the query and passage share count most,
saturating with repeats, normalised by passage length); how fast a repeated word saturates is
BM25's k1: at the textbook 1.2–2 a passage that repeats a query's rare word three times beats one
that holds it once beside another query word, at k1 near 0 a word counts about once, so covering
more of the query wins. A dense index matches meaning (cosine of
sentence-encoder vectors). FAISS holds the vectors: a flat index compares the query with every
passage (exact), HNSW walks a graph of near neighbours (approximate, much faster at scale), IVF
searches only the clusters nearest the query. Reciprocal rank fusion (Cormack et al. 2009) adds
1 / (60 + rank) over the rankings, so neither retriever's score scale matters.

Both indexes save to a folder and load back without unpickling (bm25s writes JSON and .npy;
FAISS its own format), and a dense index records the encoder that made it: loading one with
another encoder is refused, since its vectors would live in another space.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

DENSE_KINDS = ("flat", "hnsw", "ivf")
RRF_K = 60  # Cormack et al.'s constant: damps the head of each ranking
BM25_K1 = 1.5  # bm25s's default saturation, in the textbook's 1.2–2


class IndexMismatch(ValueError):
    """An index that cannot be used as asked: corrupt, or made with another encoder."""


@dataclass(frozen=True)
class Passage:
    doc: str  # the document it was cut from ("fr", a page title)
    title: str  # the document's title, also written at the head of `text`
    text: str


# -- chunking -------------------------------------------------------------------------------------
def chunk_words(doc: str, title: str, text: str, *, words: int, overlap: int) -> list[Passage]:
    """`text` in windows of `words` words, each starting `words - overlap` after the last: blind
    to sentences (a fact may be cut in two; the overlap is what saves it)."""
    if words < 1 or not 0 <= overlap < words:
        raise ValueError(f"words={words}, overlap={overlap}: give words ≥ 1, 0 ≤ overlap < words")
    tokens = text.split()
    starts = range(0, max(1, len(tokens) - overlap), words - overlap)
    return [Passage(doc, title, f"{title}: {' '.join(tokens[s : s + words])}") for s in starts]


def chunk_sentences(doc: str, title: str, pieces: Sequence[str], *, words: int) -> list[Passage]:
    """Whole `pieces` (sentences, a form's fields) packed into passages of up to `words` words:
    no fact is cut in two, unless a piece alone is longer than a passage (a table flattened into
    one "sentence"), which is cut into windows of `words`."""
    passages, current = [], []
    for piece in (p for whole in pieces for p in _windows(whole, words)):
        if current and len(" ".join([*current, piece]).split()) > words:
            passages.append(Passage(doc, title, f"{title}: {' '.join(current)}"))
            current = []
        current.append(piece)
    if current:
        passages.append(Passage(doc, title, f"{title}: {' '.join(current)}"))
    return passages


def _windows(text: str, words: int) -> list[str]:
    tokens = text.split()
    return [" ".join(tokens[s : s + words]) for s in range(0, len(tokens), words)]


# -- the two indexes -------------------------------------------------------------------------------
class SparseIndex:
    """BM25 over the passages' words (bm25s, English stop words removed); `k1` saturates a word's
    count in a passage (saved with the index)."""

    def __init__(self, bm25: object):
        self.bm25 = bm25

    @classmethod
    def build(cls, texts: Sequence[str], *, k1: float = BM25_K1) -> SparseIndex:
        import bm25s

        bm25 = bm25s.BM25(k1=k1)
        bm25.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False),
                   show_progress=False)  # fmt: skip
        return cls(bm25)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best passages of each query: (indices "q k", scores "q k"), best first."""
        import bm25s

        k = min(k, self.size)
        tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        found, scores = self.bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return found.astype(np.int64), scores

    @property
    def size(self) -> int:
        return int(self.bm25.scores["num_docs"])

    def save(self, folder: Path) -> None:
        self.bm25.save(str(folder))

    @classmethod
    def load(cls, folder: Path) -> SparseIndex:
        import bm25s

        try:
            return cls(bm25s.BM25.load(str(folder)))
        except (OSError, ValueError, KeyError) as error:
            raise IndexMismatch(f"the BM25 index in {folder} cannot be read "
                                f"({type(error).__name__}): build it again") from None  # fmt: skip


@dataclass(frozen=True)
class DenseCard:
    """What a dense index was made with: checked when it is loaded."""

    encoder: str
    dim: int
    size: int
    kind: str


class DenseIndex:
    """Unit-length passage vectors in a FAISS index of inner products (= cosine similarity)."""

    def __init__(self, index: object, card: DenseCard):
        self.index, self.card = index, card

    @classmethod
    def build(
        cls, vectors: torch.Tensor, *, kind: str, encoder: str, hnsw_neighbours: int = 32,
        ivf_lists: int = 0,
    ) -> DenseIndex:  # fmt: skip
        """An index of `vectors` ("n d", unit length). `kind`: flat (exact), hnsw (a graph of
        `hnsw_neighbours` links a node), ivf (`ivf_lists` clusters, default about 4√n)."""
        import faiss

        if kind not in DENSE_KINDS:
            raise ValueError(f"index kind {kind!r}: give one of {', '.join(DENSE_KINDS)}")
        data = np.ascontiguousarray(vectors.float().numpy())
        n, dim = data.shape
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_neighbours, faiss.METRIC_INNER_PRODUCT)
        else:
            lists = ivf_lists or max(1, min(n // 39, round(4 * n**0.5)))  # ≥ 39 points a cluster
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists,
                                       faiss.METRIC_INNER_PRODUCT)  # fmt: skip
            index.train(data)
            index.nprobe = max(2, lists // 8)  # clusters searched a query: the speed/recall knob
        index.add(data)
        return cls(index, DenseCard(encoder=encoder, dim=dim, size=n, kind=kind))

    def search(self, query_vectors: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` nearest passages of each query vector: (indices "q k", cosines "q k")."""
        scores, found = self.index.search(
            np.ascontiguousarray(query_vectors.float().numpy()), min(k, self.card.size)
        )
        return found.astype(np.int64), scores

    def save(self, folder: Path) -> None:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "dense.faiss"))
        (folder / "dense.json").write_text(json.dumps(asdict(self.card), indent=1))

    @classmethod
    def load(cls, folder: Path, *, encoder: str) -> DenseIndex:
        """The index saved in `folder`; IndexMismatch when it is unreadable, or was made with
        an encoder other than `encoder` (its vectors would mean nothing to this one)."""
        import faiss

        try:
            card = DenseCard(**json.loads((folder / "dense.json").read_text()))
            index = faiss.read_index(str(folder / "dense.faiss"))
        except (OSError, ValueError, TypeError, RuntimeError) as error:
            raise IndexMismatch(f"the dense index in {folder} cannot be read "
                                f"({type(error).__name__}): build it again") from None  # fmt: skip
        if _model(card.encoder) != _model(encoder):
            raise IndexMismatch(
                f"the dense index in {folder} was built with {card.encoder}, not {encoder}: use "
                f"encoder={card.encoder}, or build it again"
            )
        if index.ntotal != card.size or index.d != card.dim:
            raise IndexMismatch(f"the dense index in {folder} holds {index.ntotal} vectors of "
                                f"{index.d} numbers, its card says {card.size} of {card.dim}: "
                                f"build it again")  # fmt: skip
        return cls(index, card)


def _model(name: str) -> str:
    """A model's name without its hub organisation: all-MiniLM-L6-v2 is sentence-transformers/…"""
    return name.rstrip("/").split("/")[-1].lower()


# -- fusion and scores -----------------------------------------------------------------------------
def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], *, k: int = RRF_K) -> list[int]:
    """The passages of several rankings of one query, ordered by Σ 1 / (k + rank)."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking, start=1):
            score[int(passage)] = score.get(int(passage), 0.0) + 1.0 / (k + rank)
    return sorted(score, key=lambda p: -score[p])


def retrieval_scores(
    rankings: Sequence[Sequence[int]], relevant: Sequence[set[int]], *, ks: Sequence[int]
) -> dict[str, float]:
    """recall@k for each k, MRR and nDCG@10 of `rankings` (one per query, best first) against
    the `relevant` passages of each query, by torchmetrics' retrieval metrics. recall@k is the
    share of queries with a relevant passage in the top k (torchmetrics' hit rate; DPR's "top-k
    accuracy"): a question needs one passage that answers it, not all. nDCG counts the relevant
    passages the ranking holds. A query with none in its ranking scores 0."""
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG

    depth = max(len(r) for r in rankings)
    scores, targets, queries = [], [], []
    for q, (ranking, wanted) in enumerate(zip(rankings, relevant, strict=True)):
        ranking = list(ranking)[:depth]
        scores += [float(depth - i) for i in range(len(ranking))]  # rank → a score, best highest
        targets += [p in wanted for p in ranking]
        queries += [q] * len(ranking)
    preds, target = torch.tensor(scores), torch.tensor(targets)
    indexes = torch.tensor(queries)
    out = {f"recall_at_{k}": RetrievalHitRate(top_k=k)(preds, target, indexes=indexes) for k in ks}
    out["mrr"] = RetrievalMRR()(preds, target, indexes=indexes)
    out["ndcg_at_10"] = RetrievalNormalizedDCG(top_k=10)(preds, target, indexes=indexes)
    return {name: float(value) for name, value in out.items()}
