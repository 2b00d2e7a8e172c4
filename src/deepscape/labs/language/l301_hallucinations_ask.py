"""language/301/hallucinations' model side: an answer with its confidence and samples, and the
checks read from answers — did it abstain, is it right, does the cited passage hold it?

`ask` reads each prompt once (the demonstrations every prompt shares are read once for all, the
KV cache of `deepscape.generate`), then decodes greedily, keeping each token's log-probability,
and draws `samples` more answers from the same cache at a temperature: self-consistency costs
the samples' few tokens, not another reading of the passages.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from deepscape.labs.language import l201_augmented_search_reader as reader
from deepscape.loop import track

# replies that decline, or say there is no such thing: not a claim, so no hallucination
DECLINING = ("none", "no ", "not ", "there is no", "there are no", "unknown", "n/a", "it is not",
             "i do not know", "i'm not sure", "i am not sure", "i cannot", "i can't")  # fmt: skip
ARTICLES = re.compile(r"\b(a|an|the)\b")
NAME = re.compile(r"[\w'’]*[A-Z][\w'’.-]*")  # a capitalised word, "d'Ivoire" whole


@dataclass
class Said:
    answer: str  # the greedy answer
    confidence: float  # mean log-probability of its tokens (and of the end of the turn)
    samples: list[str] = field(default_factory=list)  # drawn at a temperature


def key(answer: str) -> str:
    """An answer as compared: its claim without citations, lower-case, without punctuation and
    articles (SQuAD's normalisation), "" when it declines."""
    text, _ = reader.parse(answer)
    if abstains(text):
        return ""
    return normalised(text)


def abstains(answer: str) -> bool:
    """Whether a reply makes no claim: "I don't know", empty, or a "none"/"there is no" one."""
    text = reader.parse(answer)[0].strip().lower()
    return reader.is_unknown(text) or not text or text.startswith(DECLINING)


def correct(answer: str, references: Sequence[str]) -> bool:
    """Whether an answer states a reference answer (it may say more: "68,521,974 (2024 est.)")."""
    said = key(answer)
    return bool(said) and any(key(r) and (key(r) == said or key(r) in said) for r in references)


def agreement(said: Said) -> float:
    """The share of the samples that make the greedy answer's claim (declining counts as a
    claim of its own here: samples that all decline agree)."""
    if not said.samples:
        return 1.0
    return statistics.mean(key(s) == key(said.answer) for s in said.samples)


def names(question: str) -> set[str]:
    """The question's names — its capitalised words after the first — normalised as passages are:
    "hong" and "kong"; "timorleste"; "côte" and "divoire"; "bahamas" (no "the")."""
    return {t for w in NAME.findall(question)[1:] for t in normalised(w).split() if len(t) > 1}


def normalised(text: str) -> str:
    return " ".join(ARTICLES.sub(" ", re.sub(r"[^\w\s]", "", text.lower())).split())


# function words, left out of `overlap`
STOP = frozenset({
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "was",
    "were", "did", "does", "do", "the", "of", "in", "on", "to", "a", "an", "and", "or", "for",
    "by", "with", "from", "at", "as", "it", "its", "this", "that", "be", "become",
})  # fmt: skip


def overlap(passage: str, question: str) -> float:
    """The share of the question's words (but function words) found in `passage`, compared by
    their first five letters ("independent" finds "Independence"): lexical retrieval confidence,
    low where the passages are about the subject but not about what is asked of it."""
    stem = lambda word: word[:5]  # noqa: E731
    asked = {stem(w) for w in normalised(question).split() if w not in STOP}
    found = {stem(w) for w in normalised(passage).split()}
    return len(asked & found) / max(1, len(asked))


def mentions(passage: str, question: str) -> bool:
    """Whether `passage` names every name of the question (its subject: "Hong Kong")."""
    return names(question) <= set(normalised(passage).split())


def supports(passage: str, question: str, answer: str) -> bool:
    """Whether `passage` holds the claim: it is about the question's names and states the
    answer (both checked word for word, after `key`'s normalisation)."""
    claim = key(answer)
    return (
        bool(claim) and f" {claim} " in f" {normalised(passage)} " and mentions(passage, question)
    )


def cited_support(answer: str, question: str, passages: Sequence[str]) -> bool:
    """Whether the answer cites a passage shown to it and every passage it cites holds it."""
    _, cited = reader.parse(answer)
    return bool(cited) and all(
        0 < n <= len(passages) and supports(passages[n - 1], question, answer) for n in cited
    )


@torch.inference_mode()
def ask(
    llm: Any,
    prompts: Sequence[str],
    *,
    shots: Sequence[Any] = (),
    samples: int = 0,
    temperature: float = 0.7,
    max_new_tokens: int = 16,
    seed: int = 0,
    progress: bool = False,
    description: str = "asking",
) -> list[Said]:
    """Each prompt's greedy answer with its confidence, and `samples` sampled answers."""

    from deepscape.generate import as_lm, common_prefix, generate, prefix_cache
    from deepscape.tuning import chat_prompt_ids, end_of_turn

    tokenizer, model = llm.tokenizer, llm.model
    lm, stop = as_lm(model), end_of_turn(tokenizer)
    rows = [chat_prompt_ids(tokenizer, p, shots=shots) for p in prompts]
    shared = common_prefix(rows) if len(rows) > 1 else 0
    longest = max(map(len, rows)) + max_new_tokens
    start = prefix_cache(model, rows[0][:shared], max_length=longest) if shared else None
    generator = torch.Generator().manual_seed(seed)
    out = []
    for row in track(rows, description=description, transient=True, disable=not progress):
        # the prompt but its last token in the cache: the greedy answer and the samples go on
        # from the same state
        state = start.select(torch.zeros(1, dtype=torch.long)) if start else lm.new_cache(longest)
        if row[shared:-1]:
            lm(torch.tensor([row[shared:-1]]), state)
        greedy = state.select(torch.zeros(1, dtype=torch.long))
        logits = lm(torch.tensor([row[-1:]]), greedy)[:, -1]
        tokens, logprobs = [], []
        for _ in range(max_new_tokens):
            scores = logits.float().log_softmax(-1)[0]
            token = int(scores.argmax())
            logprobs.append(float(scores[token]))
            if token == stop:
                break
            tokens.append(token)
            logits = lm(torch.tensor([[token]]), greedy)[:, -1]
        answer = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        drawn = []
        if samples and not abstains(answer):  # a declined answer is dropped whatever they say
            new = generate(model, torch.tensor([row[-1:]] * samples), prefix=state,
                           max_new_tokens=max_new_tokens, temperature=temperature,
                           stop_tokens=[stop], generator=generator)  # fmt: skip
            drawn = [tokenizer.decode(t[: t.index(stop)] if stop in t else t,
                                      skip_special_tokens=True).strip()
                     for t in new.tolist()]  # fmt: skip
        out.append(Said(answer, statistics.mean(logprobs), drawn))
    return out
