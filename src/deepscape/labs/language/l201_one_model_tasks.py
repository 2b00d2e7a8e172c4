"""language/201/one-model's tasks: every problem as an instruction, a text and an answer.

A task is an instruction (the same for all its items), items to test on and a separate pool the
demonstrations and the LoRA's training examples come from — never a test item. Classification
tasks name their labels (the answer is read as the likeliest label, as language/101/transfer
reads an LLM); the others are answered by greedy generation and judged by exact match (any of
the accepted answers) or, for summaries, ROUGE-L.

Offline: movie-review sentiment (gensim's 200 MR sentences), the Factbook's capitals, numbers
read out of a Factbook entry (extraction), one-sentence summaries of Factbook backgrounds and
sums of two numbers. With data_dir= (../shared/data): SST-2 in place of MR, TREC question types,
AG News topics and bAbI task 1.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deepscape.data import DataUnavailable, get_dataset
from deepscape.data.factbook import Country, countries, sentences
from deepscape.data.qa import load_babi
from deepscape.labs.language.l101_transfer import SENTIMENT, TASKS
from deepscape.tuning import Example

SUMMARY_WORDS = 70  # a background is cut to its first sentences within this many words


@dataclass(frozen=True)
class Item:
    text: str  # what the user's message holds after the instruction
    answers: tuple[str, ...]  # accepted answers, the first the one a demonstration shows


@dataclass
class Task:
    name: str
    instruction: str
    metric: str  # "accuracy", "exact match" or "ROUGE-L"
    test: list[Item]
    pool: list[Item]  # demonstrations and training examples, apart from the test items
    source: str
    labels: list[str] = field(default_factory=list)  # a classification's answers
    max_new_tokens: int = 12

    @property
    def classification(self) -> bool:
        return bool(self.labels)

    def prompt(self, text: str) -> str:
        return f"{self.instruction}\n\n{text}"

    def examples(self, items: list[Item]) -> list[Example]:
        """`items` as prompt → answer examples (demonstrations, training data)."""
        return [Example(self.prompt(item.text), item.answers[0]) for item in items]


# -- classification -------------------------------------------------------------------------------
def _sentence_task(name: str, dataset: str, data_dir: Path | None, question: str, n: int,
                   seed: int) -> Task:  # fmt: skip
    data = get_dataset(dataset, data_dir)
    test = [Item(t, (data.classes[y],)) for t, y in zip(data.test.texts,
            data.test.targets.tolist(), strict=True)]  # fmt: skip
    pool = [Item(t, (data.classes[y],)) for t, y in zip(data.train.texts,
            data.train.targets.tolist(), strict=True)]  # fmt: skip
    return Task(name, question, "accuracy", _sample(test, n, seed), pool, data.source,
                labels=list(data.classes))  # fmt: skip


def sentiment(data_dir: Path | None, n: int, seed: int) -> Task:
    if data_dir is None:  # the 200 MR sentences that gensim ships: the offline default
        return _sentence_task("sentiment (MR)", "mr-200", None, SENTIMENT.question, n, seed)
    return _sentence_task("sentiment (SST-2)", "sst2", data_dir / "sentclf", SENTIMENT.question,
                          n, seed)  # fmt: skip


def trec(data_dir: Path | None, n: int, seed: int) -> Task:
    folder = _needs(data_dir, "sentclf/TREC.test.all", "trec")
    return _sentence_task("question type (TREC)", "trec", folder / "sentclf",
                          TASKS["trec"].question, n, seed)  # fmt: skip


AG_NEWS = ["world", "sports", "business", "technology"]  # Sci/Tech as one word (Zhao et al.)


def ag_news(data_dir: Path | None, n: int, seed: int) -> Task:
    """AG News' test split (7,600 titles and descriptions, 4 topics): the test items and, from the
    rest, the demonstrations (no training split is kept here)."""
    path = _needs(data_dir, "ag_news/test.csv", "ag-news") / "ag_news" / "test.csv"
    with open(path, encoding="utf-8", newline="") as file:
        rows = [row for row in csv.reader(file) if len(row) == 3]
    items = [Item(f"{_clean(title)}. {_clean(text)}", (AG_NEWS[int(label) - 1],))
             for label, title, text in rows]  # fmt: skip
    random.Random(seed).shuffle(items)
    question = ("What is the topic of this news article? Answer with one word: world, sports, "
                "business or technology.")  # fmt: skip
    return Task("news topic (AG News)", question, "accuracy", items[:n], items[n:],
                f"{path} (AG News test split)", labels=AG_NEWS)  # fmt: skip


def _clean(text: str) -> str:
    """AG News' escapes: a backslash for a line break, '#36;' for '$', '&lt;b&gt;' tags."""
    return " ".join(text.replace("\\", " ").replace("#36;", "$").replace("#39;", "'").split())


# -- the Factbook ---------------------------------------------------------------------------------
def _split_countries(keep: Callable[[Country], bool], n: int, seed: int) -> tuple[list, list]:
    chosen = [c for c in countries() if keep(c)]
    random.Random(seed).shuffle(chosen)
    return chosen[:n], chosen[n:]


def capitals(n: int, seed: int) -> Task:
    """Closed book: what the model knows. "What is the capital of Peru?" → Lima."""
    test, pool = _split_countries(lambda c: bool(c.capital), n, seed)

    def item(c: Country) -> Item:
        return Item(f"What is the capital of {c.name}?", c.capital)

    return Task("capital (Factbook)", "Answer with the name of the city only.", "exact match",
                [item(c) for c in test], [item(c) for c in pool],
                "CIA World Factbook: Government → Capital → name")  # fmt: skip


