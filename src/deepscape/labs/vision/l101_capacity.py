"""vision/101/capacity — under- and overfitting: how big a model, how much data, which remedy.

The lesson sweeps the digits MLP. Over width (and depth): the smallest MLP leaves train and
validation error both high (underfitting); the largest learns its training images by heart,
train error ≈ 0, and still errs on new ones (overfitting). The generalisation gap is validation
error − train error, the train error measured by the trained model on its clean training images.
Over training-set size, 5 % to 100 %: the learning curve. Then the remedies on the overfit
model — weight decay, dropout, augmentation, every combination of the three, and early stopping
— each measured as the share of that model's gap it closes.

Errors are averaged over 3 seeds: with 144 validation images one mistake is 0.7 %, and one seed's
gap is only 7–9 mistakes.

    deepscape run vision/101/capacity                        # ~3 minutes on 2 CPU cores
    deepscape run vision/101/capacity depths=1,2 jobs=2      # depth as well as width
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import PercentFormatter
from safetensors.torch import load_model

from deepscape import figures
from deepscape.config import option
from deepscape.data import Splits, get_dataset
from deepscape.labs.vision import l101_digits
from deepscape.runs import Run
from deepscape.sweep import stage

DIGITS = "vision/101/digits"
# Nothing that fights overfitting, so that the capacity and data-size sweeps show it unmasked.
UNREGULARISED = ["augment=false", "dropout=0", "weight_decay=0"]
UNDERFIT = 0.1  # train error at or above this: the model cannot even fit its training images
MEMORISED = 0.01  # train error at or below this: it has learnt its training images by heart
UNDERFITTING = "UNDERFITTING\ntoo small to fit even\nits training images:\nboth errors high"
OVERFITTING = (
    "OVERFITTING\ntraining images learnt by\nheart (train error ≈ 0),\nnew ones still missed"
)


@dataclass
class Config:
    seed: int = option(0, "seed of the lab itself (every run it makes is seeded 0: they compare)")
    dataset: Literal["digits", "mnist-5k", "mnist"] = option("digits", "the digits to learn")
    data_dir: str | None = option(None, "folder with the MNIST IDX files (dataset=mnist)")
    widths: str = option("1,2,4,8,16,32,128,512", "hidden units per layer, tiny to large")
    depths: str = option("2", "hidden layers, swept with the widths (e.g. 1,2,3)")
    train_fraction: float = option(0.2, "share of the training split for capacity and remedies")
    fractions: str = option("0.05,0.1,0.2,0.5,1", "shares of the training split, data-size sweep")
    weight_decay: float = option(0.3, "strength of the weight-decay remedy (decoupled, AdamW)")
    dropout: float = option(0.5, "strength of the dropout remedy (after every hidden layer)")
    # One validation mistake moves the error by 0.7 %, about a tenth of the overfit model's gap.
    seeds: int = option(3, "seeds of the overfit model and of each remedy (errors averaged)")
    epochs: int = option(100, "epochs of every run: enough for the largest MLP to memorise")
    lr: float = option(1e-2, "peak learning rate of every run (AdamW, one-cycle)")
    jobs: int = option(1, "runs at a time, each in its own process")
    # Small MLPs gain nothing from a second thread, and lose much when the cores are shared.
    threads: int = option(1, "CPU threads per run (0: all cores / jobs)")


@dataclass(frozen=True)
class Errors:
    """A run's error rates, and the generalisation gap between them."""

    run: Run
    train: float  # on the run's own training images: un-augmented, the model in eval mode
    val: float

    @property
    def gap(self) -> float:
        return self.val - self.train

    @property
    def parameters(self) -> int:
        return self.run.summary["metrics"]["parameters"]

    @property
    def images(self) -> int:
        return self.run.summary["data"]["train"]


