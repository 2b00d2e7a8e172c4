"""language/201/augmented-search — search documents, then let an LLM answer from what was found.

The whole pipeline, one step at a time, each step scored on questions whose answers are known:

1. Chunking. Each document (a CIA World Factbook country: its background, then fields such as
   Capital and Population) is cut into passages of about `words` words: whole sentences and fields
   packed together (`chunking=sentences`), or blind windows with an overlap (`chunking=words`),
   which may cut a fact in two. Every passage starts with its document's title.
2. Sparse retrieval: BM25 (bm25s) over the passages' words, a repeated word saturating at
   `bm25_k1` (0.2; the textbook's 1.2–2 is in the benchmark).
3. Dense retrieval: all-MiniLM-L6-v2 vectors in FAISS — a flat index (exact: every passage
   compared) and HNSW (approximate: a graph walk), its recall and speed against the flat one's.
4. Fusion: reciprocal rank fusion of BM25 and dense (`deepscape.retrieval`).
5. Reranking: SmolLM2 asked of each of the top `rerank_depth` passages "does it answer the
   question?", ranked by log P(yes) − log P(no) (no cross-encoder ships offline).
6. Reading: SmolLM2-135M-Instruct answers closed-book, open-book from the top `reader_k`
   passages of the `read_from` ranking citing them [1], [2]…, and allowed to say "I don't know" —
   then again with passages that do not hold the answer, where "I don't know" is right.
7. Scores through the metrics registry: recall@k, MRR and nDCG@10 (torchmetrics), SQuAD exact
   match and F1, citation precision (does the cited passage hold the answer?).

The index is saved in the run (passages.jsonl, BM25's arrays, the FAISS file and the encoder
that made it), and `deepscape serve RUN` answers questions from it without building it again.
Figures: recall@k per retriever, and a gallery of questions with passages, answer and citation,
the failures first.

What it found on the Factbook (alone on 2 cores; docs/benchmarks.md): dense retrieval ranks a
passage holding the answer among its first 5 for 97.6 % of the 697 questions. BM25 at the textbook
k1 = 1.5 did so for 54.5 %: a country's history names the country again and again, and each repeat
counted, so it outranked the one line that holds the capital ("Capital: name: Santiago"), and
fusing that with dense (96.4 %) fell below dense alone. At k1 = 0.2 a repeat counts little and
the question's other word decides: BM25 95.4 %, and fused with dense 99.9 % at 5 (+2.3 points)
and 87.5 % at 1 (dense 79.1 %) — the two fail on different questions. Reranking with the 135M
model's yes/no lowered recall@1 from 93 % to 20 % on the reader's 30 questions. The reader, shown
the dense ranking's top 2, got 56.7 % of 30 questions exactly right, against 3.3 % closed-book.
A small reader wants few, right passages: in a side run on the same 30, it got 66.7 % from 1
passage and 30.0 % from 3; from the hybrid ranking's top 2 (`read_from=hybrid`) 63.3 %, but it
cited a passage holding the answer 14 % of the time against 40 % from dense's, so dense stays
the default. Chunking moved dense recall@5 by two points: windows of 80 words 96.6 % without
overlap, 98.9 % with 20 words of it (7 % more passages), sentences packed whole 97.6 %. One
question's search takes 16–29 ms on one thread (the machines differ).

    deepscape run language/201/augmented-search                      # the Factbook, offline
    deepscape run language/201/augmented-search chunking=words words=80 overlap=20
    deepscape run language/201/augmented-search dataset=wikipedia    # retrieval only: no answers
    deepscape run language/201/augmented-search dataset=squad data_dir=path/to/squad
    deepscape serve <run id>                                         # ask it questions
"""

from __future__ import annotations

import json
import random
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from deepscape import distributed
from deepscape.cache import cache_key, cached
from deepscape.config import ConfigError, option
from deepscape.labs.language import l201_augmented_search_reader as reader
from deepscape.labs.language.l201_augmented_search_data import Corpus, load
from deepscape.labs.language.l201_augmented_search_figures import gallery, recall_curves
from deepscape.models.language import load_encoder, load_llm
from deepscape.retrieval import (
    DenseIndex,
    IndexMismatch,
    Passage,
    SparseIndex,
    reciprocal_rank_fusion,
    retrieval_scores,
)
from deepscape.runs import Run

DEPTH = 20  # each retriever's ranking is this long: recall@1 … @20
KS = (1, 3, 5, 10, 20)


