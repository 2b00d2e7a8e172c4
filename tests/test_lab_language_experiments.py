"""language/101/experiments: sweeps of the sentence CNN, effects weighed against the seed spread."""

from __future__ import annotations

import pytest

from deepscape.config import ConfigError
from deepscape.lab import run_lab
from deepscape.labs.language.l101_experiments import best_answer, conclude
from deepscape.runs import RunStore

LAB = "language/101/experiments"


def test_a_tie_keeps_the_current_answer():
    assert best_answer({"0.2": 0.6, "0.5": 0.65, "0.7": 0.65 + 1e-9}, current="0.5") == "0.5"
    assert best_answer({"0.2": 0.7, "0.5": 0.65}, current="0.5") == "0.2"


def test_an_effect_counts_only_beyond_twice_the_seed_spread():
    effects = {
        "dropout": {"effect": 0.02, "chosen": "0.7"},
        "lr": {"effect": 0.09, "chosen": "3e-3"},
    }
    lines = conclude(effects, spread=0.03)
    assert "within the seed noise" in lines[0] and "a real effect" in lines[1]
    assert "cannot tell from noise" in conclude(effects, spread=0.0)[0]


def test_unknown_questions_name_the_choices(store: RunStore):
    with pytest.raises(ConfigError, match="choose from embeddings, widths, filters, dropout, lr"):
        run_lab(LAB, ["questions=embeddings,depth"], store=store, show_progress=False)


@pytest.mark.slow
def test_a_sweep_of_embeddings_finds_that_pretrained_vectors_matter(store: RunStore):
    run = run_lab(LAB, ["questions=embeddings", "seeds=2", "threads=1"], store=store,
                  show_progress=False)  # fmt: skip
    metrics, summary = run.summary["metrics"], run.summary
    assert metrics["runs"] == 2 + 3 * 2
    by_value = summary["effects"]["embeddings"]["validation_by_value"]
    # 120 training sentences: random embeddings stay near chance, GloVe's carry meaning
    assert by_value["glove-tuned"] > by_value["random"] + 0.05, by_value
    assert summary["tuned_config"]["embeddings"] in ("glove-static", "glove-tuned")
    assert summary["conclusions"][0].startswith("embeddings: best ")
    assert metrics["tuned_beats_default"] in (0.0, 1.0)
    names = {p.name for p in run.figures()}
    assert {"1_embeddings.png", "1_embeddings_curves.png", "2_effects.png"} <= names
    assert "3_tuned_vs_default.png" in names
