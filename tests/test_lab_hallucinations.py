"""language/301/hallucinations: the questions (answerable or not), the checks read from answers,
thresholds chosen on calibration only, scores, bad input — and one small run with the model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from deepscape.config import ConfigError
from deepscape.data import DataUnavailable
from deepscape.labs.language import l301_hallucinations as lab
from deepscape.labs.language import l301_hallucinations_data as data
from deepscape.labs.language.l201_augmented_search_data import Question
from deepscape.labs.language.l301_hallucinations_ask import (
    Said,
    abstains,
    agreement,
    cited_support,
    correct,
    mentions,
    names,
    supports,
)


def squad_json(path: Path) -> Path:
    """A tiny SQuAD 2.0 file: two paragraphs, answerable and impossible questions."""
    qa = lambda q, answers: {"question": q, "id": q, "answers": [{"text": a, "answer_start": 0}  # noqa: E731
                             for a in answers], "is_impossible": not answers}  # fmt: skip
    data_ = {"version": "v2.0", "data": [
        {"title": "Normans", "paragraphs": [{
            "context": "The Normans were the people who gave their name to Normandy, a region in "
                       "France. Rollo was their first ruler. Normandy was settled in the 10th "
                       "century.",
            "qas": [qa("In what country is Normandy located?", ["France"]),
                    qa("Who was the first ruler of the Normans?", ["Rollo"]),
                    qa("Who gave their name to Brittany?", []),
                    qa("What is the capital of Normandy?", [])]}]},
        {"title": "Oxygen", "paragraphs": [{
            "context": "Oxygen is a chemical element with symbol O and atomic number 8. Oxygen "
                       "was discovered by Carl Wilhelm Scheele.",
            "qas": [qa("What is the atomic number of oxygen?", ["8"]),
                    qa("Who discovered Oxygen?", ["Carl Wilhelm Scheele", "Scheele"]),
                    qa("What is the atomic mass of Oxygen?", []),
                    qa("Who named Oxygen?", [])]}]},
    ]}  # fmt: skip
    file = path / "dev-v2.0.json"
    file.write_text(json.dumps(data_))
    return file


# -- the questions --------------------------------------------------------------------------------
def test_squad_v2_from_a_folder_keeps_impossible_questions_unanswerable(tmp_path: Path):
    squad_json(tmp_path)
    corpus = data.squad_v2(str(tmp_path), "sentences", 80, 0)
    assert corpus.name == "squad_v2"
    assert {p.title for p in corpus.passages} == {"Normans", "Oxygen"}
    answerable = [q for q in corpus.questions if q.answers]
    assert len(answerable) == 4 and len(corpus.questions) == 8
    assert ("Carl Wilhelm Scheele", "Scheele") in [q.answers for q in answerable]
    assert {q.kind for q in corpus.questions if not q.answers} == {"impossible"}
    split = data.split(corpus.questions, 2, seed=0)
    assert not set(map(id, split.calibration)) & set(map(id, split.test))
    for part in (split.calibration, split.test):
        assert sum(bool(q.answers) for q in part) == 2 and len(part) == 4


def test_bad_data_dir_and_too_many_questions_say_what_to_do(tmp_path: Path):
    with pytest.raises(DataUnavailable, match=r"no SQuAD 2\.0 JSON in .*dev-v2\.0\.json"):
        data.squad_v2(str(tmp_path), "sentences", 80, 0)
    (tmp_path / "broken.json").write_text('{"version": "v2.0"}')
    with pytest.raises(DataUnavailable, match=r"is not SQuAD 2\.0 JSON"):
        data.squad_v2(str(tmp_path / "broken.json"), "sentences", 80, 0)
    corpus = data.squad_v2(str(squad_json(tmp_path)), "sentences", 80, 0)
    with pytest.raises(DataUnavailable, match="give questions ≤ 2"):
        data.split(corpus.questions, 3, seed=0)


def test_factbook_questions_answerable_and_not():
    corpus = data.factbook_corpus("sentences", 80, 0)
    by_text = {q.text: q for q in corpus.questions}
    assert by_text["What is the capital of France?"].answers[0] == "Paris"
    assert by_text["What is the internet country code of Ghana?"].answers == (".gh",)
    assert by_text["When did Ghana become independent?"].answers == ("6 March 1957",)
    assert by_text["When did Aruba become independent?"].answers == ()  # "none (part of …)"
    assert by_text["What is the capital of Antarctica?"].kind == "missing capital"
    made_up = [q for q in corpus.questions if q.kind.startswith("made-up")]
    assert len(made_up) == 100 and all(not q.answers for q in made_up)
    countries = {p.title.lower() for p in corpus.passages}
    for q in made_up:  # no made-up name holds a real one, or is held in one
        [name] = names(q.text)
        assert not any(c in name or name in c for c in countries), q
    split = data.split(corpus.questions, 30, seed=0)
    kinds = {q.kind.split()[0] for q in split.test if not q.answers}
    assert kinds == {"made-up", "missing"}  # both kinds of unanswerable in each split
    assert {q.text for q in split.test}.isdisjoint(q.text for q in split.calibration)


# -- checks read from answers ---------------------------------------------------------------------
def test_abstaining_and_correct_answers():
    assert abstains("I don't know") and abstains("I don't know [1]") and abstains("None")
    assert abstains("There is no capital.") and abstains("")
    assert not abstains("Paris [2]") and not abstains("Norway")
    assert correct("68,521,974 (2024 est.) [1]", ("68,521,974",))
    assert correct("The Paris", ("Paris",)) and not correct("Lyon", ("Paris",))
    assert not correct("I don't know", ("Paris",))


def test_agreement_of_samples():
    assert agreement(Said("Paris [1]", -0.1, ["Paris [2]", "paris", "Lyon [1]", "Paris."])) == 0.75
    assert agreement(Said("Paris", -0.1)) == 1.0  # no samples: nothing disagrees


def test_citation_check_wants_the_subject_and_the_answer_in_the_cited_passage():
    france = "France: Capital: name: Paris; geographic coordinates: 48 52 N, 2 20 E."
    chile = "Chile: Population: total: 18,549,457 (2024 est.)."
    assert supports(france, "What is the capital of France?", "Paris [1]")
    # a made-up country's "capital" copied from a real country's passage
    assert not supports(france, "What is the capital of Norvania?", "Paris [1]")
    assert cited_support("18,549,457 [2]", "What is the population of Chile?", [france, chile])
    assert not cited_support("18,549,457 [1]", "What is the population of Chile?", [france, chile])
    assert not cited_support("18,549,457", "What is the population of Chile?", [france, chile])
    assert not cited_support("Paris [3]", "What is the capital of France?", [france, chile])
    # names read as passages are normalised: hyphens, apostrophes and articles
    timor = "Timor-Leste: Area: total: 14,874 sq km."
    assert mentions(timor, "What is the total area of Timor-Leste?")
    assert mentions("Côte d'Ivoire: Location: Western Africa", "What is the area of Côte d'Ivoire?")
    assert mentions("The Bahamas: Area: total: 13,880 sq km", "What is the area of The Bahamas?")
    assert not mentions(timor, "What is the total area of Norvania?")


# -- thresholds, systems and scores ---------------------------------------------------------------
def test_threshold_keeps_the_coverage_asked_for_with_a_margin():
    confidences = [-n / 100 for n in range(100)]
    threshold = lab.choose_threshold(confidences, 100, 0.8)  # 80 % + 1.64 × 4 % → 87 kept
    assert sum(c >= threshold for c in confidences) == 87
    # already too few answered: every one of them is kept, none less sure than the least of them
    assert lab.choose_threshold(confidences[:85], 100, 0.8) == confidences[84]
    assert lab.choose_threshold([], 100, 0.8) == -math.inf


def fake_split(confidence_test: float = -2.0):
    answerable = [Question(f"What is the capital of Land{i}?", ("Paris",), "x") for i in range(4)]
    unanswerable = [Question(f"What is the capital of Norvania{i}?", (), "", "made-up capital")
                    for i in range(4)]  # fmt: skip
    split = data.Split(calibration=answerable + unanswerable, test=answerable + unanswerable)
    passage = "Land0: Capital: name: Paris."

    def said(confidences: list[float]) -> dict[str, list[Said]]:
        answers = ["Paris [1]"] * 4 + ["Paris [1]", "I don't know", "Paris [1]", "Paris [1]"]
        return {"closed": [Said("Paris", c) for c in confidences],
                "grounded": [Said(a, c, [a, a, "Lyon"]) for a, c in
                             zip(answers, confidences, strict=True)]}  # fmt: skip

    calibration = [-0.1, -0.2, -0.3, -0.4, -0.9, -0.9, -0.9, -0.15]
    test = [-0.1, -0.2, -0.3, confidence_test, -0.9, -0.9, -0.9, -0.15]
    shown = {"calibration": [[passage]] * 8, "test": [[passage]] * 8}
    return split, {"calibration": said(calibration), "test": said(test)}, shown


def test_systems_measured_with_thresholds_from_calibration_only(tmp_path: Path):
    from deepscape.runs import RunStore

    config = lab.Config(coverage=0.3)  # + a margin of 0.38 on 4 questions: 3 of 4 kept
    split, said, shown = fake_split()
    results = lab.measure(config, split, said, shown)
    assert 0 < results["thresholds"]["abstain"] < 1  # a calibrated probability
    test = results["test"]
    assert test["plain"]["hallucination_rate"] == 1.0 and test["plain"]["coverage"] == 1.0
    assert test["abstain"]["coverage"] == 0.75  # the test's fourth answer is less confident
    assert test["abstain"]["hallucination_rate"] == 0.25  # only -0.15 of the 4 passes
    assert test["grounded"]["hallucination_rate"] == 0.75  # one "I don't know"
    assert test["citations"]["hallucination_rate"] == 0.0  # Norvania is not in Land0's passage
    assert test["citations"]["coverage"] == 0.25  # only Land0's answer is supported
    assert test["self-consistency"]["accuracy"] == 1.0
    # the test's confidences do not move the threshold
    _, said_other, _ = fake_split(confidence_test=-5.0)
    assert lab.measure(config, split, said_other, shown)["thresholds"] == results["thresholds"]
    assert lab.pick(test, 0.75) == "abstain"
    assert lab.pick(test, 0.9) in ("grounded", "grounded-abstain", "self-consistency")
    run = RunStore(tmp_path).create("language/301/hallucinations", {})
    lab.write_traces(run, split, said, shown, results["replies"])
    lines = [json.loads(line) for line in (run.dir / "traces.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 8 * len(lab.SYSTEMS)
    assert {"question", "system", "answer", "confidence", "abstained"} <= set(lines[0])
    assert lab.figure(run, results, "abstain", 0.8).is_file()


def test_risk_coverage_curve_runs_from_nothing_answered_to_all():
    split, said, shown = fake_split()
    given = lab.replies("grounded-abstain", said["test"], split.test, shown["test"])
    points = lab.curve(split.test, given)
    assert points[0]["answered"] == 0 and points[-1]["answered"] == 7 / 8
    assert [p["answered"] for p in points] == sorted(p["answered"] for p in points)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"interventions": ("self-consistancy",)}, "did you mean 'self-consistency'"),
     ({"k": 0}, "give k ≥ 1 passages"),
     ({"samples": 1}, "self-consistency needs ≥ 2"),
     ({"coverage": 1.5}, "give a share in"),
     ({"data_dir": "x"}, "add dataset=squad"),
     ({"questions": 0}, "questions=0: give 1 or more")],
)  # fmt: skip
def test_bad_config_says_how_to_fix_it(change: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        lab.check(lab.Config(**change))


# -- the real model -------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_small_run_with_smollm2_on_squad_json(tmp_path: Path):
    from deepscape.models.language import PretrainedUnavailable, load_llm
    from deepscape.runs import RunStore

    try:
        load_llm()
    except PretrainedUnavailable as error:
        pytest.skip(str(error))
    run = RunStore(tmp_path / "runs").create("language/301/hallucinations", {})
    config = lab.Config(dataset="squad", data_dir=str(squad_json(tmp_path)), questions=1,
                        samples=2, max_new_tokens=6, threads=1)  # fmt: skip
    metrics = lab.run(config, run)
    assert 0 <= metrics["hallucination_rate_ratio"] <= 1
    assert {"plain_hallucination_rate", "citations_coverage", "combined_accuracy"} <= set(metrics)
    lines = (run.dir / "traces.jsonl").read_text().splitlines()
    assert len(lines) == 4 * len(lab.SYSTEMS)
    for line in map(json.loads, lines):  # a reply that declines is never counted as an answer
        assert line["abstained"] or not abstains(line["answer"]), line
    assert run.figure_path("hallucinations").is_file()