@dataclass
class Config:
    seed: int = option(0, "random seed: which questions the reader is asked")
    threads: int = option(0, "CPU threads for PyTorch (0: all cores)")
    dataset: Literal["factbook", "wikipedia", "squad"] = option(
        "factbook", "the corpus: factbook, wikipedia or squad"
    )
    data_dir: str | None = option(None, "SQuAD JSON (a file, or a folder holding dev-v1.1.json)")
    chunking: Literal["sentences", "words"] = option(
        "sentences", "sentences: whole sentences packed; words: windows"
    )
    words: int = option(80, "words a passage holds at most")
    overlap: int = option(20, "words two windows share (chunking=words)")
    bm25_k1: float = option(
        0.2, "BM25's saturation of a repeated word (1.2–2 the textbook; near 0: a word counts once)"
    )
    approximate: str = option("hnsw", "the approximate FAISS index beside the flat one: hnsw, ivf")
    encoder: str = option("all-MiniLM-L6-v2", "the sentence encoder (offline: MiniLM)")
    llm: str = option("SmolLM2-135M-Instruct", "the reader and reranker (offline: SmolLM2)")
    documents: int = option(0, "documents of the corpus to index (0: all; fewer: a quick look)")
    questions: int = option(30, "questions the reader answers (0: retrieval only)")
    reader_k: int = option(2, "passages the reader is shown")
    read_from: Literal["dense", "hybrid", "reranked"] = option(
        "dense", "the ranking whose top passages the reader is shown"
    )
    rerank_depth: int = option(10, "passages the LLM reranks (0: no reranking)")
    latency_questions: int = option(50, "questions timed one at a time for the latency")


def check(config: Config) -> None:
    if config.words < 1 or not 0 <= config.overlap < config.words:
        raise ConfigError(f"words={config.words} overlap={config.overlap}: give words ≥ 1 and "
                          f"0 ≤ overlap < words")  # fmt: skip
    if config.reader_k <= 0:
        raise ConfigError(f"reader_k={config.reader_k}: give k ≥ 1 passages for the reader")
    for name in ("rerank_depth", "questions", "documents"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name}={getattr(config, name)}: give 0 or more")
    if config.read_from == "reranked" and not config.rerank_depth:
        raise ConfigError("read_from=reranked needs rerank_depth ≥ 1 (or read_from=dense)")
    if config.bm25_k1 < 0:
        raise ConfigError(f"bm25_k1={config.bm25_k1}: give 0 or more (1.2–2 the textbook)")
    if config.approximate not in ("hnsw", "ivf"):
        raise ConfigError(f"approximate={config.approximate!r}: give hnsw or ivf")


@dataclass
class Retrievers:
    """What `search` needs: the passages, both indexes and the encoder of the queries."""

    passages: list[Passage]
    sparse: SparseIndex
    dense: DenseIndex
    encoder: Any

    def search(
        self, questions: list[str], *, k: int = DEPTH, vectors: torch.Tensor | None = None
    ) -> dict[str, list[list[int]]]:
        """Each retriever's ranking of the passages for each question (hybrid: RRF of both);
        `vectors`: the questions' embeddings, when they are already made."""
        if vectors is None:
            vectors = self.encoder.embed(questions, progress=False)
        bm25, _ = self.sparse.search(questions, k)
        dense, _ = self.dense.search(vectors, k)
        hybrid = [reciprocal_rank_fusion([s, d])[:k] for s, d in zip(bm25, dense, strict=True)]
        return {"bm25": bm25.tolist(), "dense": dense.tolist(), "hybrid": hybrid}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "passages.jsonl").open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(p.__dict__) + "\n" for p in self.passages)
        self.sparse.save(folder / "bm25")
        self.dense.save(folder)

    @classmethod
    def load(cls, folder: Path, encoder: Any) -> Retrievers:
        """The index a run saved; IndexMismatch when it is broken or of another encoder."""
        try:
            lines = (folder / "passages.jsonl").read_text(encoding="utf-8").splitlines()
            passages = [Passage(**json.loads(line)) for line in lines]
        except (OSError, ValueError, TypeError) as error:
            raise IndexMismatch(
                f"the passages in {folder} cannot be read ({type(error).__name__}): run the lab "
                "again"
            ) from None
        dense = DenseIndex.load(folder, encoder=encoder.name)
        if dense.card.size != len(passages):
            raise IndexMismatch(f"the index in {folder} holds {dense.card.size} vectors for "
                                f"{len(passages)} passages: run the lab again")  # fmt: skip
        return cls(passages, SparseIndex.load(folder / "bm25"), dense, encoder)


