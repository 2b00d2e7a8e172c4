"""Question answering over a short story: the bAbI tasks (Weston et al. 2015), as files.

bAbI's text format numbers the lines of each story from 1; a question line holds the question, a
tab, the answer and a tab, the numbers of the lines that support it:

    1 Mary moved to the bathroom.
    2 John went to the hallway.
    3 Where is Mary? 	bathroom	1

A story can ask several questions as it goes; each is answered from the story's statements
before it. Task 1 (single supporting fact): where is a person now, from the last of their moves.
The files come from `data_dir` (the folder of the `qa1_…_train.txt`, `qa1_…_test.txt` files, as
in the bAbI tarball's en-10k folder), never from a hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepscape.data import DataUnavailable


@dataclass(frozen=True)
class StoryQuestion:
    story: tuple[str, ...]  # the story's statements before the question, in order
    question: str
    answer: str


def read_babi(path: Path) -> list[StoryQuestion]:
    """Every question of a bAbI file, each with the statements of its story before it. A line
    that is not `number text` (or `number question<TAB>answer<TAB>support`) is an error that
    names it."""
    questions: list[StoryQuestion] = []
    story: list[str] = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            index, _, text = line.strip().partition(" ")
            if not index.isdigit() or not text:
                raise DataUnavailable(f"{path}, line {number}: expected 'N text' (bAbI format)")
            if index == "1":
                story = []
            if "\t" in text:
                question, answer, *_ = (part.strip() for part in text.split("\t"))
                questions.append(StoryQuestion(tuple(story), question, answer))
            else:
                story.append(" ".join(text.split()))  # the files have a few double spaces
    if not questions:
        raise DataUnavailable(f"{path} holds no bAbI questions")
    return questions


def load_babi(data_dir: str | Path, task: int = 1) -> dict[str, list[StoryQuestion]]:
    """The train and test questions of bAbI task `task` from `data_dir` (the folder holding
    `qa{task}_*_train.txt` and `qa{task}_*_test.txt`, or its parent holding `babi-qa{task}/`)."""
    folder = Path(data_dir).expanduser()
    if (folder / f"babi-qa{task}").is_dir():
        folder = folder / f"babi-qa{task}"
    splits = {}
    for split in ("train", "test"):
        found = sorted(folder.glob(f"qa{task}_*_{split}.txt"))
        if not found:
            raise DataUnavailable(
                f"no bAbI task {task} {split} file (qa{task}_…_{split}.txt) in {folder}: pass "
                f"data_dir=FOLDER holding the bAbI files (e.g. ../shared/data/babi-qa{task})"
            )
        splits[split] = read_babi(found[0])
    return splits
