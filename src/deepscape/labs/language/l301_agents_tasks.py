"""language/301/agents' tasks: questions whose answers are known, each with the trace of tool
calls that solves it.

Five kinds, each needing a different tool (or two):

- arithmetic: a word problem of two operations ("A shop has 37 boxes of 24 pencils…"):
  calculator, then finish.
- counting: a count or a sum over a range ("How many whole numbers from 1 to 500 are divisible
  by 7 or 11?"): python, then finish.
- neighbour: "What is the capital of the most populous country that borders Portugal?" — lookup
  the country (its borders), lookup each neighbour (their populations), finish with the capital
  of the largest. Only countries with one or two neighbours, all with a population and a capital.
- together: "How many people live in Peru and Chile together?" — lookup, lookup, calculator
  (the sum), finish.
- internet: "What is the internet country code of Portugal?" — search, finish. Only countries
  whose code the search's first passage holds (BM25 misses it for about 45 % of them).

A sixth kind needs no tool at all: bAbI's task 1 (Weston et al. 2015), "Mary went to the
kitchen. … Where is Mary?" — the answer is in the story, and an agent should finish at once.
Its stories come from bAbI's own files (qa1, the lab's `data_dir`), else are written in their format
(the same people, places and verbs): not in the default kinds, whose tools are the lesson.

Held-out tasks are different from the training ones: Factbook questions ask about countries of
their own third of the Factbook (a seeded split), and word problems with the same numbers are
never in both.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepscape.labs.language.l301_agents_tools import FINISH, Record, records

KINDS = ("arithmetic", "counting", "neighbour", "together", "internet")
BABI = "babi"  # not among the default kinds: it needs no tool


@dataclass(frozen=True)
class Call:
    """One step of a reference trace: why, which tool, with what."""

    thought: str
    tool: str
    argument: str


@dataclass(frozen=True)
class Task:
    kind: str
    question: str
    answer: str  # the reference answer
    accepted: tuple[str, ...]  # every accepted answer (numbers: the one value)
    trace: tuple[Call, ...]  # the calls that solve it, finish last

    @property
    def tools(self) -> set[str]:
        return {c.tool for c in self.trace if c.tool != FINISH}

    @property
    def numeric(self) -> bool:
        return self.kind in ("arithmetic", "counting", "together")


# -- checking an answer ---------------------------------------------------------------------------
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    """The last number written in `text` ("10,194,277" → 10194277), None when there is none."""
    found = [n.rstrip(",") for n in NUMBER.findall(text)]
    try:
        return float(found[-1].replace(",", "")) if found else None
    except ValueError:
        return None


def correct(text: str, task: Task) -> bool:
    """Whether `text` answers `task`: for numbers the last number written equals it, for names
    one accepted spelling is in it (as whole words), for a code the code is."""
    if task.numeric:
        value = last_number(text)
        return value is not None and abs(value - float(task.answer)) < 1e-6
    lowered = plain(text)
    return any(re.search(rf"(?<![\w.]){re.escape(plain(a))}(?!\w)", lowered) for a in task.accepted)


def plain(text: str) -> str:
    """Lower case without accents: Brasília and Brasilia are one answer."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower())
                   if not unicodedata.combining(c))  # fmt: skip


