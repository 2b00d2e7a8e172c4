"""The essential papers: for each track and level, the papers behind its labs (papers.toml).

A paper's entry holds its citation, its one idea in a sentence, the labs that implement it and the
paper's own headline number, typed from the paper (a citation). Our number is never typed: the
entry says where to read it, in one of two kinds of reference, tried in order —

    [[papers.ours]]                          # your runs: the best finished run of a lab whose
    lab = "vision/201/architectures"         # config has every `where` value
    metric = "test_accuracy"                 # a key of the run's summary metrics
    where = { arch = "resnet", dataset = "cifar10" }
    what = "ResNet-20 trained here on CIFAR-10"

    [[papers.ours]]                          # the project's: one cell of docs/benchmarks.md
    section = "vision_201_architectures_degradation"   # its <!-- name --> markers
    row = { net = "resnet-20" }              # the row whose cells say so (none: the only row)
    column = "test accuracy"
    what = "ResNet-20 on a tenth of Fashion-MNIST, 4 epochs"

— and beside the paper's number stands the first that holds a number, or "not measured yet".
Which run is best comes from the metrics registry, or from the reference's `best` (highest,
lowest) for a number the registry does not know.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from deepscape import landscape, metrics
from deepscape.config import closest
from deepscape.runs import RunStore

# docs/benchmarks.md of the checkout this package runs from (absent from an installed wheel)
BENCHMARKS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
NOT_MEASURED = "not measured yet"
SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
EMPTY_CELLS = ("", "-", "–", "—")


class UnknownPaper(LookupError):
    """No paper by that name in the catalogue."""


@dataclass(frozen=True)
class Result:
    """The paper's headline number, as the paper reports it (or, with no value, what it shows)."""

    value: float | None = None
    unit: str = ""
    dataset: str = ""
    note: str = ""

    def __str__(self) -> str:
        if self.value is None:
            return self.note
        text = f"{self.value:,g} {self.unit} on {self.dataset}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class FromRuns:
    """Our number from the run store: `metric` of the best finished run of `lab` whose config
    has every `where` value."""

    lab: str
    metric: str
    what: str
    where: dict[str, str] = field(default_factory=dict)
    best: str = ""  # "highest" or "lowest"; "" for the registry's direction
    format: str = ""  # a str.format pattern; "" for the registry's

    def higher_is_better(self) -> bool:
        return self.best == "highest" if self.best else metrics.get(self.metric).higher_is_better

    def show(self, value: float) -> str:
        return self.format.format(value) if self.format else metrics.show(self.metric, value)

    def describe(self) -> str:
        settings = " ".join(f"{k}={v}" for k, v in self.where.items())
        return f"{self.metric} of your runs of {self.lab}" + (
            f" with {settings}" if settings else ""
        )


@dataclass(frozen=True)
class FromBenchmarks:
    """Our number from docs/benchmarks.md: the cell in `column` of the row whose cells say `row`,
    in the section between `<!-- section -->` and `<!-- /section -->`."""

    section: str
    column: str
    what: str
    row: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        row = ", ".join(f"{k} = {v}" for k, v in self.row.items()) or "its only row"
        return f"docs/benchmarks.md, section {self.section}: {self.column} of {row}"


Reference = FromRuns | FromBenchmarks


@dataclass(frozen=True)
class Measured:
    value: float | None  # the number (None: a cell with text only)
    text: str  # as people read it, unit included
    source: str  # which run, or which benchmark section and its date


@dataclass(frozen=True)
class Paper:
    id: str
    track: str
    level: int
    authors: str
    year: int
    title: str
    venue: str
    idea: str
    labs: tuple[str, ...]
    result: Result
    ours: tuple[Reference, ...] = ()
    link: str = ""

    @property
    def short_authors(self) -> str:
        """'He et al.', 'Ho and Salimans', 'Kim': the family names as a citation gives them."""
        names = [name.split()[-1] for name in self.authors.split(", ")]
        return names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else (
            f"{names[0]} et al."
        )  # fmt: skip

    @property
    def citation(self) -> str:
        return f"{self.authors} ({self.year}). {self.title}. {self.venue}."


