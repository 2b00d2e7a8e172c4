"""language/201/one-model: the Factbook's questions carry the Factbook's answers, demonstrations
never come from the test items, calibration removes a lean, the LLM classifies real sentences
above chance and a LoRA moves a generative task, and bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deepscape.cli import app
from deepscape.config import ConfigError
from deepscape.data.factbook import capital_answers, countries, folder
from deepscape.labs.language import l201_one_model_tasks as tasks
from deepscape.labs.language.l201_one_model import (
    Config,
    ask,
    calibrate,
    check,
    demonstrations,
    generated,
    judge,
)

LAB = "language/201/one-model"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def factbook_json(name: str) -> dict:
    country = next(c for c in countries() if c.name == name)
    return json.loads((folder() / country.region / f"{country.code}.json").read_text())


def test_the_factbook_questions_are_answered_by_the_factbook_fields():
    capital = {item.text: item.answers for item in tasks.capitals(n=500, seed=0).test}
    for name in ("France", "Japan", "Peru", "Kenya"):
        field = factbook_json(name)["Government"]["Capital"]["name"]["text"]
        assert capital[f"What is the capital of {name}?"] == (field,)
    assert capital["What is the capital of Libya?"] == ("Tripoli", "Tarabulus")
    assert capital["What is the capital of Costa Rica?"] == ("San José",)  # HTML entity read
    assert "What is the capital of South Africa?" not in capital  # three capitals: left out
    assert capital_answers("Pretoria (administrative capital); Cape Town (legislative)") == ()
    assert capital_answers("Suva (on Viti Levu)") == ("Suva",)

    extraction = tasks.extraction(n=500, seed=0).test
    peru = next(item for item in extraction if "Country: Peru\n" in item.text)
    people = factbook_json("Peru")["People and Society"]["Population"]["total"]["text"]
    area = factbook_json("Peru")["Geography"]["Area"]["total "]["text"]
    assert peru.answers[0] in (people.split(" (")[0], area)  # "34,576,665 (2025 est.)"
    assert peru.answers[0] in peru.text  # open book: the answer is in the entry
    # France's area is two figures ("643,801 sq km ; 551,500 sq km (metropolitan France)"): out
    assert not any("Country: France\n" in item.text for item in extraction)


def test_test_items_and_demonstrations_never_meet_and_shots_are_nested():
    for task in (tasks.capitals(20, 0), tasks.summaries(20, 0), tasks.arithmetic(20, 0),
                 tasks.sentiment(None, 20, 0)):  # fmt: skip
        shown = demonstrations(task, (0, 1, 4, 8), seed=0)
        assert [len(shown[k]) for k in (0, 1, 4, 8)] == [0, 1, 4, 8]
        assert shown[4] == shown[8][:4] and shown[1] == shown[8][:1]  # the same first ones
        prompts = {task.prompt(item.text) for item in task.test}
        assert not prompts & {e.prompt for e in shown[8]}
        assert all(e.prompt.startswith(task.instruction + "\n\n") for e in shown[8])
    summary = tasks.summaries(5, 0).test[0]
    assert summary.answers[0] not in summary.text  # the reference is held out of the text


def test_contextual_calibration_undoes_a_lean_towards_one_label():
    # a model that adds +2 to label 0 whatever it reads: raw, it answers 0 for every item
    signal = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.0], [0.0, 0.7]])
    truth = torch.tensor([0, 1, 0, 1])
    lean = torch.tensor([2.0, 0.0])
    scores, content_free = signal + lean, torch.zeros(3, 2) + lean
    assert (scores.argmax(1) == truth).float().mean() == 0.5
    calibrated = calibrate(scores, content_free)
    assert (calibrated.argmax(1) == truth).all()
    # dividing by the content-free probabilities: a content-free input itself comes out even
    even = calibrate(content_free[:1], content_free)
    assert torch.allclose(even.softmax(1), torch.tensor([[0.5, 0.5]]))


def test_summaries_are_judged_by_rouge_l_and_answers_by_any_accepted_form():
    capital = tasks.capitals(500, 0)
    capital.test = [item for item in capital.test if item.answers[0] in ("Tripoli", "Paris")]
    given = ["tarabulus" if capital.test[0].answers[0] == "Tripoli" else "Paris.", "Rome"]
    assert judge(capital, given) == 0.5
    summary = tasks.summaries(2, 0)
    assert judge(summary, [item.answers[0] for item in summary.test]) == pytest.approx(1.0)
    assert judge(summary, ["zzz", "zzz"]) == 0.0


@pytest.fixture(scope="module")
def smollm():
    """SmolLM2-135M-Instruct, read once for the module's slow tests (skipped without it)."""
    from deepscape.models.language import PretrainedUnavailable, load_llm

    torch.set_num_threads(1)
    try:
        return load_llm()
    except PretrainedUnavailable as error:
        pytest.skip(str(error))