def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    corpus = load(config.dataset, config.data_dir, how=config.chunking, words=config.words,
                  overlap=config.overlap, documents=config.documents)  # fmt: skip
    texts = [p.text for p in corpus.passages]
    encoder = load_encoder(config.encoder)
    warn_long(encoder, [q.text for q in corpus.questions])
    median_words = statistics.median(len(t.split()) for t in texts)
    run.update_summary(corpus={"name": corpus.name, "passages": len(texts),
                               "questions": len(corpus.questions), "chunking": config.chunking,
                               "median_words": median_words})  # fmt: skip

    # 1-3. index the passages both ways (the vectors are cached in the run store)
    key = cache_key(config.encoder, corpus.name, f"{config.chunking}{config.words}-",
                    len(texts), *texts)  # fmt: skip
    vectors = cached(run, "passage-vectors", key,
                     lambda: encoder.embed(texts, description="embedding passages"))  # fmt: skip
    builds = {}
    started = time.perf_counter()
    sparse = SparseIndex.build(texts, k1=config.bm25_k1)
    builds["bm25"] = time.perf_counter() - started
    indexes = {}
    for kind in ("flat", config.approximate):
        started = time.perf_counter()
        indexes[kind] = DenseIndex.build(vectors, kind=kind, encoder=encoder.name)
        builds[kind] = time.perf_counter() - started
    retrievers = Retrievers(corpus.passages, sparse, indexes["flat"], encoder)
    retrievers.save(run.dir / "index")

    # 4. every retriever's rankings of every question, and what they score
    questions = [q.text for q in corpus.questions]
    query_vectors = encoder.embed(questions, progress=False)
    rankings = retrievers.search(questions, vectors=query_vectors)
    approximate, _ = indexes[config.approximate].search(query_vectors, DEPTH)
    rankings[config.approximate] = approximate.tolist()
    scores = {name: retrieval_scores(r, corpus.relevant, ks=KS) for name, r in rankings.items()}
    approximate_overlap = statistics.mean(
        len(set(a[:10]) & set(f[:10])) / 10
        for a, f in zip(rankings[config.approximate], rankings["dense"], strict=True))  # fmt: skip
    latency = per_question_ms(retrievers, questions, config)
    run.update_summary(retrieval=scores, index_build_s=builds, retrieval_ms=latency,
                       approximate_top10_overlap=approximate_overlap)  # fmt: skip
    recall_curves(run, scores, KS, corpus.name)
    metrics: dict[str, Any] = {f"{name}_{m}": v for name, s in scores.items() for m, v in s.items()
                               if m in ("recall_at_5", "mrr", "ndcg_at_10")}  # fmt: skip
    metrics |= {"hybrid_gain_over_dense": scores["hybrid"]["recall_at_5"]
                - scores["dense"]["recall_at_5"],
                "retrieval_ms": latency["pipeline"]}  # fmt: skip
    if not (corpus.answerable and config.questions):
        return metrics
    return metrics | read(config, run, corpus, retrievers, rankings)


def warn_long(encoder: Any, questions: list[str]) -> None:
    """A warning (not an error) for questions the encoder will cut at its context length."""
    lengths = [len(ids) for ids in encoder.tokenizer(questions)["input_ids"]]
    long = [i for i, n in enumerate(lengths) if n > encoder.max_length]
    if long:
        warnings.warn(f"{len(long)} question(s) are longer than the encoder's "
                      f"{encoder.max_length} tokens (the first: question {long[0]}, "
                      f"{lengths[long[0]]} tokens): they are truncated", stacklevel=2)  # fmt: skip


def per_question_ms(retrievers: Retrievers, questions: list[str], config: Config) -> dict:
    """Median milliseconds of one question searched alone: embedding, BM25, FAISS and fusion.
    On one thread: a question of ten tokens is too little work to share, and two threads made
    MiniLM's forward 40× slower here while another process kept the second core busy (a server
    answers many questions at once, one a core)."""
    sample = questions[: config.latency_questions]
    times: dict[str, list[float]] = {"pipeline": [], "embed": [], "bm25": [], "faiss": []}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for question in sample:
        t0 = time.perf_counter()
        vector = retrievers.encoder.embed([question], progress=False)
        t1 = time.perf_counter()
        bm25, _ = retrievers.sparse.search([question], DEPTH)
        t2 = time.perf_counter()
        dense, _ = retrievers.dense.search(vector, DEPTH)
        t3 = time.perf_counter()
        reciprocal_rank_fusion([bm25[0], dense[0]])
        t4 = time.perf_counter()
        for name, seconds in [("embed", t1 - t0), ("bm25", t2 - t1), ("faiss", t3 - t2),
                              ("pipeline", t4 - t0)]:  # fmt: skip
            times[name].append(1000 * seconds)
    torch.set_num_threads(threads)
    return {name: statistics.median(values) for name, values in times.items()}


