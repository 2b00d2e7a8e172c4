"""The map: the curriculum as data (landscape.toml), plus the learner's progress on it.

A lab's id is `track/level/slug`; its track and level are read from the id, and an available lab's
code is the module `deepscape.labs.<track>.l<level>_<slug>`. Progress is never stored: it is
computed from the run store each time, so the map cannot disagree with the runs.
"""

from __future__ import annotations

import importlib
import operator
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import ModuleType
from typing import Any

from deepscape import metrics
from deepscape.config import closest
from deepscape.runs import RunStore

LEVELS = (101, 201, 301)
COMPARISONS = {">=": operator.ge, "<=": operator.le}


class UnknownLab(LookupError):
    """No lab by that name on the map."""


class LabNotAvailable(LookupError):
    """The lab is on the map but still planned."""


@dataclass(frozen=True)
class Target:
    metric: str
    op: str
    value: float
    dataset: str
    description: str
    # the bar on other datasets the lab runs on (an offline set, a bigger one), by dataset name
    also: dict[str, float] = field(default_factory=dict)

    def value_on(self, dataset: str | None) -> float | None:
        """The bar for a run on `dataset` (None: a lab with no dataset choice); None: no bar."""
        if dataset is None or dataset == self.dataset:
            return self.value
        return self.also.get(dataset)

    def reached(self, metrics: dict[str, Any], dataset: str | None = None) -> bool | None:
        """Whether `metrics` of a run on `dataset` meet the target; None when the metric was not
        recorded, or the target sets no bar on that dataset."""
        value, bar = metrics.get(self.metric), self.value_on(dataset)
        return None if value is None or bar is None else bool(COMPARISONS[self.op](value, bar))

    def __str__(self) -> str:
        others = "".join(f"; {value:g} on {name}" for name, value in self.also.items())
        return f"{self.metric} {self.op} {self.value:g} on {self.dataset}{others}"


@dataclass(frozen=True)
class Lab:
    id: str
    title: str
    goal: str
    topics: tuple[str, ...]
    prerequisites: tuple[str, ...]
    concepts: tuple[str, ...]
    scope_in: tuple[str, ...]
    scope_out: tuple[str, ...]
    status: str
    target: Target

    @property
    def track(self) -> str:
        return self.id.split("/")[0]

    @property
    def level(self) -> int:
        return int(self.id.split("/")[1])

    @property
    def slug(self) -> str:
        return self.id.split("/")[2]

    @property
    def module_name(self) -> str:
        return f"deepscape.labs.{self.track}.l{self.level}_{self.slug.replace('-', '_')}"

    @property
    def available(self) -> bool:
        return self.status == "available"

    def module(self) -> ModuleType:
        if not self.available:
            raise LabNotAvailable(f"{self.id} is planned, not yet available (see `deepscape map`)")
        return importlib.import_module(self.module_name)


@dataclass(frozen=True)
class Level:
    track: str
    level: int
    title: str
    summary: str


@dataclass(frozen=True)
class Landscape:
    tracks: dict[str, dict[str, str]]
    levels: tuple[Level, ...]
    labs: tuple[Lab, ...]

    def lab(self, name: str) -> Lab:
        """A lab by id (`vision/101/digits`) or by a slug that only one lab has (`digits`)."""
        by_id = {lab.id: lab for lab in self.labs}
        if name in by_id:
            return by_id[name]
        same_slug = [lab for lab in self.labs if lab.slug == name]
        if len(same_slug) > 1:  # prefer the one you can run, if only one can be
            same_slug = [lab for lab in same_slug if lab.available] or same_slug
        if len(same_slug) == 1:
            return same_slug[0]
        if same_slug:
            ids = " or ".join(lab.id for lab in same_slug)
            raise UnknownLab(f"'{name}' is ambiguous: say {ids}")
        names = [*by_id, *(lab.slug for lab in self.labs)]
        hint = closest(name, names) or " (see `deepscape map`)"
        raise UnknownLab(f"unknown lab '{name}'{hint}")

    def labs_of(self, track: str, level: int) -> list[Lab]:
        return [lab for lab in self.labs if lab.track == track and lab.level == level]

    def problems(self) -> list[str]:
        """Everything wrong with the map (empty when it is consistent)."""
        problems = []
        ids = [lab.id for lab in self.labs]
        known_levels = {(lv.track, lv.level) for lv in self.levels}
        for lab in self.labs:
            parts = lab.id.split("/")
            if len(parts) != 3 or parts[0] not in self.tracks or not parts[1].isdigit():
                problems.append(f"{lab.id}: id must be track/level/slug with a known track")
                continue
            if (lab.track, lab.level) not in known_levels:
                problems.append(f"{lab.id}: level {lab.level} of {lab.track} is not declared")
            if lab.status not in ("available", "planned"):
                problems.append(f"{lab.id}: status must be available or planned")
            if lab.target.op not in COMPARISONS:
                problems.append(f"{lab.id}: target op must be one of {', '.join(COMPARISONS)}")
            for prerequisite in lab.prerequisites:
                if prerequisite not in ids:
                    problems.append(f"{lab.id}: unknown prerequisite {prerequisite}")
                elif int(prerequisite.split("/")[1]) > lab.level:
                    problems.append(f"{lab.id}: prerequisite {prerequisite} is of a higher level")
        if len(set(ids)) != len(ids):
            problems.append("duplicate lab ids")
        problems += [f"prerequisite cycle through {lab}" for lab in _cycles(self.labs)]
        return problems