@dataclass(frozen=True)
class Catalogue:
    papers: tuple[Paper, ...]

    @property
    def ids(self) -> list[str]:
        return [paper.id for paper in self.papers]

    def paper(self, name: str) -> Paper:
        for paper in self.papers:
            if paper.id == name:
                return paper
        hint = closest(name, self.ids) or " (see `deepscape papers`)"
        raise UnknownPaper(f"unknown paper '{name}'{hint}")

    def shelf(self, track: str | None = None, level: int | None = None) -> list[Paper]:
        """The papers of a track and level (None: every track, every level): shelf by shelf in
        the catalogue's order, oldest first on each."""
        if track is not None and track not in (tracks := sorted({p.track for p in self.papers})):
            raise UnknownPaper(f"no papers for track '{track}'{closest(track, tracks)}")
        if level is not None and level not in landscape.LEVELS:
            raise UnknownPaper(
                f"level {level} is not one of {', '.join(map(str, landscape.LEVELS))}"
            )
        chosen = [
            p
            for p in self.papers
            if (track is None or p.track == track) and (level is None or p.level == level)
        ]
        shelves = list(dict.fromkeys((p.track, p.level) for p in self.papers))
        return sorted(chosen, key=lambda p: (shelves.index((p.track, p.level)), p.year))

    def problems(self, the_map: landscape.Landscape) -> list[str]:
        """Everything wrong with the catalogue against the map (empty when it is consistent)."""
        problems = []
        labs = {lab.id: lab for lab in the_map.labs}
        lab_names = {*labs, *(lab.slug for lab in the_map.labs)}
        levels = {(level.track, level.level) for level in the_map.levels}
        if len(set(self.ids)) != len(self.ids):
            problems.append("duplicate paper ids")
        for paper in self.papers:
            if not SLUG.fullmatch(paper.id):
                problems.append(f"{paper.id}: an id is lower-case words joined by dashes")
            if paper.id in lab_names:  # `deepscape show NAME` must know which one is meant
                problems.append(f"{paper.id}: a lab has that name too")
            if (paper.track, paper.level) not in levels:
                problems.append(f"{paper.id}: {paper.track} {paper.level} is not on the map")
            if not paper.labs:
                problems.append(f"{paper.id}: name the lab that implements it")
            problems += [f"{paper.id}: unknown lab {lab}" for lab in paper.labs if lab not in labs]
            if paper.result.value is None and not paper.result.note:
                problems.append(f"{paper.id}: the paper's number, or a note saying why none")
            if paper.result.value is not None and not (paper.result.unit and paper.result.dataset):
                problems.append(f"{paper.id}: the paper's number needs its unit and dataset")
            for ref in paper.ours:
                if not ref.what:
                    problems.append(f"{paper.id}: say `what` each number of ours measures")
                if isinstance(ref, FromBenchmarks):
                    continue
                if ref.lab not in paper.labs:
                    problems.append(f"{paper.id}: {ref.lab} is not among the paper's labs")
                elif not labs[ref.lab].available:
                    problems.append(f"{paper.id}: {ref.lab} is planned, so it has no runs to read")
                if ref.best not in ("", "highest", "lowest"):
                    problems.append(f"{paper.id}: best is highest or lowest, not '{ref.best}'")
                if not ref.best and not metrics.is_registered(ref.metric):
                    problems.append(
                        f"{paper.id}: {ref.metric} is not in the metrics registry: set best"
                    )
        return problems


# -- the catalogue ---------------------------------------------------------------------------------
@cache
def load() -> Catalogue:
    """The catalogue shipped with the package (checked against the map: a broken entry is an
    error, not a guess)."""
    text = resources.files("deepscape").joinpath("papers.toml").read_text()
    return parse(tomllib.loads(text), landscape.load())


def parse(data: dict[str, Any], the_map: landscape.Landscape) -> Catalogue:
    catalogue = Catalogue(tuple(_paper(entry) for entry in data["papers"]))
    if problems := catalogue.problems(the_map):
        raise ValueError("papers.toml is inconsistent: " + "; ".join(problems))
    return catalogue


def _paper(entry: dict[str, Any]) -> Paper:
    return Paper(
        **{k: v for k, v in entry.items() if k not in ("labs", "result", "ours")},
        labs=tuple(entry.get("labs", ())),
        result=Result(**entry.get("result", {})),
        ours=tuple(_reference(ref) for ref in entry.get("ours", ())),
    )


def _reference(ref: dict[str, Any]) -> Reference:
    if "section" in ref:
        return FromBenchmarks(**{**ref, "row": _as_text(ref.get("row", {}))})
    return FromRuns(**{**ref, "where": _as_text(ref.get("where", {}))})


def _as_text(values: dict[str, Any]) -> dict[str, str]:
    """Config values as the run store compares them: text, `true` and `false` for booleans."""
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}


def lab_or_paper(name: str, the_map: landscape.Landscape) -> landscape.Lab | Paper:
    """What `deepscape show NAME` shows: a paper by its id, else a lab; an unknown name is
    answered with the closest name of either kind."""
    catalogue = load()
    if name in catalogue.ids:
        return catalogue.paper(name)
    try:
        return the_map.lab(name)
    except landscape.UnknownLab as not_a_lab:
        lab_names = [*(lab.id for lab in the_map.labs), *(lab.slug for lab in the_map.labs)]
        hint = closest(name, [*lab_names, *catalogue.ids])
        if hint and hint.split("'")[1] in catalogue.ids:
            raise UnknownPaper(f"unknown lab or paper '{name}'{hint}") from None
        raise not_a_lab from None


