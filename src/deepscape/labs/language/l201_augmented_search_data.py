"""language/201/augmented-search's corpora: passages to search, questions with checkable answers.

- factbook (offline default): each country's fact sheet (`data.factbook.fact_sheet`: the
  background, then fields such as Capital and Population) is the document; questions are asked of
  its structured fields — "What is the capital of Chile?" — so every answer is known.
- wikipedia (offline): gensim's 206 Wikipedia pages, cleaned of their markup. No answers ship with
  them: a question names a page ("What is anarchism?") and the page's passages are relevant, so
  only retrieval is scored.
- squad: SQuAD-format JSON (`data_dir` holding train-v1.1.json or dev-v1.1.json, or a file), or
  the hub's rajpurkar/squad validation split online. Each paragraph is a document.

A passage is relevant to a question when it comes from the question's document and holds one of
its answers (a question without answers: any passage of its document).
"""

from __future__ import annotations

import bz2
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from deepscape.config import ConfigError
from deepscape.data import DataUnavailable
from deepscape.data.factbook import countries, fact_sheet, sentences
from deepscape.models.language import package_folder
from deepscape.retrieval import Passage, chunk_sentences, chunk_words

CorpusName = Literal["factbook", "wikipedia", "squad"]
Chunking = Literal["sentences", "words"]
WIKI_FILE = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SQUAD2_FILES = ("dev-v2.0.json", "train-v2.0.json")
SQUAD_FILES = ("dev-v1.1.json", "train-v1.1.json")


@dataclass(frozen=True)
class Question:
    text: str
    answers: tuple[str, ...]  # accepted answers, the first the reference ("" none: retrieval only)
    doc: str  # the document that answers it
    kind: str = ""  # capital, population, area, page, squad


@dataclass
class Corpus:
    name: str
    passages: list[Passage]
    questions: list[Question]
    relevant: list[set[int]] = field(default_factory=list)  # passages answering each question

    def __post_init__(self) -> None:
        if not self.passages:
            raise ConfigError(f"the {self.name} corpus has no passages: give a corpus with text")
        by_doc: dict[str, list[int]] = {}
        for i, passage in enumerate(self.passages):
            by_doc.setdefault(passage.doc, []).append(i)
        self.relevant = [
            {i for i in by_doc.get(q.doc, []) if holds(self.passages[i].text, q.answers)}
            for q in self.questions
        ]

    @property
    def answerable(self) -> bool:
        return any(q.answers for q in self.questions)


def holds(text: str, answers: tuple[str, ...]) -> bool:
    """Whether `text` contains one of `answers` (any text, when there are none)."""
    lowered = text.lower()
    return not answers or any(a.lower() in lowered for a in answers)


def chunked(doc: str, title: str, pieces: list[str], how: Chunking, words: int,
            overlap: int) -> list[Passage]:  # fmt: skip
    if how == "sentences":
        return chunk_sentences(doc, title, pieces, words=words)
    return chunk_words(doc, title, " ".join(pieces), words=words, overlap=overlap)


# -- the Factbook ----------------------------------------------------------------------------------
def factbook(how: Chunking, words: int, overlap: int, documents: int = 0) -> Corpus:
    passages, questions = [], []
    for country in countries()[: documents or None]:
        passages += chunked(country.code, country.name, fact_sheet(country), how, words, overlap)
        name = country.name
        if country.capital:
            questions.append(Question(f"What is the capital of {name}?", country.capital,
                                      country.code, "capital"))  # fmt: skip
        if country.population:
            questions.append(
                Question(
                    f"What is the population of {name}?",
                    (country.population,),
                    country.code,
                    "population",
                )
            )
        if country.area:
            questions.append(Question(f"What is the total area of {name}?", (country.area,),
                                      country.code, "area"))  # fmt: skip
    return Corpus("factbook", passages, questions)