@cache
def load() -> Landscape:
    """The landscape shipped with the package (checked: a broken map is an error, not a guess)."""
    text = resources.files("deepscape").joinpath("landscape.toml").read_text()
    return parse(tomllib.loads(text))


def parse(data: dict[str, Any]) -> Landscape:
    landscape = Landscape(
        tracks=data["tracks"],
        levels=tuple(Level(**level) for level in data["levels"]),
        labs=tuple(
            Lab(
                **{
                    k: tuple(v) if isinstance(v, list) else v
                    for k, v in lab.items()
                    if k != "target"
                },
                target=Target(**lab["target"]),
            )
            for lab in data["labs"]
        ),
    )
    if problems := landscape.problems():
        raise ValueError("landscape.toml is inconsistent: " + "; ".join(problems))
    return landscape


def _cycles(labs: tuple[Lab, ...]) -> list[str]:
    prerequisites = {lab.id: lab.prerequisites for lab in labs}
    state: dict[str, str] = {}  # "visiting" or "done"
    in_cycle: list[str] = []

    def visit(lab_id: str) -> None:
        state[lab_id] = "visiting"
        for p in prerequisites.get(lab_id, ()):
            if state.get(p) == "visiting":
                in_cycle.append(p)
            elif p not in state:
                visit(p)
        state[lab_id] = "done"

    for lab_id in prerequisites:
        if lab_id not in state:
            visit(lab_id)
    return in_cycle


# -- the learner's progress, computed from recorded runs -----------------------------------------
REACHED, BELOW, NOT_RUN = "reached", "below target", "not run"


@dataclass(frozen=True)
class LabProgress:
    state: str  # REACHED, BELOW or NOT_RUN
    runs: int
    best: float | None  # the best recorded value of the lab's target metric


def progress(landscape: Landscape, store: RunStore) -> dict[str, LabProgress]:
    runs_by_lab: dict[str, list[dict[str, Any]]] = {}
    for run in store.list():
        summary = run.summary
        # the dataset the run used, for labs whose config chooses one: the bar depends on it
        summary["dataset"] = run.config.get("dataset")
        runs_by_lab.setdefault(summary["lab"], []).append(summary)
    result = {}
    for lab in landscape.labs:
        summaries = runs_by_lab.get(lab.id, [])
        judged = [
            (s["metrics"][lab.target.metric], lab.target.reached(s["metrics"], s["dataset"]))
            for s in summaries
            if s.get("status") == "finished"
            and lab.target.metric in s.get("metrics", {})
            and lab.target.value_on(s["dataset"]) is not None
        ]
        best = min((value for value, _ in judged), key=metrics.sort_key(lab.target.metric),
                   default=None)  # fmt: skip
        reached = any(ok for _, ok in judged)
        state = REACHED if reached else BELOW if summaries else NOT_RUN
        result[lab.id] = LabProgress(state=state, runs=len(summaries), best=best)
    return result


def missing_prerequisites(lab: Lab, done: dict[str, LabProgress]) -> list[str]:
    return [p for p in lab.prerequisites if done[p].state != REACHED]


def suggest_next(landscape: Landscape, done: dict[str, LabProgress]) -> Lab | None:
    """The first available lab, in map order, not yet reached and whose prerequisites are."""
    for lab in landscape.labs:
        if lab.available and done[lab.id].state != REACHED and not missing_prerequisites(lab, done):
            return lab
    return None