def extraction(n: int, seed: int) -> Task:
    """Open book: read a number out of a Factbook entry (population, or area, in turn)."""
    test, pool = _split_countries(lambda c: bool(c.capital and c.population and c.area), n, seed)

    def item(c: Country, i: int) -> Item:
        area = c.area
        entry = (f"Country: {c.name}\nCapital: {c.capital[0]}\nArea: {area}\n"
                 f"Population: {c.population}")  # fmt: skip
        if i % 2 == 0:
            return Item(f"{entry}\n\nWhat is the population?", (c.population,))
        return Item(f"{entry}\n\nWhat is the area?", (area, area.removesuffix(" sq km")))

    instruction = "Answer the question from the Factbook entry, with the figure only."
    return Task("extraction (Factbook)", instruction, "exact match",
                [item(c, i) for i, c in enumerate(test)],
                [item(c, i) for i, c in enumerate(pool)],
                "CIA World Factbook: Population → total, Area → total")  # fmt: skip


def summaries(n: int, seed: int) -> Task:
    """A background's opening sentence, held out, is the reference summary of the sentences
    after it (cut to SUMMARY_WORDS words): the Factbook's own one-line introduction."""
    test, pool = _split_countries(lambda c: len(sentences(c.background)) >= 3, n, seed)

    def item(c: Country) -> Item:
        first, *rest = sentences(c.background)
        text, words = [], 0
        for sentence in rest:
            if text and words + len(sentence.split()) > SUMMARY_WORDS:
                break
            text.append(sentence)
            words += len(sentence.split())
        return Item(" ".join(text), (first,))

    instruction = "Summarise this history of a country in one sentence."
    return Task("summary (Factbook)", instruction, "ROUGE-L", [item(c) for c in test],
                [item(c) for c in pool],
                "CIA World Factbook: Introduction → Background (its first sentence held out)",
                max_new_tokens=48)  # fmt: skip


# -- bAbI and arithmetic --------------------------------------------------------------------------
def babi(data_dir: Path | None, n: int, seed: int) -> Task:
    """bAbI task 1 (Weston et al. 2015): a short story of people moving about, then "Where is
    Mary?". The story up to the question is the text; its answer is one place."""
    folder = _needs(data_dir, "babi-qa1/qa1_single-supporting-fact_test.txt", "babi")
    parts = {split: [Item("\n".join([*q.story, "", q.question]), (q.answer,)) for q in questions]
             for split, questions in load_babi(folder, task=1).items()}  # fmt: skip
    test = _sample(parts["test"], n, seed)
    source = f"{folder / 'babi-qa1'} (en-10k)"
    return Task("where is (bAbI 1)", "Read the story and answer with one word.", "exact match",
                test, parts["train"], source, max_new_tokens=6)  # fmt: skip


def arithmetic(n: int, seed: int, digits: int = 2) -> Task:
    """Sums of two random numbers of `digits` digits; the demonstrations come from another
    stream of numbers than the test."""

    def draw(generator: random.Random, count: int) -> list[Item]:
        low, high = 10 ** (digits - 1), 10**digits - 1
        pairs = [(generator.randint(low, high), generator.randint(low, high)) for _ in range(count)]
        return [Item(f"What is {a} + {b}?", (str(a + b),)) for a, b in pairs]

    source = f"sums of two {digits}-digit numbers, drawn at random"
    return Task("arithmetic (sums)", "Answer with the number only.", "exact match",
                draw(random.Random(seed), n), draw(random.Random(seed + 10_000), 1000), source,
                max_new_tokens=6)  # fmt: skip


# -- which tasks -----------------------------------------------------------------------------------
OFFLINE = ("sentiment", "capital", "extraction", "summary", "arithmetic")
NEED_DATA = {"trec": "sentclf/TREC.test.all", "ag-news": "ag_news/test.csv",
             "babi": "babi-qa1/qa1_single-supporting-fact_test.txt"}  # fmt: skip
NAMES = ("sentiment", "trec", "ag-news", "capital", "extraction", "babi", "summary", "arithmetic")


def _needs(data_dir: Path | None, relative: str, task: str) -> Path:
    if data_dir is None or not (data_dir / relative).is_file():
        where = "data_dir=" if data_dir is None else f"data_dir={data_dir}"
        raise DataUnavailable(f"task {task} needs {relative} under {where}: give data_dir=FOLDER "
                              "holding it (../shared/data), or leave the task out")  # fmt: skip
    return data_dir


def available(data_dir: Path | None) -> list[str]:
    """The tasks whose data is here: the offline ones, and those data_dir holds."""
    here = {*OFFLINE}
    if data_dir is not None:
        here |= {name for name, relative in NEED_DATA.items() if (data_dir / relative).is_file()}
    return [name for name in NAMES if name in here]


def load(name: str, data_dir: Path | None, n: int, seed: int, digits: int = 2) -> Task:
    if name == "sentiment":
        return sentiment(data_dir, n, seed)
    if name == "trec":
        return trec(data_dir, n, seed)
    if name == "ag-news":
        return ag_news(data_dir, n, seed)
    if name == "capital":
        return capitals(n, seed)
    if name == "extraction":
        return extraction(n, seed)
    if name == "babi":
        return babi(data_dir, n, seed)
    if name == "summary":
        return summaries(n, seed)
    if name == "arithmetic":
        return arithmetic(n, seed, digits)
    raise DataUnavailable(f"no task {name!r}")


def _sample(items: list[Item], n: int, seed: int) -> list[Item]:
    """n items drawn at random (all of them for n ≤ 0 or n ≥ their number)."""
    if n <= 0 or n >= len(items):
        return list(items)
    return random.Random(seed).sample(items, n)
