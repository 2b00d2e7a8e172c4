"""vision/101/experiments — parametric experiments: how a model gets tuned, one question at a time.

The lesson starts from an untuned first attempt at the digits CNN and improves it the way
practitioners do. First the learning-rate range test: the loss against an exponentially growing
LR, with the suggested LR marked. Then a sweep around it, which shows too small, right, too large
and divergent learning rates side by side; then batch size, then the optimizer, in that order,
reading the overlaid curves and the metric-vs-parameter plots at each step. Every run is kept,
tagged and comparable. The setting is chosen on validation and confirmed on test, once, and not
the other way round.

    deepscape run vision/101/experiments                 # ~1 minute on 2 CPU cores
    deepscape run vision/101/experiments jobs=2 epochs=12
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from deepscape import figures, lr_finder
from deepscape.compare import comparison, curves_figure
from deepscape.config import apply_overrides, option
from deepscape.data import get_dataset
from deepscape.labs.vision import l101_digits
from deepscape.runs import Run
from deepscape.sweep import stage

TUNED = "vision/101/digits"
# What a first attempt usually looks like: plain SGD at a textbook LR, nothing else.
UNTUNED = [
    "optimizer=sgd",
    "momentum=0",
    "lr=0.01",
    "schedule=constant",
    "warmup=0",
    "augment=false",
    "label_smoothing=0",
    "weight_decay=0",
    "dropout=0",
]


@dataclass
class Config:
    seed: int = option(0, "random seed of the range test (each sweep runs seed 0)")
    dataset: Literal["digits", "mnist-5k", "mnist"] = option("digits", "the data to tune on")
    data_dir: str | None = option(None, "folder with the MNIST IDX files (dataset=mnist)")
    model: Literal["mlp", "cnn"] = option("cnn", "the model being tuned")
    epochs: int = option(8, "epochs of every run the lab makes")
    jobs: int = option(1, "runs at a time, each in its own process")
    threads: int = option(0, "CPU threads per run (0: all cores / jobs)")


def run(config: Config, run: Run) -> dict[str, Any]:
    base = [f"dataset={config.dataset}", f"model={config.model}", f"epochs={config.epochs}"]
    base += [f"data_dir={config.data_dir}"] if config.data_dir else []
    base += [f"threads={config.threads}"] if config.threads else []

    def sweep(name: str, *items: str) -> list[Run]:
        return stage(run, name, TUNED, l101_digits.Config, [*base, *items], jobs=config.jobs)

    # 1. The first attempt, untuned.
    (default,) = sweep("default", *UNTUNED)
    if default.status != "finished":
        raise RuntimeError(
            f"the untuned default run {default.id} {default.status}: "
            f"{default.summary.get('error', 'see deepscape runs show')}"
        )

    # 2. The learning-rate range test: which LRs does this model train at (SGD with momentum)?
    data = get_dataset(config.dataset, config.data_dir)
    digits_config = apply_overrides(l101_digits.Config(), [*base, "optimizer=sgd"])
    model = l101_digits.model_for(digits_config, data)
    test = lr_finder.lr_range_test(model, data.train, digits_config)
    lr = float(f"{test.suggested:.2g}")
    lr_finder.figure(
        test,
        run.figure_path("1_lr_range_test"),
        title=f"LR range test: {config.model} on {config.dataset}, SGD + momentum",
    )

    # 3. The learning rate, swept: too small, the suggestion, too large, divergent.
    lrs = {"too small": lr / 100, "suggested": lr, "too large": lr * 10, "divergent": lr * 1000}
    constant = ["optimizer=sgd", "schedule=constant", "warmup=0"]
    lr_runs = sweep("lr", "lr=" + ",".join(f"{v:.3g}" for v in lrs.values()), *constant)
    lr_figure(lr_runs, lrs, run.figure_path("2_learning_rates"))

    # 4. Batch size at that learning rate, then the optimizer and its schedule.
    batch_runs = sweep("batch_size", "batch_size=16,64,256", f"lr={lr:.3g}", *constant)
    curves_figure(comparison(batch_runs), run.figure_path("3_batch_size"))
    optimizer_runs = sweep(
        "optimizer", "optimizer=sgd,adamw", "schedule=constant,onecycle", "lr=" + f"{lr:.3g},3e-3"
    )
    curves_figure(comparison(optimizer_runs), run.figure_path("4_optimizer_and_schedule"))

    # 5. Choose on validation; only then look at test, once.
    finished = [r for r in lr_runs + batch_runs + optimizer_runs if r.status == "finished"]
    tuned = max(finished, key=lambda r: r.summary["metrics"]["val_accuracy"])
    default_m, tuned_m = default.summary["metrics"], tuned.summary["metrics"]
    wins = (
        tuned_m["val_accuracy"] > default_m["val_accuracy"]
        and tuned_m["test_accuracy"] > default_m["test_accuracy"]
    )
    verdict_figure(default_m, tuned_m, run.figure_path("5_tuned_vs_default"))
    run.update_summary(
        tuned_run=tuned.id,
        default_run=default.id,
        tuned_config={k: tuned.config[k] for k in ("lr", "batch_size", "optimizer", "schedule")},
    )
    return {
        "tuned_beats_default": float(wins),
        "suggested_lr": lr,
        "default_val_accuracy": default_m["val_accuracy"],
        "tuned_val_accuracy": tuned_m["val_accuracy"],
        "default_test_accuracy": default_m["test_accuracy"],
        "tuned_test_accuracy": tuned_m["test_accuracy"],
        "runs": 1 + len(lr_runs) + len(batch_runs) + len(optimizer_runs),
    }


def lr_figure(runs: list[Run], named: dict[str, float], path) -> None:
    """Training loss per step (smoothed) and validation error per epoch, one line per LR; a run
    that diverged is cut off where it blew up, and marked."""
    names = {f"{v:.3g}": k for k, v in named.items()}
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(13, 4.6))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(runs)))
    sane_losses, errors = [], []
    for run, colour in zip(sorted(runs, key=lambda r: r.config["lr"]), colours, strict=False):
        lr = run.config["lr"]
        label = f"lr={lr:.3g} ({names.get(f'{lr:.3g}', '')})"
        losses = np.array([s["loss"] for s in run.history("step")], dtype=float)
        window = min(10, len(losses))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid") if window else losses
        ax_loss.plot(smooth, color=colour, label=label)
        if run.status == "failed":
            ax_loss.annotate(
                f"diverged at step {len(losses)}: the run stops",
                (max(0, len(smooth) - 1), losses[0] * 2),
                color=colour,
                textcoords="offset points",
                xytext=(8, 0),
                fontsize=9,
            )
        else:
            sane_losses += list(smooth)
        epochs = run.history("epoch")
        errors += [1 - e["val_accuracy"] for e in epochs]
        ax_err.plot(
            [e["epoch"] + 1 for e in epochs],
            [1 - e["val_accuracy"] for e in epochs],
            "o-",
            color=colour,
            label=label,
        )
    if sane_losses:  # a diverged loss (1e20) would flatten every other curve
        ax_loss.set_ylim(min(sane_losses) * 0.8, max(sane_losses) * 2.5)
    ax_loss.set(xlabel="step", ylabel="training loss (10-step mean)", title="Training loss")
    ax_err.set(xlabel="epoch", ylabel="validation error (1 − accuracy)", title="Validation error")
    figures.log_axis(ax_loss, sane_losses or [1.0])
    figures.log_axis(ax_err, errors or [1.0])
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax_err.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(
        "The learning rate decides everything else: too small crawls, too large "
        "bounces, far too large diverges"
    )
    figures.save(fig, path)


def verdict_figure(default: dict[str, float], tuned: dict[str, float], path) -> None:
    """Validation and test accuracy of the default and the tuned setting, side by side."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    keys = ["val_accuracy", "test_accuracy"]
    x = np.arange(len(keys))
    for offset, (name, metrics, colour) in enumerate(
        (
            ("untuned default", default, "#999999"),
            ("tuned (chosen on validation)", tuned, "#2ca02c"),
        )
    ):
        values = [metrics[k] for k in keys]
        bars = ax.bar(x + (offset - 0.5) * 0.38, values, 0.38, label=name, color=colour)
        ax.bar_label(bars, labels=[f"{v:.2%}" for v in values], fontsize=9)
    ax.set_xticks(x, ["validation", "test (looked at once, at the end)"])
    ax.set_ylim(0, 1.18)  # room above the bars for the legend
    ax.set(ylabel="accuracy", title="Does the tuned setting keep its win on test?")
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    figures.save(fig, path)