# -- arithmetic and counting ----------------------------------------------------------------------
def word_problem(rng: random.Random) -> Task:
    a, b = rng.randint(12, 99), rng.randint(3, 60)
    template = rng.randrange(5)
    if template == 0:
        c = rng.randint(10, a * b - 1)
        question = (f"A shop has {a} boxes of {b} pencils each. It sells {c} pencils. "
                    "How many pencils are left?")  # fmt: skip
        expression, value = f"{a} * {b} - {c}", a * b - c
    elif template == 1:
        c = rng.randint(10, 500)
        question = (f"A train travels {a} km every hour for {b} hours, then {c} km more. "
                    "How many km does it travel in all?")  # fmt: skip
        expression, value = f"{a} * {b} + {c}", a * b + c
    elif template == 2:
        c = rng.randint(1, b - 1) if b > 1 else 0
        question = (f"A farmer packs {a * b} eggs into boxes of {a}. He sells {c} boxes. "
                    "How many boxes are left?")  # fmt: skip
        expression, value = f"{a * b} / {a} - {c}", b - c
    elif template == 3:
        c = a * b + rng.randint(1, 300)
        question = (f"A ticket costs {a} dollars. A family buys {b} tickets and pays with {c} "
                    "dollars. How many dollars of change do they get?")  # fmt: skip
        expression, value = f"{c} - {a} * {b}", c - a * b
    else:
        question = (f"Ann has {a} stamps. Ben has {b} times as many stamps as Ann. How many "
                    "stamps do they have together?")  # fmt: skip
        expression, value = f"{a} + {a} * {b}", a + a * b
    trace = (Call("I compute it with the calculator.", "calculator", expression),
             Call(f"The answer is {value}.", FINISH, str(value)))  # fmt: skip
    return Task("arithmetic", question, str(value), (str(value),), trace)


def counting(rng: random.Random) -> Task:
    n = rng.randint(100, 999)
    if rng.random() < 0.5:
        a, b = rng.sample(range(3, 20), 2)
        question = f"How many whole numbers from 1 to {n} are divisible by {a} or by {b}?"
        code = f"print(sum(1 for k in range(1, {n + 1}) if k % {a} == 0 or k % {b} == 0))"
        value = sum(1 for k in range(1, n + 1) if k % a == 0 or k % b == 0)
    else:
        question = f"What is the sum of the squares of the whole numbers from 1 to {n}?"
        code = f"print(sum(k * k for k in range(1, {n + 1})))"
        value = sum(k * k for k in range(1, n + 1))
    trace = (Call("I count it with Python.", "python", code),
             Call(f"The answer is {value}.", FINISH, str(value)))  # fmt: skip
    return Task("counting", question, str(value), (str(value),), trace)


# -- the Factbook ---------------------------------------------------------------------------------
def split_countries(seed: int) -> tuple[list[Record], list[Record]]:
    """(training, held-out) countries: a seeded third held out."""
    everyone = sorted(records().values(), key=lambda r: r.code)
    random.Random(f"countries-{seed}").shuffle(everyone)
    cut = len(everyone) // 3
    return everyone[cut:], everyone[:cut]


def neighbour(country: Record) -> Task | None:
    table = records()
    around = [table[b.lower()] for b in country.borders]
    if not 1 <= len(around) <= 2 or any(not (r.population and r.capital) for r in around):
        return None
    biggest = max(around, key=lambda r: r.population)
    trace = [Call(f"I need the countries that border {country.name}.", "lookup", country.name)]
    trace += [Call(f"I need the population of {r.name}.", "lookup", r.name) for r in around]
    compared = " > ".join(f"{r.name} {r.population:,}"
                          for r in sorted(around, key=lambda r: -r.population))  # fmt: skip
    why = f"{compared}, so " if len(around) > 1 else ""
    trace.append(Call(f"{why}the answer is the capital of {biggest.name}.", FINISH,
                      biggest.capital))  # fmt: skip
    question = f"What is the capital of the most populous country that borders {country.name}?"
    return Task("neighbour", question, biggest.capital, biggest.capitals, tuple(trace))


def together(first: Record, second: Record) -> Task | None:
    if not (first.population and second.population) or first.code == second.code:
        return None
    total = first.population + second.population
    trace = (
        Call(f"I need the population of {first.name}.", "lookup", first.name),
        Call(f"I need the population of {second.name}.", "lookup", second.name),
        Call("I add the two populations.", "calculator",
             f"{first.population:,} + {second.population:,}"),
        Call(f"The answer is {total:,}.", FINISH, f"{total:,}"),
    )  # fmt: skip
    question = f"How many people live in {first.name} and {second.name} together?"
    return Task("together", question, str(total), (str(total),), trace)


def internet(country: Record, search: Callable[[str], str]) -> Task | None:
    """None when the country has no code, or the search's first passage does not hold it."""
    query = f"internet country code of {country.name}"
    if not country.internet_code or country.internet_code not in search(query):
        return None
    code = country.internet_code
    trace = (Call("I search the Factbook for it.", "search", query),
             Call(f"The passage says {code}.", FINISH, code))  # fmt: skip
    question = f"What is the internet country code of {country.name}?"
    return Task("internet", question, country.internet_code, (country.internet_code,), trace)