@pytest.mark.slow
def test_the_llm_classifies_real_sentences_above_chance(smollm):
    llm = smollm
    quiet = type("Quiet", (), {"show_progress": False})()  # what `ask` reads of a run
    movie = tasks.sentiment(None, 40, 0)  # gensim's MR test sentences: 20 negative, 20 positive
    found = ask(llm.model, llm.tokenizer, movie, [], quiet, "0-shot", calibrated=True).scores
    # measured: 0.65 raw (32 of 40 answers 'positive'), 0.725 calibrated; chance is 0.5
    assert found["0-shot calibrated"] >= 0.65, found
    assert found["0-shot calibrated"] > found["0-shot"], found  # the lean removed


@pytest.mark.slow
def test_prompts_of_any_length_are_answered_in_one_batch_as_one_at_a_time(smollm):
    from deepscape.tuning import answers

    llm = smollm
    entries = tasks.extraction(4, 0)  # a Factbook entry each: four lengths, four groups
    shots = demonstrations(entries, (1,), seed=0)[1]
    prompts = [entries.prompt(item.text) for item in entries.test]
    assert len({len(p) for p in prompts}) > 1
    most = entries.max_new_tokens
    batched = generated(llm.model, llm.tokenizer, prompts, shots=shots, max_new_tokens=most,
                        progress=False)  # fmt: skip
    one_by_one = answers(llm.model, llm.tokenizer, prompts, shots=shots, max_new_tokens=most,
                         progress=False)  # fmt: skip
    assert batched == one_by_one  # padding and its mask change no answer
    assert judge(entries, batched) > 0  # measured: 3 of 4 figures read right 1-shot


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in error


@pytest.mark.parametrize(
    ("item", "fragments"),
    [
        ("tasks=sentiment,capitals", ["'capitals'", "capital"]),
        ("n=0", ["n=0", "at least 1"]),
        ("shots=0,64", ["shots=[0, 64]", "between 0 and 32"]),
        ("lora_steps=0", ["lora_steps=0", "lora=false"]),
        ("lora_rank=0", ["lora_rank=0", "rank ≥ 1"]),
        ("tasks=babi", ["babi", "data_dir="]),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(item, fragments):
    one_line_error(CliRunner().invoke(app, ["run", LAB, item, "threads=1"]), *fragments)


def test_bad_configs_from_python_are_refused_before_the_model_is_read():
    with pytest.raises(ConfigError, match="'squad' is not one of sentiment"):
        check(Config(tasks=("squad",)))  # type: ignore[arg-type]
    check(Config(lora=False, lora_steps=0))  # no LoRA: its steps do not matter


@pytest.mark.skipif(not (SHARED / "babi-qa1").is_dir(), reason="needs ../shared/data/babi-qa1")
def test_babi_items_hold_the_story_so_far_and_one_place():
    task = tasks.babi(SHARED, 20, 0)
    places = {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office"}
    for item in task.test:
        story, question = item.text.rsplit("\n\n", 1)
        assert question.startswith("Where is ") and item.answers[0] in places
        person = question.removeprefix("Where is ").rstrip("?")
        last = [line for line in story.splitlines() if line.startswith(person)][-1]
        assert last.endswith(f"{item.answers[0]}.")  # the supporting fact: their last move