# -- our numbers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """A paper with each of its references to our numbers read (None: not measured yet)."""

    paper: Paper
    ours: tuple[tuple[Reference, Measured | None], ...]

    @property
    def beside(self) -> tuple[Reference, Measured] | None:
        """The number shown beside the paper's, with its reference: the first that holds one."""
        return next(((ref, measured) for ref, measured in self.ours if measured), None)

    @property
    def first(self) -> Measured | None:
        return self.beside[1] if self.beside else None

    @property
    def yours(self) -> Measured | None:
        """The first number from your own runs."""
        return next((m for ref, m in self.ours if m and isinstance(ref, FromRuns)), None)

    def as_json(self) -> dict[str, Any]:
        paper = self.paper
        return {
            "id": paper.id,
            "track": paper.track,
            "level": paper.level,
            "citation": paper.citation,
            "authors": paper.authors,
            "year": paper.year,
            "title": paper.title,
            "venue": paper.venue,
            "link": paper.link,
            "idea": paper.idea,
            "labs": list(paper.labs),
            "paper": {**vars(paper.result), "text": str(paper.result)},
            "ours": [
                {
                    "from": "runs" if isinstance(ref, FromRuns) else "benchmarks",
                    **vars(ref),
                    "value": measured.value if measured else None,
                    "text": measured.text if measured else NOT_MEASURED,
                    "source": measured.source if measured else None,
                }
                for ref, measured in self.ours
            ],
            "measured": self.first is not None,
        }


def read(
    papers: list[Paper], store: RunStore, benchmarks: Path | None = BENCHMARKS
) -> list[Reading]:
    """Each paper with our numbers read from `store` and the `benchmarks` file (None or a missing
    file: no benchmark numbers)."""
    text = benchmarks.read_text() if benchmarks and benchmarks.is_file() else ""
    return [
        Reading(paper, tuple((ref, measure(ref, store, text)) for ref in paper.ours))
        for paper in papers
    ]


def measure(ref: Reference, store: RunStore, benchmarks_text: str) -> Measured | None:
    if isinstance(ref, FromRuns):
        return best_run(ref, store)
    try:
        cell, title, date = read_cell(benchmarks_text, ref.section, ref.row, ref.column)
    except LookupError:  # the section or row is gone: no number, rather than a wrong one
        return None
    text = cell.replace("**", "").strip()
    if text in EMPTY_CELLS:
        return None
    number = NUMBER.search(text)
    value = float(number.group().replace(",", "")) if number else None
    return Measured(value, text, f"docs/benchmarks.md: {title}" + (f" ({date})" if date else ""))


def best_run(ref: FromRuns, store: RunStore) -> Measured | None:
    found = [
        (run.id, value)
        for run in store.list(ref.lab, status="finished", where=ref.where)
        if isinstance(value := run.summary.get("metrics", {}).get(ref.metric), int | float)
    ]
    if not found:
        return None
    sign = 1 if ref.higher_is_better() else -1
    run_id, value = max(found, key=lambda pair: sign * pair[1])
    runs = f", best of {len(found)}" if len(found) > 1 else ""
    return Measured(float(value), ref.show(value), f"your run {run_id}{runs}")


def read_cell(text: str, section: str, row: dict[str, str], column: str) -> tuple[str, str, str]:
    """The cell in `column` of the one row whose cells say `row` (no row given: the table's only
    row), among the tables of `section` of a benchmarks file; with the section's title and date.
    Raises LookupError naming what is missing or ambiguous."""
    name = re.escape(section)
    match = re.search(rf"<!-- {name} -->\n(.*?)<!-- /{name} -->", text, re.S)
    if not match:
        raise LookupError(f"no section '{section}' in the benchmarks")
    body = match.group(1)
    title = re.search(r"^## (.+)$", body, re.M)
    date = re.search(r"^Date: (\S+)", body, re.M)
    found = []
    for header, rows in _tables(body):
        if column not in header or any(key not in header for key in row):
            continue
        if not row and len(rows) == 1:
            found.append(rows[0][header.index(column)])
        elif row:
            found += [
                cells[header.index(column)]
                for cells in rows
                if all(cells[header.index(key)] == value for key, value in row.items())
            ]
    where = f"'{column}' of {row or 'a one-row table'} in section '{section}'"
    if len(found) != 1:
        raise LookupError(f"{len(found)} cells match {where}: name the row by more of its cells")
    return found[0], title.group(1) if title else section, date.group(1) if date else ""


def _tables(body: str) -> list[tuple[list[str], list[list[str]]]]:
    """The markdown tables of `body`: each its header cells and its rows' cells."""
    tables, lines = [], []
    for line in [*body.splitlines(), ""]:
        if line.startswith("|"):
            inside = line.strip().removeprefix("|").removesuffix("|")
            lines.append([cell.strip() for cell in inside.split("|")])
        elif lines:
            header, _separator, *rows = lines
            tables.append((header, [r for r in rows if len(r) == len(header)]))
            lines = []
    return tables