# -- 5-7. rerank, read, score ---------------------------------------------------------------------
def read(config: Config, run: Run, corpus: Corpus, retrievers: Retrievers,
         rankings: dict[str, list[list[int]]]) -> dict[str, Any]:  # fmt: skip
    llm = load_llm(config.llm)
    answerable = [i for i, q in enumerate(corpus.questions) if q.answers]
    count = min(config.questions, len(answerable))
    chosen = sorted(random.Random(config.seed).sample(answerable, count))
    questions = [corpus.questions[i] for i in chosen]
    relevant = [corpus.relevant[i] for i in chosen]
    sample = {name: [ranking[i] for i in chosen] for name, ranking in rankings.items()}
    hybrid, metrics = sample["hybrid"], {}
    if config.rerank_depth:
        started = time.perf_counter()
        depth = config.rerank_depth
        reranked = [rerank(llm, retrievers.passages, q.text, r[:depth]) + r[depth:]
                    for q, r in zip(questions, hybrid, strict=True)]  # fmt: skip
        seconds = (time.perf_counter() - started) / len(questions)
        before = retrieval_scores(hybrid, relevant, ks=(1, 3, 5))
        after = retrieval_scores(reranked, relevant, ks=(1, 3, 5))
        run.update_summary(
            rerank={"before": before, "after": after, "seconds_per_question": seconds}
        )
        metrics |= {"reranked_recall_at_1": after["recall_at_1"],
                    "hybrid_recall_at_1_sample": before["recall_at_1"]}  # fmt: skip
        sample["reranked"] = reranked
    final = sample[config.read_from]
    shown = [[retrievers.passages[p].text for p in r[: config.reader_k]] for r in final]
    # the same number of passages, none holding the answer: "I don't know" is right there
    missing = [[retrievers.passages[p].text for p in r if p not in want][: config.reader_k]
               for r, want in zip(final, relevant, strict=True)]  # fmt: skip
    texts = [q.text for q in questions]
    said = {"closed": reader.read(llm, "closed", texts),
            "open": reader.read(llm, "open", texts, shown),
            "unknown": reader.read(llm, "unknown", texts, shown),
            "unknown, answer not shown": reader.read(llm, "unknown", texts, missing)}  # fmt: skip
    refs = [q.answers for q in questions]
    for mode in ("closed", "open", "unknown"):
        scored = [reader.answer_scores(a, r) for a, r in zip(said[mode], refs, strict=True)]
        metrics[f"{mode}_exact_match"] = statistics.mean(em for em, _ in scored)
        metrics[f"{mode}_f1"] = statistics.mean(f1 for _, f1 in scored)
    cited = [ok for a, c, r in zip(said["open"], shown, refs, strict=True)
             for ok in reader.cited_right(a, c, r)]  # fmt: skip
    metrics["citation_precision"] = statistics.mean(cited) if cited else 0.0
    metrics["cited_share"] = sum(bool(reader.parse(a)[1]) for a in said["open"]) / len(texts)
    metrics["unknown_when_shown"] = statistics.mean(map(reader.is_unknown, said["unknown"]))
    metrics["unknown_when_missing"] = statistics.mean(
        map(reader.is_unknown, said["unknown, answer not shown"])
    )
    metrics["open_book_gain"] = metrics["open_exact_match"] - metrics["closed_exact_match"]
    asked = zip(questions, shown, strict=True)
    run.update_summary(answers=[{"question": q.text, "answers": list(q.answers), "passages": c,
                                 **{mode: said[mode][n] for mode in said}}
                                for n, (q, c) in enumerate(asked)])  # fmt: skip
    gallery(run, questions, shown, said["open"])
    return metrics


def rerank(llm: Any, passages: list[Passage], question: str, ranking: list[int]) -> list[int]:
    scores = reader.rerank_scores(llm, question, [passages[p].text for p in ranking])
    return [ranking[i] for i in scores.argsort(descending=True).tolist()]


# -- the page ------------------------------------------------------------------------------------
def page_for(run: Run) -> Any:
    from deepscape.labs.language.l201_augmented_search_figures import ask_page

    config = run.config_as(Config)
    retrievers = Retrievers.load(run.dir / "index", load_encoder(config.encoder))
    ranking = "hybrid" if config.read_from == "hybrid" else "dense"  # the page does not rerank
    return ask_page(run, retrievers, lambda: load_llm(config.llm), config.reader_k, ranking)
