"""One source for a lab's metadata: landscape.toml holds its goal, concepts, scope and target;
the lab's docstring tells the lesson and the commands, and repeats none of them."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from deepscape import landscape

# Headings of the metadata a docstring must leave to the map (`deepscape show LAB` prints it).
HEADINGS = re.compile(
    r"^\s*(goal|new concepts|concepts|scope|in scope|out of scope|target|in|out)\s*:?\s*$"
    r"|^\s*(goal|scope|target|in|out)\s*:",
    re.IGNORECASE | re.MULTILINE,
)
SHARED_WORDS = 8  # a run of this many words in both is a copy, not a coincidence


def docstring(lab: landscape.Lab) -> str:
    path = Path(importlib.util.find_spec(lab.module_name).origin)
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def word_runs(text: str, n: int = SHARED_WORDS) -> set[tuple[str, ...]]:
    words = re.findall(r"[\w%≥≤.-]+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def metadata(lab: landscape.Lab) -> list[str]:
    return [lab.goal, lab.target.description, *lab.concepts, *lab.scope_in, *lab.scope_out]


AVAILABLE = [lab for lab in landscape.load().labs if lab.available]


@pytest.mark.parametrize("lab", AVAILABLE, ids=lambda lab: lab.id)
def test_a_docstring_has_no_heading_of_the_maps_metadata(lab):
    found = [m.group(0).strip() for m in HEADINGS.finditer(docstring(lab))]
    assert not found, f"{lab.id}: {found} belong in landscape.toml"


@pytest.mark.parametrize("lab", AVAILABLE, ids=lambda lab: lab.id)
def test_a_docstring_copies_no_words_of_the_maps_metadata(lab):
    copied = word_runs(docstring(lab)) & set().union(*map(word_runs, metadata(lab)))
    assert not copied, f"{lab.id} repeats landscape.toml: {[' '.join(c) for c in copied]}"


def test_a_docstring_tells_the_lesson_and_the_commands():
    for lab in AVAILABLE:
        text = docstring(lab)
        assert text.startswith(f"{lab.id} — "), lab.id
        assert f"deepscape run {lab.id}" in text, lab.id


def test_the_check_finds_headings_and_copies():
    assert HEADINGS.search("A lab.\n\nTarget\n    ≥ 99 %") and HEADINGS.search("Scope: digits")
    assert HEADINGS.search("New concepts\n  - loss") and not HEADINGS.search("the target is high")
    goal = "Train an image classifier on real handwritten digits, climbing from a linear model"
    assert word_runs(goal) & word_runs(f"Here we {goal.lower()} to an MLP.")
    assert not word_runs(goal) & word_runs(
        "We train a classifier of handwritten digits, a linear one first."
    )
