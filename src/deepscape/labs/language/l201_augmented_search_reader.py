"""language/201/augmented-search's reader and reranker: SmolLM2 answers from passages, citing them.

The reader is asked in three ways, each shown the form of its answer by invented demonstrations
(earlier chat turns about a country that does not exist, so they cannot leak an answer):

- closed-book: the question alone; whatever it knows, it learnt in pre-training;
- open-book: the top passages, numbered [1] … [k], and the question; it answers and cites;
- unknown allowed: the same, told to answer "I don't know" when the passages do not say.

Answers are scored as SQuAD scores them (torchmetrics: lower-cased, without articles and
punctuation; exact match, and F1 over words), with the citation marks taken out first. A
citation is right when the passage it names holds the answer.

The reranker asks the same LLM, passage by passage, "does this passage answer the question?"
and ranks by log P(yes) − log P(no) (no cross-encoder ships offline; this one needs no training).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import torch
from torchmetrics.functional.text import squad

from deepscape.models.language import LanguageModel, label_logprobs
from deepscape.tuning import Example, answers, chat_prompt_ids

Mode = Literal["closed", "open", "unknown"]
UNKNOWN = "I don't know"
CITATION = re.compile(r"\s*\[(\d+)\]")
CLOSED = "Answer the question in a few words, with the answer only.\n\nQuestion: {question}"
OPEN = ("Passages:\n{passages}\n\nAnswer the question from the passages in a few words, with the "
        "answer only, then cite the passage that says it, like [2].{unknown}\n\n"
        "Question: {question}")  # fmt: skip
ALLOW_UNKNOWN = f' If the passages do not say, answer "{UNKNOWN}".'
# one invented country, so that the demonstrations show the form and give away nothing
DEMO_PASSAGES = [
    "Veloria: Population: 3,120,448 (2024 est.). Ethnic groups: Velorian 91%, other 9%.",
    "Veloria: Capital: name: Port Amsel; geographic coordinates: 12 03 N, 61 45 W.",
    "Veloria: Area: total: 14,880 sq km; land: 14,100 sq km; water: 780 sq km.",
]
# (question, answer, the passage that says it) — one of each kind the Factbook asks
DEMOS = [
    ("What is the capital of Veloria?", "Port Amsel", 2),
    ("What is the population of Veloria?", "3,120,448", 1),
    ("What is the total area of Veloria?", "14,880 sq km", 3),
]
DEMO_OTHER = "What is the national anthem of Veloria?"  # the passages do not say


def numbered(passages: Sequence[str]) -> str:
    return "\n".join(f"[{i}] {text}" for i, text in enumerate(passages, start=1))


def prompt(mode: Mode, question: str, passages: Sequence[str] = ()) -> str:
    if mode == "closed":
        return CLOSED.format(question=question)
    unknown = ALLOW_UNKNOWN if mode == "unknown" else ""
    return OPEN.format(passages=numbered(passages), unknown=unknown, question=question)


def demonstrations(mode: Mode) -> list[Example]:
    if mode == "closed":
        return [Example(prompt("closed", q), answer) for q, answer, _ in DEMOS]
    shots = [Example(prompt(mode, q, DEMO_PASSAGES), f"{answer} [{n}]") for q, answer, n in DEMOS]
    if mode == "unknown":
        shots.insert(1, Example(prompt(mode, DEMO_OTHER, DEMO_PASSAGES), UNKNOWN))
    return shots


def read(
    llm: LanguageModel,
    mode: Mode,
    questions: Sequence[str],
    contexts: Sequence[Sequence[str]] = (),
    *,
    max_new_tokens: int = 16,
    progress: bool = True,
) -> list[str]:
    """The LLM's greedy answer to each question, asked `mode`'s way (open modes: with the
    passages of `contexts`, in order)."""
    contexts = contexts or [()] * len(questions)
    prompts = [prompt(mode, q, c) for q, c in zip(questions, contexts, strict=True)]
    return answers(llm.model, llm.tokenizer, prompts, shots=demonstrations(mode),
                   max_new_tokens=max_new_tokens, progress=progress,
                   description=f"reading ({mode})")  # fmt: skip


def parse(answer: str) -> tuple[str, list[int]]:
    """An answer without its citation marks, and the passages it cites (1-based)."""
    return CITATION.sub("", answer).strip(), [int(n) for n in CITATION.findall(answer)]


def is_unknown(answer: str) -> bool:
    return parse(answer)[0].lower().rstrip(".").startswith(UNKNOWN.lower())


def answer_scores(answer: str, references: Sequence[str]) -> tuple[float, float]:
    """SQuAD's exact match and F1 (0 … 1) of one answer against its references."""
    text, _ = parse(answer)
    result = squad([{"prediction_text": text, "id": "0"}],
                   [{"answers": {"text": list(references), "answer_start": [0] * len(references)},
                     "id": "0"}])  # fmt: skip
    return float(result["exact_match"]) / 100, float(result["f1"]) / 100


def cited_right(answer: str, passages: Sequence[str], references: Sequence[str]) -> list[bool]:
    """For each passage the answer cites, whether it holds a reference answer (a number out of
    range cites nothing there: wrong)."""
    _, cited = parse(answer)
    return [0 < n <= len(passages) and any(r.lower() in passages[n - 1].lower()
                                           for r in references) for n in cited]  # fmt: skip


# the question first: every passage's prompt then shares its start, read once (the KV cache)
RERANK = "Question: {question}\n\nPassage: {passage}\n\nDoes the passage answer the question? " \
    "Answer yes or no."  # fmt: skip


def rerank_scores(
    llm: LanguageModel, question: str, passages: Sequence[str], *, batch_size: int = 8
) -> torch.Tensor:
    """log P(yes) − log P(no) of each passage answering `question` ("n")."""
    prompts = [chat_prompt_ids(llm.tokenizer, RERANK.format(passage=p, question=question))
               for p in passages]  # fmt: skip
    scores = label_logprobs(llm.model, llm.tokenizer, prompts, ["yes", "no"],
                            batch_size=batch_size, progress=False)  # fmt: skip
    return scores[:, 0] - scores[:, 1]