def run(config: Config, run: Run) -> dict[str, Any]:
    data = get_dataset(config.dataset, config.data_dir)
    base = [f"dataset={config.dataset}", "model=mlp", f"epochs={config.epochs}", f"lr={config.lr}"]
    base += ["label_smoothing=0", "figures=false"]  # this lab reads its runs' numbers only
    base += [f"data_dir={config.data_dir}"] if config.data_dir else []
    base += [f"threads={config.threads}"] if config.threads else []

    def sweep(name: str, *items: str, seeds: int = 1) -> list[Errors]:
        items_ = [*base, *items]
        runs = stage(run, name, DIGITS, l101_digits.Config, items_, seeds=seeds, jobs=config.jobs)
        return [measure(r, data) for r in runs if r.status == "finished"]

    # 1. Capacity: MLPs from tiny to large, all learning the same few images, nothing regularising.
    few = f"train_fraction={config.train_fraction}"
    sizes = [f"width={config.widths}", f"depth={config.depths}"]
    capacity = sweep("capacity", *sizes, few, *UNREGULARISED)
    underfit = min(capacity, key=lambda e: e.parameters)
    largest = max(capacity, key=lambda e: e.parameters)
    big = [f"width={largest.run.config['width']}", f"depth={largest.run.config['depth']}"]

    # 2. Data size: the largest MLP again, from a few dozen images to the whole training split.
    data_size = sweep("data_size", *big, f"train_fraction={config.fractions}", *UNREGULARISED)

    # 3. Remedies: every combination of weight decay, dropout and augmentation on the largest MLP;
    # the corner with none of them is the overfit model (the capacity sweep's largest, again).
    on_off = [f"weight_decay=0,{config.weight_decay}", f"dropout=0,{config.dropout}"]
    remedies = sweep("remedies", *big, few, *on_off, "augment=false,true", seeds=config.seeds)
    by_remedy: dict[str, list[Errors]] = {}
    for errors in remedies:
        by_remedy.setdefault(remedy_name(errors.run.config), []).append(errors)
    untreated = by_remedy.pop("none")
    by_remedy["early stopping"] = [early_stopped(e) for e in untreated]
    treated = {name: mean_errors(seeded) for name, seeded in by_remedy.items()}
    overfit = mean_errors(untreated)
    closed = {name: gap_closed(overfit, e) for name, e in treated.items()}
    cures = [name for name, e in treated.items() if cures_overfitting(overfit, e)]
    best_remedy = max(cures, key=closed.__getitem__, default=None)

    capacity_figure(capacity, underfit, largest, run.figure_path("1_capacity"))
    data_size_figure(data_size, run.figure_path("2_data_size"))
    remedies_figure(overfit, treated, run.figure_path("3_remedies"), seeds=config.seeds)
    run.update_summary(underfit_run=underfit.run.id, overfit_run=overfit.run.id)
    run.update_summary(best_remedy=best_remedy)
    fewest, most = min(data_size, key=lambda e: e.images), max(data_size, key=lambda e: e.images)
    return {
        "overfit_gap_closed": closed[best_remedy] if best_remedy else 0.0,
        "underfit_train_error": underfit.train,
        "underfit_val_error": underfit.val,
        "overfit_train_error": overfit.train,
        "overfit_val_error": overfit.val,
        "fewest_images_gap": fewest.gap,
        "most_images_gap": most.gap,
        **{"gap_closed_" + metric_name(name): value for name, value in closed.items()},
        "runs": len(capacity) + len(data_size) + len(remedies),
    }


def measure(run: Run, data: Splits) -> Errors:
    """Train error of the saved weights on the run's clean training images: the trainer's own
    number is taken on augmented batches, with dropout on, while the weights still change."""
    config = l101_digits.Config(**run.config)
    seen = data.with_train_fraction(config.train_fraction)
    model = l101_digits.model_for(config, seen)
    load_model(model, run.weights_path)
    model.eval()
    with torch.inference_mode():
        predicted = torch.cat([model(batch).argmax(1) for batch in seen.train.inputs.split(4096)])
    train_error = (predicted != seen.train.targets).float().mean().item()
    return Errors(run, train_error, 1 - run.summary["metrics"]["val_accuracy"])


def early_stopped(overfit: Errors) -> Errors:
    """Early stopping needs no run of its own: it returns the weights of the epoch with the best
    validation accuracy. The next epoch starts from those weights and improves on them, so the
    train error it recorded (on clean batches: this model has no augmentation or dropout) errs
    low, which can only understate the gap early stopping closes."""
    epochs = overfit.run.history("epoch")
    best = overfit.run.summary["best"]["epoch"]
    train = 1 - epochs[best + 1]["train_accuracy"] if best + 1 < len(epochs) else overfit.train
    return Errors(overfit.run, train, 1 - epochs[best]["val_accuracy"])


