"""language/301/hallucinations' questions: some with a known answer, some with none at all.

- factbook (offline default): language/201/augmented-search's Factbook passages, and questions
  asked of five fields — capital, population, total area, internet country code, independence.
  Answerable: the field holds one plain answer. Unanswerable, two ways: (a) the same field of a
  country whose entry lacks it or says "none" ("When did Aruba become independent?": it did
  not; "What is the capital of Antarctica?"), (b) any field of a made-up country ("What is the
  capital of Norvania?"), named so that no Factbook name is in it.
- squad: SQuAD 2.0 JSON (`data_dir`: dev-v2.0.json or train-v2.0.json, or the file), or the
  hub's rajpurkar/squad_v2 validation split online; questions marked `is_impossible` have no
  answer in their paragraph. The paragraphs are the passages searched.

A question without answers (`answers == ()`) is unanswerable: the only right reply is to abstain.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from deepscape.data import DataUnavailable
from deepscape.data.factbook import countries, folder, plain
from deepscape.labs.language.l201_augmented_search_data import Corpus, Question, factbook, squad

DATE = re.compile(r"\d{1,2} [A-Z][a-z]+ \d{4}")  # "4 July 1776"
# the question of each field, asked of a name (made-up countries are asked all of them)
ASKED = {
    "capital": "What is the capital of {}?",
    "population": "What is the population of {}?",
    "area": "What is the total area of {}?",
    "internet code": "What is the internet country code of {}?",
    "independence": "When did {} become independent?",
}
# made-up names: a start and an end no Factbook name shares (checked in `made_up_names`)
STARTS = ("Nor", "Val", "Kes", "Tar", "Zan", "Ost", "Quel", "Dra", "Ven", "Sar", "Thal",
          "Ard", "Brel", "Cald", "Fen", "Gor", "Hess", "Ith", "Lum", "Mir", "Pell", "Rhun", "Sk",
          "Tov")  # fmt: skip
ENDS = ("vania", "lund", "istan", "oria", "ador", "mark", "onia", "uay", "esia", "ovia", "heim",
        "avia")  # fmt: skip


@dataclass
class Split:
    """Questions for choosing thresholds (calibration) and for measuring (test), never mixed."""

    calibration: list[Question]
    test: list[Question]


def field_text(entry: dict, section: str, name: str) -> str:
    value = entry.get(section, {}).get(name)
    return plain(value["text"]) if isinstance(value, dict) and "text" in value else ""


def lacks(text: str) -> bool:
    """Whether a field says nothing or says there is none ("none (territory of the US)")."""
    return not text or text.lower().startswith("none")


def factbook_corpus(how: str, words: int, overlap: int) -> Corpus:
    """The Factbook's passages (language/201/augmented-search's) and every question of ASKED,
    answerable or not, about its countries and about made-up ones."""
    base = factbook(how, words, overlap)  # passages, and capital, population and area questions
    questions = list(base.questions)
    for country in countries():
        entry = json.loads((folder() / country.region / f"{country.code}.json").read_text("utf-8"))
        capital = entry.get("Government", {}).get("Capital")
        independence = field_text(entry, "Government", "Independence")
        code = field_text(entry, "Communications", "Internet country code")
        gone = {"capital": not capital, "independence": lacks(independence),
                "internet code": lacks(code)}  # fmt: skip
        missing = [kind for kind, lacking in gone.items() if lacking]
        for kind in missing:
            questions.append(Question(ASKED[kind].format(country.name), (), country.code,
                                      f"missing {kind}"))  # fmt: skip
        if re.fullmatch(r"\.[a-z]{2}", code):
            questions.append(Question(ASKED["internet code"].format(country.name), (code,),
                                      country.code, "internet code"))  # fmt: skip
        date = DATE.match(independence)
        if date and not lacks(independence):
            questions.append(Question(ASKED["independence"].format(country.name),
                                      (date.group(),), country.code, "independence"))  # fmt: skip
    kinds = list(ASKED)
    for n, name in enumerate(made_up_names(100)):
        kind = kinds[n % len(kinds)]
        questions.append(Question(ASKED[kind].format(name), (), "", f"made-up {kind}"))
    return Corpus("factbook", base.passages, questions)


def made_up_names(count: int, seed: int = 0) -> list[str]:
    """`count` country names that are not in the Factbook and hold none of its names."""
    known = {c.name.lower() for c in countries()} | {"veloria"}  # the reader's demo country
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < count:
        name = rng.choice(STARTS) + rng.choice(ENDS)
        lowered = name.lower()
        if name not in names and not any(k in lowered or lowered in k for k in known):
            names.append(name)
    return names


def squad_v2(data_dir: str | None, how: str, words: int, overlap: int,
             documents: int = 0) -> Corpus:  # fmt: skip
    """SQuAD 2.0 through augmented-search's loader: from `data_dir` (its JSON, or a folder
    holding it), else the hub's rajpurkar/squad_v2 validation split (online)."""
    return squad(data_dir, how, words, overlap, documents, version="2.0")  # type: ignore[arg-type]


def split(questions: list[Question], per_split: int, seed: int) -> Split:
    """`per_split` answerable and `per_split` unanswerable questions for each of calibration
    and test, drawn at random; the unanswerable ones take each kind in turn (the Factbook's:
    half about fields countries lack, half about made-up countries)."""
    rng = random.Random(seed)
    answerable = [q for q in questions if q.answers]
    rng.shuffle(answerable)
    by_kind: dict[str, list[Question]] = {}
    for q in questions:
        if not q.answers:
            by_kind.setdefault(q.kind, []).append(q)
    for pool in by_kind.values():
        rng.shuffle(pool)
    # made-up and missing fields alternate, and within each the fields take turns
    kinds = sorted(by_kind)
    made_up = interleave([by_kind[k] for k in kinds if k.startswith("made-up")])
    others = interleave([by_kind[k] for k in kinds if not k.startswith("made-up")])
    unanswerable = interleave([made_up, others])
    need = 2 * per_split
    if len(answerable) < need or len(unanswerable) < need:
        raise DataUnavailable(
            f"questions={per_split} needs {need} answerable and {need} unanswerable questions; "
            f"the corpus has {len(answerable)} and {len(unanswerable)}: give questions ≤ "
            f"{min(len(answerable), len(unanswerable)) // 2}"
        )
    # pairs (a made-up country, a missing field) go to test and calibration in turn
    chosen = list(enumerate(unanswerable[:need]))
    test = answerable[:per_split] + [q for i, q in chosen if i % 4 < 2]
    calibration = answerable[per_split:need] + [q for i, q in chosen if i % 4 >= 2]
    return Split(calibration=calibration, test=test)


def interleave(pools: list[list[Question]]) -> list[Question]:
    """The first of each pool, then the second of each…: every kind in turn."""
    out, longest = [], max((len(p) for p in pools), default=0)
    for n in range(longest):
        out += [p[n] for p in pools if n < len(p)]
    return out
