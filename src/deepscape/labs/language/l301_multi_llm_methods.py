"""language/301/multi-llm's parts: the tasks, what an answer says, generation that counts its
cost, the majority vote, the router and the two verifiers.

Every method is charged what it makes the LLMs compute: the tokens they read (prompts, a
verifier's candidates), the tokens they generate, and the seconds it takes. A prompt whose keys
and values are kept and reused (the shared chat start; one question's prompt for all its
samples) is read once and counted once.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deepscape.labs.language.l201_one_model_tasks import Item, Task

NUMERIC = ("arithmetic", "word-problem", "extraction")  # judged by the last number written
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


# -- the tasks -------------------------------------------------------------------------------------
def worked(expression: str) -> str:
    """A worked solution of a two-operation `expression` ("37 * 24 - 100"), the higher-priority
    operation first: "37 * 24 = 888. 888 - 100 = 788. The answer is 788." """
    a, first, b, second, c = expression.split()
    do = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
          "/": lambda x, y: x // y}  # fmt: skip
    if second in "*/" and first in "+-":  # c - a * b: the product first
        inner = do[second](int(b), int(c))
        steps = [f"{b} {second} {c} = {inner}", f"{a} {first} {inner} = {do[first](int(a), inner)}"]
        value = do[first](int(a), inner)
    else:
        inner = do[first](int(a), int(b))
        value = do[second](inner, int(c))
        steps = [f"{a} {first} {b} = {inner}", f"{inner} {second} {c} = {value}"]
    return f"{steps[0]}. {steps[1]}. The answer is {value}."


def word_problems(n: int, seed: int, pool: int = 1000) -> Task:
    """language/301/agents' arithmetic word problems (two operations), each answered with its
    worked solution (up to 41 tokens with its end), chain-of-thought style: the setting of
    self-consistency (Wang et al. 2022). The test problems are never in the pool."""
    from deepscape.labs.language.l301_agents_tasks import word_problem

    def draw(rng: random.Random, count: int, avoid: set[str]) -> list[Item]:
        items: dict[str, Item] = {}
        while len(items) < count:
            task = word_problem(rng)
            if task.question not in avoid:
                items[task.question] = Item(task.question, (worked(task.trace[0].argument),))
        return list(items.values())

    test = draw(random.Random(seed), n, set())
    train = draw(random.Random(seed + 10_000), pool, {i.text for i in test})
    instruction = "Solve it step by step, then write 'The answer is N.'"
    source = "language/301/agents' word problems, worked solutions"
    return Task("word problem (agents' tasks)", instruction, "exact match", test, train, source,
                max_new_tokens=48)  # fmt: skip


def load_task(kind: str, data_dir: Any, n: int, seed: int, digits: int) -> Task:
    from deepscape.labs.language.l201_one_model_tasks import load

    if kind == "word-problem":
        return word_problems(n, seed)
    return load(kind, data_dir, n, seed, digits)


# -- what an answer says ---------------------------------------------------------------------------
def final_answer(kind: str, text: str) -> str:
    """What `text` answers, as votes and the check compare it: for numbers the last number
    written ("… The answer is 1,042." → "1042"), else the text lower-cased, trimmed."""
    if kind in NUMERIC:
        found = [n.rstrip(",").replace(",", "") for n in NUMBER.findall(text)]
        return found[-1].rstrip(".") if found else ""
    return text.strip().strip(".!").strip().lower()


def is_correct(kind: str, text: str, item: Item) -> bool:
    said = final_answer(kind, text)
    return bool(said) and said in {final_answer(kind, a) for a in item.answers}


def majority(answers: Sequence[str]) -> str:
    """The most frequent non-empty answer (self-consistency's vote); a tie goes to the answer
    sampled first; "" when none is non-empty."""
    counts = Counter(a for a in answers if a)
    if not counts:
        return ""
    top = max(counts.values())
    return next(a for a in answers if a and counts[a] == top)


# -- generation and its cost -----------------------------------------------------------------------
@dataclass
class Cost:
    """What a method made the LLMs compute: tokens read and generated, and seconds."""

    read: int = 0
    generated: int = 0
    seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.read + other.read, self.generated + other.generated,
                    self.seconds + other.seconds)  # fmt: skip

    @property
    def tokens(self) -> int:
        return self.read + self.generated


def until_stop(tokens: list[int], stop: int) -> list[int]:
    """A generated row up to its stop token (kept: it was generated too)."""
    return tokens[: tokens.index(stop) + 1] if stop in tokens else tokens


def complete(model: Any, tokenizer: Any, prompts: Sequence[str], *, samples: int = 1,
             temperature: float = 0.0, top_k: int | None = None, max_new_tokens: int,
             seed: int = 0) -> tuple[list[list[str]], Cost]:  # fmt: skip
    """`samples` answers to each prompt (temperature 0: greedy, one answer), and their cost.
    Greedy: prompts of one length go in one batch, after the chat start they share (read once).
    Sampling: each prompt is read once, its keys and values copied for its `samples` rows."""
    import torch

    from deepscape.generate import common_prefix, generate, prefix_cache
    from deepscape.tuning import chat_prompt_ids, end_of_turn, merged

    ids = [chat_prompt_ids(tokenizer, p) for p in prompts]
    stop, out = end_of_turn(tokenizer), [[] for _ in prompts]
    generator = torch.Generator().manual_seed(seed)
    cost, started = Cost(), time.perf_counter()
    with merged(model) as lm:
        if samples == 1 and temperature == 0:
            shared = common_prefix(ids) if len(ids) > 1 else 0
            prefix = prefix_cache(lm, ids[0][:shared], max_length=0) if shared else None
            cost.read += shared + sum(len(row) - shared for row in ids)
            by_length: dict[int, list[int]] = {}
            for i, row in enumerate(ids):
                by_length.setdefault(len(row), []).append(i)
            for rows in by_length.values():
                for start in range(0, len(rows), 32):
                    batch = rows[start : start + 32]
                    new = generate(lm, torch.tensor([ids[i][shared:] for i in batch]),
                                   max_new_tokens=max_new_tokens, greedy=True, stop_tokens=[stop],
                                   prefix=prefix)  # fmt: skip
                    for i, tokens in zip(batch, new.tolist(), strict=True):
                        kept = until_stop(tokens, stop)
                        cost.generated += len(kept)
                        out[i] = [tokenizer.decode(kept, skip_special_tokens=True).strip()]
        else:
            for i, row in enumerate(ids):
                cost.read += len(row)
                prefix = prefix_cache(lm, row[:-1], max_length=0)
                new = generate(lm, torch.tensor([row[-1:]] * samples), prefix=prefix,
                               max_new_tokens=max_new_tokens, temperature=temperature or 1.0,
                               top_k=top_k, stop_tokens=[stop], generator=generator)  # fmt: skip
                for tokens in new.tolist():
                    kept = until_stop(tokens, stop)
                    cost.generated += len(kept)
                    out[i].append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    cost.seconds = time.perf_counter() - started
    return out, cost


# -- the router ------------------------------------------------------------------------------------
class Router:
    """Which specialist a query goes to: logistic regression on the query's word counts
    (scikit-learn), trained on a few labelled queries per kind. It reads the query alone — the
    instruction would give the kind away."""

    def __init__(self, texts: Sequence[str], kinds: Sequence[str]):
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        started = time.perf_counter()
        # numbers are words too: "+" and digits tell a sum from a question about a country
        self.pipeline = make_pipeline(CountVectorizer(token_pattern=r"[A-Za-z]+|\d+|[+*/=-]"),
                                      LogisticRegression(max_iter=1000))  # fmt: skip
        self.pipeline.fit(list(texts), list(kinds))
        self.train_seconds = time.perf_counter() - started

    def route(self, texts: Sequence[str]) -> tuple[list[str], float]:
        """The kind chosen for each query, and the seconds it took."""
        started = time.perf_counter()
        chosen = [str(k) for k in self.pipeline.predict(list(texts))]
        return chosen, time.perf_counter() - started


# -- verifiers -------------------------------------------------------------------------------------
Scores = list[list[float]]  # a verifier's score of each candidate of each question
JUDGE = ("{question}\n\nProposed answer: {answer}\n\nIs the proposed answer correct? "
         "Answer Yes or No.")  # fmt: skip


def judge_scores(model: Any, tokenizer: Any, questions: Sequence[str],
                 candidates: Sequence[Sequence[str]]) -> tuple[Scores, Cost]:  # fmt: skip
    """An LLM as a judge: log P(Yes) − log P(No) after a prompt that shows the question and one
    candidate, for each distinct candidate of each question (one forward pass each)."""
    from deepscape.tuning import chat_prompt_ids, label_scores

    pairs = [(q, c) for q, cs in zip(questions, candidates, strict=True) for c in cs]
    prompts = [JUDGE.format(question=q, answer=c) for q, c in pairs]
    started = time.perf_counter()
    scores = label_scores(model, tokenizer, prompts, ["Yes", "No"], progress=False)
    read = sum(len(chat_prompt_ids(tokenizer, p)) for p in prompts)
    margins = (scores[:, 0] - scores[:, 1]).tolist()
    return _regroup(margins, candidates), Cost(read, 0, time.perf_counter() - started)


def likelihood_scores(models: Sequence[Any], tokenizer: Any, prompts: Sequence[str],
                      candidates: Sequence[Sequence[str]]) -> tuple[Scores, Cost]:  # fmt: skip
    """A model's log P(candidate, end of turn | prompt) per token, for each distinct candidate of
    each prompt; `models[i]` scores prompt i's (a router's specialist, say)."""
    import torch

    from deepscape.generate import continuation_logprobs
    from deepscape.tuning import chat_prompt_ids, end_of_turn, merged

    stop, cost = end_of_turn(tokenizer), Cost()
    found: list[list[float]] = [[] for _ in prompts]
    started = time.perf_counter()
    for model in {id(m): m for m in models}.values():  # each model's adapter merged in once
        with merged(model) as lm, torch.inference_mode():
            for i in (i for i, m in enumerate(models) if m is model):
                row = chat_prompt_ids(tokenizer, prompts[i])
                tails = [[*tokenizer.encode(c, add_special_tokens=False), stop]
                         for c in candidates[i]]  # fmt: skip
                scores = continuation_logprobs(lm, [row], tails)[0].tolist() if tails else []
                found[i] = [s / len(t) for s, t in zip(scores, tails, strict=True)]
                cost.read += len(row) + sum(len(t) for t in tails)
    cost.seconds = time.perf_counter() - started
    return found, cost


def _regroup(flat: list[float], groups: Sequence[Sequence[str]]) -> list[list[float]]:
    out, at = [], 0
    for group in groups:
        out.append(flat[at : at + len(group)])
        at += len(group)
    return out


def distinct(kind: str, texts: Sequence[str]) -> list[str]:
    """One sample per distinct final answer (the first written), in order of first appearance:
    a verifier scores each answer once."""
    seen: dict[str, str] = {}
    for text in texts:
        seen.setdefault(final_answer(kind, text) or text, text)
    return list(seen.values())


def best(candidates: Sequence[str], scores: Sequence[float]) -> str:
    """The candidate a verifier scores highest (the first of equals)."""
    return candidates[max(range(len(scores)), key=scores.__getitem__)] if candidates else ""
