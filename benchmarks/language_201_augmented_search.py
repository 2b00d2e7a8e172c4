"""Benchmark of language/201/augmented-search; results go to docs/benchmarks.md, one section a part.

    python benchmarks/language_201_augmented_search.py factbook   # the target: the lab's default
    python benchmarks/language_201_augmented_search.py chunking   # windows vs sentences, retrieval
    python benchmarks/language_201_augmented_search.py k1         # BM25's saturation, retrieval
    python benchmarks/language_201_augmented_search.py scale      # FAISS at 10k, 100k, 1M vectors
    python benchmarks/language_201_augmented_search.py factbook questions=4 --no-write

factbook, chunking and k1 are `deepscape run language/201/augmented-search …`: every retriever
(BM25, dense flat, dense HNSW, hybrid) scored on the same 697 questions in one run, the reader on
a seeded sample; k1 runs retrieval alone at five values of BM25's k1 (bm25_k1). scale times
FAISS alone on random unit vectors of MiniLM's 384 numbers (their values do not change a flat
index's cost; an approximate index's recall on real vectors is the lab's): build seconds,
memory, median milliseconds a query on one thread, and how often each index finds the stored
vector a query was made from. Run a part alone (`flock -x`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _report import as_typed, table, with_overrides, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "language/201/augmented-search"
PARTS = {
    "factbook": ("the target: the Factbook, every retriever and the reader", ["threads=2"]),
    "chunking": ("chunking: fixed windows against whole sentences (retrieval only)",
                 ["questions=0", "threads=2"]),
    "k1": ("BM25's k1, and what fusion gains (retrieval only)", ["questions=0", "threads=2"]),
}  # fmt: skip
K1S = ("0.1", "0.2", "0.5", "1.0", "1.5")
RETRIEVERS = ("bm25", "dense", "hnsw", "ivf", "hybrid")


def report(runs: list[tuple[str, Run]]) -> str:
    lines = []
    for items, run in runs:
        s = run.summary
        corpus, built = s["corpus"], s["index_build_s"]
        lines += [
            f"`deepscape run {LAB} {items}`: {corpus['passages']:,} passages (median "
            f"{corpus['median_words']:.0f} words, chunking={corpus['chunking']}), "
            f"{corpus['questions']} questions; wall time {s['wall_seconds']:.0f} s.",
            "",
        ]
        rows = [[name, *(f"{found[f'recall_at_{k}']:.1%}" for k in (1, 5, 20)),
                 f"{found['mrr']:.3f}", f"{found['ndcg_at_10']:.3f}",
                 f"{built[name if name != 'dense' else 'flat']:.2f}" if name != "hybrid" else "–"]
                for name, found in s["retrieval"].items()]  # fmt: skip
        lines += [table(["retriever", "recall@1", "recall@5", "recall@20", "MRR", "nDCG@10",
                         "build s"], rows), ""]  # fmt: skip
        ms = s["retrieval_ms"]
        lines.append(f"- one question, alone, one thread: {ms['pipeline']:.1f} ms median "
                     f"(MiniLM {ms['embed']:.1f}, BM25 {ms['bm25']:.1f}, FAISS {ms['faiss']:.2f})"
                     f" — target ≤ 200 ms {'✓' if ms['pipeline'] <= 200 else '✗'}")  # fmt: skip
        m = s["metrics"]
        lines.append(f"- dense recall@5 {m['dense_recall_at_5']:.1%} (target ≥ 90 % "
                     f"{'✓' if m['dense_recall_at_5'] >= 0.9 else '✗'}); hybrid − dense "
                     f"{m['hybrid_gain_over_dense']:+.1%} (target ≥ +2 points "
                     f"{'✓' if m['hybrid_gain_over_dense'] >= 0.02 else '✗'})")  # fmt: skip
        if "open_exact_match" in m:
            rerank = s.get("rerank", {})
            if rerank:
                lines.append(f"- LLM reranking of the hybrid top {run.config['rerank_depth']} "
                             f"on the reader's {len(s['answers'])} questions: recall@1 "
                             f"{rerank['before']['recall_at_1']:.1%} → "
                             f"{rerank['after']['recall_at_1']:.1%}, "
                             f"{rerank['seconds_per_question']:.1f} s a question")  # fmt: skip
            lines += ["", table(
                ["reader", "exact match", "F1"],
                [[mode, f"{m[f'{mode}_exact_match']:.1%}", f"{m[f'{mode}_f1']:.1%}"]
                 for mode in ("closed", "open", "unknown")]), ""]  # fmt: skip
            lines.append(f"- open-book − closed-book exact match: {m['open_book_gain']:+.1%} "
                         f"(target ≥ +30 points {'✓' if m['open_book_gain'] >= 0.3 else '✗'}); "
                         f"citations right {m['citation_precision']:.1%}, answers citing "
                         f"{m['cited_share']:.0%}; 'I don't know' when the answer was shown "
                         f"{m['unknown_when_shown']:.0%}, when it was not "
                         f"{m['unknown_when_missing']:.0%}")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def k1_report(runs: list[tuple[str, Run]]) -> str:
    """One row a k1: BM25 and the fusion of BM25 with dense, against dense (the same in every
    run: k1 is BM25's alone)."""
    first = runs[0][1].summary
    dense = first["retrieval"]["dense"]
    lines = [f"`deepscape run {LAB} questions=0 threads=2 bm25_k1=…`: "
             f"{first['corpus']['passages']:,} passages, {first['corpus']['questions']} "
             f"questions. Dense alone: recall@1 {dense['recall_at_1']:.1%}, recall@5 "
             f"{dense['recall_at_5']:.1%}, MRR {dense['mrr']:.3f}.", ""]  # fmt: skip
    rows = []
    for _, run in runs:
        found = run.summary["retrieval"]
        bm25, hybrid = found["bm25"], found["hybrid"]
        gain = hybrid["recall_at_5"] - found["dense"]["recall_at_5"]
        rows.append([run.config["bm25_k1"], f"{bm25['recall_at_1']:.1%}",
                     f"{bm25['recall_at_5']:.1%}", f"{hybrid['recall_at_1']:.1%}",
                     f"{hybrid['recall_at_5']:.1%}", f"{hybrid['mrr']:.3f}",
                     f"{gain:+.1%} {'✓' if gain >= 0.02 else '✗'}"])  # fmt: skip
    lines += [table(["k1", "BM25 recall@1", "BM25 recall@5", "hybrid recall@1",
                     "hybrid recall@5", "hybrid MRR", "hybrid − dense, recall@5 (≥ +2)"],
                    rows), ""]  # fmt: skip
    return "\n".join(lines)


def scale(sizes: list[int]) -> str:
    import faiss
    import numpy as np
    import torch

    from deepscape.retrieval import DenseIndex

    faiss.omp_set_num_threads(2)
    rows = []
    generator = np.random.default_rng(0)
    for n in sizes:
        vectors = generator.standard_normal((n, 384), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        # each query: a stored vector moved a little (noise of norm ≈ 0.2), which it should find
        sources = generator.choice(n, 200, replace=False)
        noise = 0.01 * generator.standard_normal((200, 384), dtype=np.float32)
        queries = torch.from_numpy(vectors[sources] + noise)
        for kind in ("flat", "hnsw", "ivf"):
            if kind == "hnsw" and n > 100_000:
                rows.append([f"{n:,}", kind, "skipped: 100k took the time above; 1M takes 10× or "
                             "more", "", "", ""])  # fmt: skip
                continue
            started = time.perf_counter()
            index = DenseIndex.build(torch.from_numpy(vectors), kind=kind, encoder="random")
            built = time.perf_counter() - started
            faiss.omp_set_num_threads(1)
            times, found = [], []
            for q in queries:
                t0 = time.perf_counter()
                found.append(index.search(q[None], 10)[0][0])
                times.append(1000 * (time.perf_counter() - t0))
            faiss.omp_set_num_threads(2)
            recall = statistics.mean(int(s) in f for s, f in zip(sources, found, strict=True))
            megabytes = faiss.serialize_index(index.index).nbytes / 2**20
            rows.append([f"{n:,}", kind, f"{built:.1f}", f"{megabytes:,.0f}",
                         f"{statistics.median(times):.2f}", f"{recall:.1%}"])  # fmt: skip
    return "\n".join([
        "FAISS alone, random unit vectors of 384 numbers (MiniLM's size). Each of 200 queries is a "
        "stored vector moved a little, searched alone on one thread; recall@10: the share whose "
        "stored vector is in its top 10. HNSW: 32 links a node, FAISS's default search breadth; "
        "IVF: about 4√n clusters, n/8 of them searched (`deepscape.retrieval`).", "",
        table(["passages", "index", "build s (2 threads)", "memory MB", "ms a query",
               "recall@10"], rows), ""])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=[*PARTS, "scale"], help="which measurement")
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("--home", help="keep the runs in this folder (default: a scratch one)")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="scale: index sizes")
    parser.add_argument("overrides", nargs="*", help="key=value options after the part's")
    args = parser.parse_args()
    if args.part == "scale":
        title, body = (
            "scale: FAISS from 10k to 1M passages",
            scale([int(n) for n in args.sizes.split(",")]),
        )
    else:
        title, full = PARTS[args.part]
        arms = {
            "factbook": [full],
            "chunking": [
                [*full, "chunking=words", "words=80", "overlap=20"],
                [*full, "chunking=words", "words=80", "overlap=0"],
                [*full, "chunking=sentences"],
            ],
            "k1": [[*full, f"bm25_k1={k1}"] for k1 in K1S],
        }[args.part]
        runs = []
        with tempfile.TemporaryDirectory() as scratch:
            store = RunStore(Path(args.home or scratch))
            for arm in arms:
                items = with_overrides(arm, args.overrides)
                runs.append((" ".join(items), run_lab(LAB, items, store=store, show_progress=True)))
            body = k1_report(runs) if args.part == "k1" else report(runs)
    if args.no_write:
        print(as_typed(body))
    else:
        write_section(f"language_201_augmented_search_{args.part}", f"{LAB}: {title}", body)


if __name__ == "__main__":
    main()
