"""language/201/unsolvable's tasks, made up with a seed: letters to count in words, invented
facts to learn one way round, sums to add, and what a model's answers are scored with.

Every task is text, one example a line: a prompt and its answer. A GPT learns the line as a
language model (next-token prediction), with the loss on the tokens it is asked to learn, and is
tested by continuing prompts it may never have seen, greedily.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from deepscape.data import TensorSplit
from deepscape.generate import continuation_logprobs, generate
from deepscape.models.gpt import GPT

IGNORE = -100  # a target the loss skips (F.cross_entropy's ignore_index, as GPT's forward uses)
Encode = Callable[[str], list[int]]
Decode = Callable[[Sequence[int]], str]


@dataclass
class Example:
    prompt: str  # what the model is given, from the start of a line
    answer: str  # what it must continue with (the line's end included)


# -- turning lines into training rows -------------------------------------------------------------
def rows(
    examples: Sequence[Example], encode: Encode, length: int, *, whole_line: bool
) -> TensorSplit:
    """Examples as (tokens "n t", next tokens "n t") padded to `length`. The loss reads the
    answer's tokens, or (`whole_line`) every token of the line: a fact is text to learn, not a
    question; a sum or a count is a question whose operands are given."""
    inputs, targets = [], []  # as lists, made tensors once: a tensor per line is slow
    for example in examples:
        prompt, answer = encode(example.prompt), encode(example.answer)
        ids = prompt + answer
        if len(ids) > length + 1:
            raise ValueError(f"{example.prompt + example.answer!r} is longer than {length} tokens")
        start = 0 if whole_line else len(prompt) - 1  # the first target is the second token
        pad = length + 1 - len(ids)
        inputs.append(ids[:-1] + [0] * pad)
        targets.append([IGNORE] * start + ids[1 + start :] + [IGNORE] * pad)
    inputs, targets = torch.tensor(inputs), torch.tensor(targets)
    return Lines(inputs, targets)


class Lines(TensorSplit):
    """Padded lines whose batches are cut after their last target: a batch of short lines costs
    what they are, not what the longest line of the split is."""

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = super().__getitems__(indices)
        used = int((targets != IGNORE).any(0).nonzero().max()) + 1 if targets.numel() else 1
        return inputs[:, :used], targets[:, :used]


@torch.inference_mode()
def completions(
    model: GPT, prompts: Sequence[str], encode: Encode, decode: Decode, *, stop: str,
    max_new_tokens: int,
) -> list[str]:  # fmt: skip
    """Each prompt continued greedily up to and with `stop` (prompts of one length in a batch)."""
    model.eval()
    stop_ids = encode(stop)
    encoded = [encode(p) for p in prompts]
    out = [""] * len(prompts)
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    for indices in by_length.values():
        for start in range(0, len(indices), 256):
            batch = indices[start : start + 256]
            new = generate(model, torch.tensor([encoded[i] for i in batch]),
                           max_new_tokens=max_new_tokens, greedy=True,
                           stop_tokens=stop_ids)  # fmt: skip
            for i, ids in zip(batch, new.tolist(), strict=True):
                text = decode(ids)
                out[i] = text[: text.index(stop) + len(stop)] if stop in text else text
    return out


def exact_match(model: GPT, examples: Sequence[Example], encode: Encode, decode: Decode,
                *, stop: str, max_new_tokens: int) -> list[bool]:  # fmt: skip
    said = completions(model, [e.prompt for e in examples], encode, decode, stop=stop,
                       max_new_tokens=max_new_tokens)  # fmt: skip
    return [s == e.answer for s, e in zip(said, examples, strict=True)]


def choice_accuracy(model: GPT, examples: Sequence[Example], encode: Encode) -> float:
    """Share of prompts whose own answer is the likeliest of all the examples' answers (chance:
    1 / len(examples)): knowing the answer, short of writing it out."""
    scores = continuation_logprobs(
        model, [encode(e.prompt) for e in examples], [encode(e.answer) for e in examples]
    )  # "prompts answers"
    return float((scores.argmax(1) == torch.arange(len(examples))).float().mean())


# -- 1. counting letters --------------------------------------------------------------------------
def words_of(text: str, *, shortest: int, longest: int, min_count: int = 2) -> list[str]:
    """The distinct lower-case words of `text` of `shortest` to `longest` letters, seen at least
    `min_count` times (so not typos), in a fixed order."""
    counts = Counter(re.findall(r"[a-z]+", text.lower()))
    return sorted(w for w, n in counts.items() if n >= min_count and shortest <= len(w) <= longest)


def count_question(word: str, letter: str) -> Example:
    """'strawberry r' → '3' (and the line's end). The count is written right after the letter,
    where the model reads it: the letter's own position can attend to the word's letters like
    it. Asked with the letter first ('r in strawberry=') or before an '=' ('strawberry r='),
    the same GPT on characters answered 49 % and 51 % of the held-out questions after 1,500
    steps (this way 76 %): it had to carry the letter to where the answer is written first."""
    return Example(f"\n{word} {letter}", f"{word.count(letter)}\n")


def counted(example: Example) -> tuple[str, str]:
    """(word, letter) of a counting question."""
    word, letter = example.prompt.split()
    return word, letter


def counting_examples(words: Sequence[str], rng: random.Random, *, absent: int) -> list[Example]:
    """For each word: every letter it has, and `absent` letters it lacks (the count 0)."""
    examples = []
    for word in words:
        present = sorted(set(word))
        missing = [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in present]
        for letter in present + rng.sample(missing, min(absent, len(missing))):
            examples.append(count_question(word, letter))
    return examples


def counting_tests(words: Sequence[str], rng: random.Random) -> list[Example]:
    """For each word: a letter it has more than once (where it has one), a letter it has once,
    and one it lacks, so that no single count answers most questions."""
    examples = []
    for word in words:
        counts = Counter(word)
        missing = [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in counts]
        groups = [[c for c, n in sorted(counts.items()) if n > 1],
                  [c for c, n in sorted(counts.items()) if n == 1], missing]  # fmt: skip
        examples += [count_question(word, rng.choice(group)) for group in groups if group]
    return examples


# -- 2. the reversal curse ------------------------------------------------------------------------
ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br",
          "dr", "gr", "kr", "pl", "st", "tr")  # fmt: skip
VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou")
CODAS = ("", "", "n", "r", "l", "s", "th", "nd")  # no ending is the commonest
ROLES = (
    "inventor", "founder", "first mayor", "keeper", "composer", "architect", "captain",
    "author", "painter", "guardian", "last queen", "chief cartographer",
)  # fmt: skip
ADJECTIVES = (
    "silver", "hidden", "northern", "crimson", "sleeping", "broken", "golden", "eastern",
    "frozen", "whispering", "hollow", "seventh", "painted", "sunken", "wandering", "iron",
)  # fmt: skip
THINGS = (
    "lantern", "harbour", "orchard", "library", "bridge", "comet", "clock", "garden", "tower",
    "river", "mountain", "carnival", "lighthouse", "archive", "fountain", "forest",
)  # fmt: skip


@dataclass
class Fact:
    name: str  # an invented person: 'velo maritan'
    description: str  # something they uniquely are: 'the inventor of the silver lantern'

    def forward(self) -> Example:
        return Example(f"\n{self.name} is", f" {self.description}.\n")

    def reverse(self) -> Example:
        return Example(f"\n{self.description} is", f" {self.name}.\n")


def invented_name(rng: random.Random) -> str:
    def word(syllables: int) -> str:
        return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables)) + \
            rng.choice(CODAS)  # fmt: skip

    return f"{word(2)} {word(rng.choice((2, 3)))}"


def invented_facts(n: int, seed: int) -> list[Fact]:
    """`n` facts about invented people, each name and each description used once."""
    rng = random.Random(seed)
    if n > len(ROLES) * len(ADJECTIVES) * len(THINGS):
        raise ValueError(f"{n} facts: there are only so many descriptions")
    descriptions = [f"the {r} of the {a} {t}" for r in ROLES for a in ADJECTIVES for t in THINGS]
    rng.shuffle(descriptions)
    names: list[str] = []
    while len(names) < n:
        name = invented_name(rng)
        if name not in names:
            names.append(name)
    return [Fact(name, d) for name, d in zip(names, descriptions, strict=False)]


# -- 3. addition ----------------------------------------------------------------------------------
def number(digits: int, rng: random.Random) -> int:
    """A number of exactly `digits` digits (0 counts as one digit)."""
    return rng.randint(10 ** (digits - 1), 10**digits - 1) if digits > 1 else rng.randint(0, 9)


def sum_example(a: int, b: int, *, layout: str, width: int = 0) -> Example:
    """The sum a + b written out. plain: '123+45=' → '861', the answer least significant digit
    first (as we add by hand; Lee et al. 2023). padded: every number least significant digit
    first and filled with zeros to `width` digits (the answer to width + 1), '32100+54000=' →
    '861000': each digit of the answer sits a fixed distance after the two digits it adds."""
    total = str(a + b)
    if layout == "plain":
        return Example(f"\n{a}+{b}=", f"{total[::-1]}\n")
    width = max(width, len(str(a)), len(str(b)))
    first, second = str(a).zfill(width)[::-1], str(b).zfill(width)[::-1]
    return Example(f"\n{first}+{second}=", f"{total.zfill(width + 1)[::-1]}\n")


def sums(n: int, digits: Sequence[int], rng: random.Random, *, layout: str,
         width: int = 0) -> list[Example]:  # fmt: skip
    """`n` sums of two numbers of the same number of digits, drawn from `digits`."""
    examples = []
    for _ in range(n):
        length = rng.choice(digits)
        examples.append(sum_example(number(length, rng), number(length, rng), layout=layout,
                                    width=width))  # fmt: skip
    return examples


# -- 4. calibration -------------------------------------------------------------------------------
@dataclass
class Reliability:
    edges: list[float]  # the bins' edges of confidence, from 0 to 1
    confidence: list[float]  # mean confidence in each bin (nan where empty)
    accuracy: list[float]  # accuracy in each bin (nan where empty)
    counts: list[int]
    ece: float


def reliability(confidences: torch.Tensor, correct: torch.Tensor, bins: int) -> Reliability:
    """Expected calibration error (Guo et al. 2017): the answers binned by their confidence (bins
    of equal width on [0, 1], right edges included); in each bin the gap between the mean
    confidence and the accuracy, weighted by the bin's share of the answers. Bin i holds the
    confidences in [edges[i], edges[i+1]) (and 1 the last), as torchmetrics bins them: its
    `CalibrationError(task="multiclass", norm="l1")` gives the same number (a test checks)."""
    edges = torch.linspace(0, 1, bins + 1)
    which = (torch.bucketize(confidences.float(), edges, right=True) - 1).clamp(0, bins - 1)
    counts = torch.bincount(which, minlength=bins)
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, confidences.double())
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct.double())
    shown = counts.clamp_min(1).double()
    mean_conf, mean_acc = conf_sum / shown, acc_sum / shown
    ece = float(((mean_conf - mean_acc).abs() * counts / max(len(confidences), 1)).sum())
    empty = counts == 0
    return Reliability(
        edges=edges.tolist(),
        confidence=mean_conf.masked_fill(empty, float("nan")).tolist(),
        accuracy=mean_acc.masked_fill(empty, float("nan")).tolist(),
        counts=counts.tolist(),
        ece=ece,
    )
