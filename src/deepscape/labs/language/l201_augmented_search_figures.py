"""language/201/augmented-search's figures and page: recall@k per retriever, a gallery of answers
(the failures first), and a Gradio page that searches the run's saved index and answers."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from deepscape.figures import save
from deepscape.runs import Run


def recall_curves(run: Run, scores: dict[str, dict[str, float]], ks: Sequence[int],
                  corpus: str) -> Path:  # fmt: skip
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = ["-", "--", ":", "-."]  # an approximate index may lie exactly on the flat one
    for i, (name, found) in enumerate(scores.items()):
        ax.plot(ks, [found[f"recall_at_{k}"] for k in ks], marker="osd^"[i % 4],
                linestyle=styles[i % 4], label=name, alpha=0.85)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k: passages retrieved")
    ax.set_ylabel("recall@k (share of questions answered in the top k)")
    ax.set_title(f"Retrieval on {corpus}: {len(scores)} retrievers, the same questions")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return save(fig, run.figure_path("recall_at_k"))


def gallery(run: Run, questions: Sequence[Any], shown: Sequence[Sequence[str]],
            said: Sequence[str], *, rows: int = 6) -> Path:  # fmt: skip
    """Questions with their passages, the open-book answer and its citation: wrong ones first."""
    from deepscape.labs.language.l201_augmented_search_reader import answer_scores, cited_right

    pairs = zip(questions, said, strict=True)
    judged = [(answer_scores(a, q.answers)[0], n) for n, (q, a) in enumerate(pairs)]
    order = [n for _, n in sorted(judged)][:rows]
    fig, axes = plt.subplots(len(order), 1, figsize=(11, 1.3 * len(order)), squeeze=False)
    for ax, n in zip(axes[:, 0], order, strict=True):
        q, answer = questions[n], said[n]
        right = judged[n][0] == 1.0
        citations = cited_right(answer, shown[n], q.answers)
        lines = [f"Q: {q.text}   expected: {q.answers[0]}",
                 f"A: {answer!r}   {'right' if right else 'WRONG'}; citations "
                 f"{'right' if citations and all(citations) else 'wrong or none'}"]  # fmt: skip
        for i, passage in enumerate(shown[n], start=1):
            lines += textwrap.wrap(f"[{i}] {passage}", 150, max_lines=2, placeholder=" …")
        ax.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=7,
                color="black" if right else "firebrick", transform=ax.transAxes)  # fmt: skip
        ax.axis("off")
    fig.suptitle("Open-book answers with the passages shown, the wrong ones first")
    return save(fig, run.figure_path("gallery"))


def ask_page(run: Run, retrievers: Any, llm: Callable[[], Any], k: int, ranking: str) -> Any:
    """Type a question: the top passages of `ranking` (dense or hybrid), and the LLM's answer
    citing them."""
    import gradio as gr

    from deepscape.labs.language import l201_augmented_search_reader as reader

    def answer(question: str) -> tuple[str, str]:
        question = (question or "").strip()
        if not question:
            raise gr.Error("type a question first")
        found = retrievers.search([question], k=k)[ranking][0]
        passages = [retrievers.passages[p].text for p in found]
        said = reader.read(llm(), "unknown", [question], [passages], progress=False)[0]
        return said, reader.numbered(passages)

    with gr.Blocks(title=f"deepscape · {run.id}") as app:
        how = "MiniLM and BM25, fused" if ranking == "hybrid" else "MiniLM"
        gr.Markdown(f"## Ask the {run.summary.get('corpus', {}).get('name', '')} corpus\n"
                    f"Search ({how}), then SmolLM2 answers from the top {k} passages and cites "
                    "them.")  # fmt: skip
        question = gr.Textbox(label="Question", placeholder="What is the capital of Chile?")
        ask = gr.Button("Ask")
        said = gr.Textbox(label="Answer")
        passages = gr.Textbox(label="Passages it was shown", lines=8)
        ask.click(answer, question, [said, passages])
        question.submit(answer, question, [said, passages])
    return app
