"""vision/101/experiments: the range test and the sweeps find a setting that really is better."""

from __future__ import annotations

import pytest
import torch

from deepscape.data import get_dataset
from deepscape.lab import run_lab
from deepscape.labs.vision import l101_digits
from deepscape.lr_finder import lr_range_test, suggest
from deepscape.models.vision import build_model

EXPERIMENTS = "vision/101/experiments"


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    from deepscape.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("experiments"))
    run = run_lab(
        EXPERIMENTS, ["epochs=3", "model=mlp", "threads=2"], store=store, show_progress=False
    )
    return run, store


def test_the_tuned_setting_beats_the_untuned_default_on_validation_and_test(lab_run):
    run, _ = lab_run
    metrics = run.summary["metrics"]
    assert run.summary["target"]["reached"] is True
    assert metrics["tuned_beats_default"] == 1.0
    assert metrics["tuned_val_accuracy"] > metrics["default_val_accuracy"]
    assert metrics["tuned_test_accuracy"] > metrics["default_test_accuracy"]
    assert metrics["tuned_test_accuracy"] > 0.85  # the untuned default is near chance here


def test_the_learning_rate_sweep_shows_too_small_right_and_divergent(lab_run):
    run, store = lab_run
    from deepscape.sweep import Sweep

    lr_runs = Sweep.load(store, run.summary["sweeps"]["lr"]).runs(store).values()
    by_lr = sorted(lr_runs, key=lambda r: r.config["lr"])
    too_small, suggested, _too_large, divergent = by_lr
    assert suggested.config["lr"] == pytest.approx(run.summary["metrics"]["suggested_lr"])
    assert divergent.status == "failed" and "TrainingDiverged" in divergent.summary["error"]
    assert (
        suggested.summary["metrics"]["val_accuracy"]
        > too_small.summary["metrics"]["val_accuracy"] + 0.05
    )


def test_every_stage_is_a_recorded_sweep_and_every_figure_is_drawn(lab_run):
    run, store = lab_run
    assert set(run.summary["sweeps"]) == {"default", "lr", "batch_size", "optimizer"}
    children = [r for r in store.list() if r.summary.get("sweep")]
    assert len(children) == run.summary["metrics"]["runs"] == 1 + 4 + 3 + 8
    names = [p.name for p in run.figures()]
    assert names == [
        "1_lr_range_test.png",
        "2_learning_rates.png",
        "3_batch_size.png",
        "4_optimizer_and_schedule.png",
        "5_tuned_vs_default.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in run.figures())


def test_the_range_test_suggests_a_trainable_lr_and_leaves_the_model_alone():
    data = get_dataset("digits")
    config = l101_digits.Config(optimizer="sgd", batch_size=32, threads=2)
    torch.manual_seed(0)  # the test's batches are shuffled: make them the same every time
    model = build_model("mlp", images=data.train.inputs, num_classes=10)
    before = [p.detach().clone() for p in model.parameters()]
    test = lr_range_test(model, data.train, config)
    assert all((a == b).all() for a, b in zip(before, model.parameters(), strict=True))
    assert 1e-4 < test.suggested < 1.0
    assert min(test.losses) < test.losses[0] * 0.5  # the loss did fall somewhere in the range


def test_suggest_picks_the_steepest_fall_before_the_minimum():
    lrs = [10.0**e for e in range(-6, 1)]
    losses = [2.3, 2.3, 2.2, 1.2, 0.8, 0.7, 5.0]
    assert suggest(lrs, losses) == 1e-3