def mean_errors(seeded: list[Errors]) -> Errors:
    """The errors of one setting averaged over its seeds (named after the first seed's run)."""
    first = min(seeded, key=lambda e: e.run.config["seed"])
    n = len(seeded)
    return Errors(first.run, sum(e.train for e in seeded) / n, sum(e.val for e in seeded) / n)


def remedy_name(config: dict[str, Any]) -> str:
    used = {"weight decay": config["weight_decay"] > 0, "dropout": config["dropout"] > 0}
    used["augmentation"] = config["augment"]
    return " + ".join(name for name, on in used.items() if on) or "none"


def metric_name(remedy: str) -> str:
    return remedy.split(" (")[0].replace(" + ", "_and_").replace(" ", "_")


def cures_overfitting(overfit: Errors, treated: Errors) -> bool:
    """Fitting the training images worse narrows the gap too, and cures nothing: a remedy counts
    only if validation error does not rise."""
    return treated.val <= overfit.val


def gap_closed(overfit: Errors, treated: Errors) -> float:
    """The share of the overfit model's gap a remedy closes (1: none left; below 0: wider)."""
    return (overfit.gap - treated.gap) / overfit.gap if overfit.gap > 0 else 0.0


# -- the figures ----------------------------------------------------------------------------------
NOTE = {"textcoords": "offset points", "ha": "center", "fontsize": 8}


def plot_errors(ax: plt.Axes, line: list[Errors], x: list[int], marker: str, label: str) -> None:
    ax.plot(x, [e.val for e in line], marker + "-", color=figures.VAL, label="validation" + label)
    ax.plot(x, [e.train for e in line], marker + "--", color=figures.TRAIN, label="train" + label)


def error_axes(ax: plt.Axes, points: list[Errors], title: str) -> None:
    """Error against x, both on log scales: the two sweeps' shared look."""
    errors = [v for e in points for v in (e.train, e.val)]
    ax.set_xscale("log")
    figures.log_axis(ax, errors)
    ax.set_ylim(0, max(errors) * 2.5)  # room above for the labels; nothing below 0
    ax.set(ylabel="error rate (1 − accuracy)", title=title)
    ax.grid(alpha=0.3, which="both")


def capacity_figure(points: list[Errors], underfit: Errors, overfit: Errors, path: Path) -> None:
    by_size = sorted(points, key=lambda e: e.parameters)
    fig, ax = plt.subplots(figsize=(11, 6))
    depths = sorted({e.run.config["depth"] for e in points})
    for row, depth in enumerate(depths):
        line = [e for e in by_size if e.run.config["depth"] == depth]
        layers = f", {depth} hidden layer{'s' * (depth > 1)}" if len(depths) > 1 else ""
        plot_errors(ax, line, [e.parameters for e in line], "os^Dv"[row % 5], " error" + layers)
        for e in line:  # a row of labels per depth, so that they do not overlap
            name = f"width {e.run.config['width']}"
            ax.annotate(name, (e.parameters, e.val), (0, 7 + 10 * row), **NOTE)
    title = (
        f"Capacity: MLPs from tiny to large, each trained on the same {points[0].images} images\n"
        f"shaded: models that cannot fit them (train error ≥ {UNDERFIT:.0%}) and models that "
        f"learnt them by heart (train error ≤ {MEMORISED:.0%})"
    )
    error_axes(ax, points, title)
    # Each model owns the stretch of the axis halfway (in log) to its neighbours: shade those of
    # the models that cannot fit their training images and of those that learnt them by heart.
    x = [e.parameters for e in by_size]
    edges = [x[0] / 1.6, *(math.sqrt(a * b) for a, b in pairwise(x)), x[-1] * 1.6]
    for colour, text, inside in (
        ("#d62728", UNDERFITTING, [e.train >= UNDERFIT for e in by_size]),
        ("#9467bd", OVERFITTING, [e.train <= MEMORISED for e in by_size]),
    ):
        spans = [(edges[i], edges[i + 1]) for i, yes in enumerate(inside) if yes]
        for span in spans:
            ax.axvspan(*span, color=colour, alpha=0.08, lw=0)
        if spans:
            middle, on_x = math.sqrt(spans[0][0] * spans[-1][1]), ax.get_xaxis_transform()
            ax.text(middle, 0.3, text, transform=on_x, ha="center", color=colour)
    arrow = {**NOTE, "fontsize": 9, "arrowprops": {"arrowstyle": "->"}}
    for e, verdict, offset in (
        (underfit, "underfits", (35, -110)),
        (overfit, "overfits", (-80, 50)),
    ):
        text = f"{verdict}:\ntrain error {e.train:.1%}, validation {e.val:.1%}"
        ax.annotate(text, (e.parameters, e.val), offset, **arrow)
    ax.set(xlim=(edges[0], edges[-1]), xlabel="parameters of the MLP (log scale)")
    ax.legend(loc="lower left", fontsize=9)
    figures.save(fig, path)