# -- gensim's Wikipedia pages ---------------------------------------------------------------------
def wikipedia(how: Chunking, words: int, overlap: int, documents: int = 0) -> Corpus:
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    path = package_folder("gensim", WIKI_FILE)
    if path is None:
        raise DataUnavailable("gensim's Wikipedia pages are not here: pip install gensim")
    passages, questions = [], []
    with bz2.open(path) as pages:
        for title, markup, page_id in extract_pages(pages):
            text = " ".join(re.sub(r"={2,}[^=]+={2,}", " ", filter_wiki(markup)).split())
            if len(text.split()) < 50 or text.lower().startswith("#redirect"):
                continue
            passages += chunked(page_id, title, sentences(text), how, words, overlap)
            questions.append(Question(f"What is {title}?", (), page_id, "page"))
            if documents and len(questions) == documents:
                break
    return Corpus("wikipedia", passages, questions)


# -- SQuAD ----------------------------------------------------------------------------------------
def squad(data_dir: str | None, how: Chunking, words: int, overlap: int,
          documents: int = 0, *, version: Literal["1.1", "2.0"] = "1.1") -> Corpus:  # fmt: skip
    """SQuAD (v1.1, or 2.0 with its unanswerable questions: no answers, kind "impossible") from
    `data_dir` (its JSON, or a folder holding it), else the hub's validation split through
    `datasets` (online)."""
    v2 = version == "2.0"
    files, hub, named = (SQUAD2_FILES, "rajpurkar/squad_v2", "SQuAD 2.0") if v2 else (
        SQUAD_FILES, "rajpurkar/squad", "SQuAD")  # fmt: skip
    if data_dir:
        path = Path(data_dir)
        found = [path] if path.is_file() else [path / f for f in files if (path / f).is_file()]
        if not found:
            raise DataUnavailable(f"no {named} JSON in {path}: give a folder holding "
                                  f"{' or '.join(files)}, or the file itself")  # fmt: skip
        try:
            data = json.loads(found[0].read_text(encoding="utf-8"))["data"]
            rows = [(article["title"], paragraph["context"], qa["question"],
                     [a["text"] for a in qa["answers"]], bool(qa.get("is_impossible", False)))
                    for article in data for paragraph in article["paragraphs"]
                    for qa in paragraph["qas"]]  # fmt: skip
        except (ValueError, KeyError, TypeError) as error:
            raise DataUnavailable(f"{found[0]} is not {named} JSON ({type(error).__name__}: "
                                  f"{error}): give the file of {hub}") from None  # fmt: skip
    else:
        import datasets

        try:
            split = datasets.load_dataset(hub, split="validation")
        except Exception as error:  # datasets raises many kinds offline
            raise DataUnavailable(
                f"{named} could not be read from the hub ({type(error).__name__}): go online, or "
                "give data_dir= with its JSON"
            ) from None
        rows = [(r["title"], r["context"], r["question"], r["answers"]["text"],
                 not r["answers"]["text"]) for r in split]  # fmt: skip
    passages, questions, docs = [], [], {}
    for title, context, question, answers, impossible in rows:
        if context not in docs:
            if documents and len(docs) == documents:
                break
            docs[context] = doc = f"{title}/{len(docs)}"
            passages += chunked(doc, title.replace("_", " "), sentences(context), how, words,
                                overlap)  # fmt: skip
        kind = ("impossible" if impossible else "answerable") if v2 else "squad"
        refs = () if v2 and impossible else tuple(dict.fromkeys(answers))
        questions.append(Question(question, refs, docs[context], kind))
    return Corpus("squad_v2" if v2 else "squad", passages, questions)


def load(name: CorpusName, data_dir: str | None, *, how: Chunking, words: int, overlap: int,
         documents: int = 0) -> Corpus:  # fmt: skip
    """The corpus `name`, its first `documents` documents (0: all)."""
    if name == "factbook":
        return factbook(how, words, overlap, documents)
    if name == "wikipedia":
        return wikipedia(how, words, overlap, documents)
    return squad(data_dir, how, words, overlap, documents)
