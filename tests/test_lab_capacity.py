"""vision/101/capacity: real runs underfit, overfit, and a remedy closes the gap."""

from __future__ import annotations

import pytest

from deepscape.config import ConfigError
from deepscape.lab import run_lab
from deepscape.labs.vision.l101_capacity import metric_name
from deepscape.runs import Run, RunStore
from deepscape.sweep import Sweep

CAPACITY = "vision/101/capacity"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REMEDIES = {
    "weight_decay",
    "dropout",
    "augmentation",
    "weight_decay_and_dropout",
    "weight_decay_and_augmentation",
    "dropout_and_augmentation",
    "weight_decay_and_dropout_and_augmentation",
    "early_stopping",
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Run, RunStore]:
    """Short runs, widths and depths both swept: ~25 s on one CPU core."""
    store = RunStore(tmp_path_factory.mktemp("quick"))
    overrides = ["widths=2,32", "depths=1,2", "fractions=0.1,0.5", "epochs=40", "seeds=1"]
    return run_lab(CAPACITY, overrides, store=store, show_progress=False), store


@pytest.fixture(scope="module")
def lesson(tmp_path_factory) -> Run:
    """The default remedies on the default overfit model, with the other sweeps cut short."""
    store = RunStore(tmp_path_factory.mktemp("lesson"))
    overrides = ["widths=1,512", "fractions=0.05,0.2"]
    return run_lab(CAPACITY, overrides, store=store, show_progress=False)


def test_the_smallest_mlp_underfits_and_the_largest_overfits(quick):
    run, _ = quick
    metrics = run.summary["metrics"]
    assert metrics["underfit_train_error"] >= 0.3  # cannot fit even its training images
    assert metrics["underfit_val_error"] >= 0.3
    assert metrics["overfit_train_error"] <= 0.01  # learnt them by heart
    assert metrics["overfit_val_error"] >= metrics["overfit_train_error"] + 0.03


def test_more_data_narrows_the_gap(quick):
    metrics = quick[0].summary["metrics"]
    assert metrics["fewest_images_gap"] > metrics["most_images_gap"] + 0.02


def test_the_summary_names_the_runs_it_measured(quick):
    run, store = quick
    summary = run.summary
    underfit, overfit = store.get(summary["underfit_run"]), store.get(summary["overfit_run"])
    assert (underfit.config["width"], underfit.config["depth"]) == (2, 1)
    assert (overfit.config["width"], overfit.config["depth"]) == (32, 2)
    assert overfit.config["train_fraction"] == 0.2
    assert (overfit.config["weight_decay"], overfit.config["dropout"]) == (0.0, 0.0)
    assert overfit.config["augment"] is False and overfit.config["label_smoothing"] == 0.0
    stages = {name: Sweep.load(store, sweep_id) for name, sweep_id in summary["sweeps"].items()}
    assert {name: len(s.runs(store)) for name, s in stages.items()} == {
        "capacity": 4,
        "data_size": 2,
        "remedies": 8,
    }
    assert summary["metrics"]["runs"] == 14


def test_every_remedy_is_measured_and_the_best_counted_one_is_reported(quick):
    summary = quick[0].summary
    metrics = summary["metrics"]
    assert {k.removeprefix("gap_closed_") for k in metrics if k.startswith("gap_closed_")} == (
        REMEDIES
    )
    assert metrics["gap_closed_early_stopping"] >= 0  # its validation error is the run's best
    best = summary["best_remedy"]
    assert metrics["overfit_gap_closed"] == metrics["gap_closed_" + metric_name(best)]


def test_the_three_figures_are_drawn(quick):
    names = [path.name for path in quick[0].figures()]
    assert names == ["1_capacity.png", "2_data_size.png", "3_remedies.png"]
    for path in quick[0].figures():
        content = path.read_bytes()
        assert content.startswith(PNG_MAGIC) and len(content) > 20_000, path


def test_a_bad_width_list_fails_before_any_training(store):
    with pytest.raises(ConfigError, match="width"):
        run_lab(CAPACITY, ["widths=8,wide"], store=store, show_progress=False)
    assert store.list() == []


@pytest.mark.slow
def test_the_target_a_remedy_closes_half_the_overfit_gap(lesson):
    metrics = lesson.summary["metrics"]
    assert lesson.summary["target"]["reached"] is True
    assert metrics["overfit_gap_closed"] >= 0.5
    assert metrics["underfit_train_error"] >= 0.5 and metrics["underfit_val_error"] >= 0.5
    assert metrics["overfit_train_error"] <= 0.01
    assert metrics["overfit_val_error"] >= 0.04  # clearly worse: ≥ 6 of 144 validation images