def factbook_tasks(kind: str, places: Sequence[Record], search: Callable[[str], str],
                   rng: random.Random) -> list[Task]:  # fmt: skip
    """Every task of `kind` about `places` (together: pairs of them, as many as places)."""
    if kind == "neighbour":
        made = [neighbour(r) for r in places]
    elif kind == "internet":
        made = [internet(r, search) for r in places]
    else:
        made = [together(*rng.sample(list(places), 2)) for _ in places]
    return [t for t in made if t is not None]


# -- bAbI task 1: single supporting fact ----------------------------------------------------------
BABI_PEOPLE = ("Mary", "John", "Daniel", "Sandra")
BABI_PLACES = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
BABI_MOVES = ("moved to", "went to", "journeyed to", "travelled to", "went back to")


def babi_task(story: Sequence[str], question: str, answer: str) -> Task:
    """A question about `story` (its sentences so far), solved by finishing with the place of the
    last sentence that names the person asked about."""
    person = question.split()[-1].rstrip("?")
    last = next((s for s in reversed(story) if s.split()[0] == person), "")
    trace = (Call(f"The last sentence about {person}: {last}", FINISH, answer),)
    return Task(BABI, f"{' '.join(story)} {question}", answer, (answer,), trace)


def babi_story(rng: random.Random) -> Task:
    """A story in qa1's format: 2 to 10 moves, then a question about someone who moved."""
    story = [f"{rng.choice(BABI_PEOPLE)} {rng.choice(BABI_MOVES)} the {rng.choice(BABI_PLACES)}."
             for _ in range(rng.randint(2, 10))]  # fmt: skip
    person = rng.choice(sorted({s.split()[0] for s in story}))
    answer = next(s for s in reversed(story) if s.startswith(person)).split()[-1].rstrip(".")
    return babi_task(story, f"Where is {person}?", answer)


def babi_tasks(babi_dir: str | Path | None) -> tuple[list[Task], list[Task]] | None:
    """(training, test) questions of bAbI's qa1 files in `babi_dir` (`deepscape.data.qa`), None
    without a folder."""
    if babi_dir is None:
        return None
    from deepscape.data.qa import load_babi

    splits = load_babi(babi_dir, task=1)
    train, test = ([babi_task(q.story, q.question, q.answer) for q in splits[part]]
                   for part in ("train", "test"))  # fmt: skip
    return train, test


def generate_tasks(kinds: Sequence[str], train: int, test: int, search: Callable[[str], str],
                   seed: int = 0, *, babi_dir: str | Path | None = None,
                   ) -> tuple[list[Task], list[Task]]:  # fmt: skip
    """(training, held-out) tasks: about `train` and `test` of them, the kinds in turn (a
    Factbook kind gives at most as many as its countries allow). Held-out word problems and
    stories never repeat a training one."""
    train_places, test_places = split_countries(seed)
    babi = babi_tasks(babi_dir) if BABI in kinds else None
    out: tuple[list[Task], list[Task]] = ([], [])
    for part, (count, places) in enumerate([(train, train_places), (test, test_places)]):
        rng = random.Random(f"tasks-{seed}-{part}")
        seen = {t.question for t in out[0]}
        for i, kind in enumerate(kinds):
            want = count // len(kinds) + (i < count % len(kinds))
            if kind == BABI and babi is not None:
                made = [t for t in rng.sample(babi[part], min(want, len(babi[part])))
                        if t.question not in seen]  # fmt: skip
            elif kind in ("arithmetic", "counting", BABI):
                made = []
                maker = {"arithmetic": word_problem, "counting": counting, BABI: babi_story}[kind]
                while len(made) < want:
                    task = maker(rng)
                    if task.question not in seen:
                        seen.add(task.question)
                        made.append(task)
            else:
                made = factbook_tasks(kind, places, search, rng)
                rng.shuffle(made)
            out[part].extend(made[:want])
    return out