def data_size_figure(points: list[Errors], path: Path) -> None:
    line = sorted(points, key=lambda e: e.images)
    x = [e.images for e in line]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    width, depth = line[0].run.config["width"], line[0].run.config["depth"]
    title = (
        f"Data size: one large MLP ({width} wide, {depth} hidden layers) on more and more images\n"
        f"validation error {line[0].val:.1%} with {x[0]} images, {line[-1].val:.1%} with {x[-1]}; "
        f"train error never above {max(e.train for e in line):.1%}"
    )
    plot_errors(ax, line, x, "o", " error")
    error_axes(ax, line, title)
    gaps = ([e.train for e in line], [e.val for e in line])
    ax.fill_between(x, *gaps, color=figures.VAL, alpha=0.12, label="gap (validation − train)")
    for e in line:
        ax.annotate(f"gap {e.gap:.1%}", (e.images, e.val), (0, 8), **NOTE)
    ax.set_xticks(x, [str(n) for n in x])
    ax.set(xlim=(x[0] / 1.4, x[-1] * 1.4), xlabel="training images (log scale)")
    ax.minorticks_off()
    ax.legend(loc="lower left", fontsize=9)
    figures.save(fig, path)


def remedies_figure(overfit: Errors, treated: dict[str, Errors], path: Path, *, seeds: int) -> None:
    closed = {name: gap_closed(overfit, e) for name, e in treated.items()}
    names = sorted(treated, key=closed.__getitem__, reverse=True)
    rows, y = [overfit, *(treated[n] for n in names)], range(len(names) + 1)
    fig, (ax_err, ax_closed) = plt.subplots(
        1, 2, figsize=(13, 0.45 * len(rows) + 2.6), sharey=True, width_ratios=[3, 2]
    )
    ax_err.barh(y, [e.gap for e in rows], left=[e.train for e in rows], color="#ddd", label="gap")
    ax_err.plot([e.train for e in rows], y, "o", color=figures.TRAIN, label="train error")
    ax_err.plot([e.val for e in rows], y, "o", color=figures.VAL, label="validation error")
    ax_err.axvline(overfit.val, color=figures.VAL, ls=":", lw=1)
    ax_err.set_yticks(list(y), ["none: the overfit model", *names])
    ax_err.set(
        xlim=(0, None), xlabel="error rate", title="Train and validation error; the bar is the gap"
    )
    cured = {n: cures_overfitting(overfit, treated[n]) for n in names}
    colours = ["#2ca02c" if cured[n] else "#bbb" for n in names]
    bars = ax_closed.barh(list(y)[1:], [closed[n] for n in names], color=colours)
    notes = [f"{closed[n]:.0%}" + ("" if cured[n] else ", validation worse") for n in names]
    ax_closed.bar_label(bars, labels=notes, fontsize=8, padding=3)
    ax_closed.axvline(0.5, color="black", ls="--", lw=1, label="target: half the gap")
    ax_closed.axvline(0, color="black", lw=0.8)
    ax_closed.set(
        xlabel="share of the overfit model's gap closed",
        title="Gap closed (grey: validation error rose)",
    )
    for ax in (ax_err, ax_closed):
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(alpha=0.3, axis="x")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=3, fontsize=8)
    ax_err.invert_yaxis()  # shared: the overfit model on top, then the remedies, best first
    one_image = 1 / overfit.run.summary["data"]["validation"]
    fig.suptitle(
        f"Remedies for the overfit model ({overfit.images} training images), errors averaged over "
        f"{seeds} seed{'s' * (seeds > 1)}: one validation mistake is {one_image:.1%}"
    )
    figures.save(fig, path)
