"""vision/201/unsolvable's figures, one per experiment: adversarial examples, memorisation,
distribution shift and coloured MNIST."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.gridspec import GridSpec
from matplotlib.ticker import PercentFormatter

from deepscape import figures
from deepscape.data import Splits, TensorSplit
from deepscape.figures import TRAIN, VAL, WRONG
from deepscape.labs.vision.l201_unsolvable_attacks import Curve, PhotoCurve
from deepscape.labs.vision.l201_unsolvable_data import CORRUPTIONS
from deepscape.runs import Run

STYLE = {"fgsm": {"linestyle": "--", "marker": "o"}, "pgd": {"linestyle": "-", "marker": "s"}}
SWEPT = {"rotation": "rotation (degrees)", "noise": "Gaussian noise (σ)",
         "blur": "Gaussian blur (σ, pixels)", "contrast": "contrast kept"}  # fmt: skip


def picture(image: torch.Tensor) -> np.ndarray:
    """ "c h w" in [0, 1] → what imshow draws."""
    pixels = image.detach().permute(1, 2, 0).numpy().clip(0, 1)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def show(ax: plt.Axes, image: torch.Tensor, title: str = "", *, colour: str = "black") -> None:
    ax.imshow(picture(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=7, color=colour)
    ax.set_xticks([])
    ax.set_yticks([])


def strip(images: torch.Tensor) -> torch.Tensor:
    """ "n c h w" → "c h n·w": the images side by side, a thin grey line between them."""
    gap = torch.full((*images.shape[1:3], 1), 0.5)
    parts = [part for image in images for part in (image, gap)][:-1]
    return torch.cat(parts, dim=2)


def percent_axis(ax: plt.Axes, chance: float | None = 0.1) -> None:
    ax.set_ylim(0, 1.04)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1)
    ax.grid(alpha=0.3)


# -- adversarial examples -----------------------------------------------------------------------
def adversarial(
    run: Run, curves: dict[str, Curve], photos: dict[str, PhotoCurve], *, pgd_steps: int
) -> Path:
    """Accuracy against ε for each model; under it, a test image at each ε of PGD, and photos
    before and after the untargeted and the targeted attack."""
    panels = len(curves) + bool(photos)
    photo_name = next(iter(photos), None)
    shown = photos[photo_name].shown["clean"][0] if photo_name else None
    columns = max([panels * 2, *(len(c.epsilons) for c in curves.values()),
                   len(shown) if shown is not None else 0])  # fmt: skip
    rows = [2.8, *[1.9] * len(curves), *([2.1] * 3 if photo_name else [])]
    fig = plt.figure(figsize=(max(10.0, 2.0 * columns), sum(rows) + 0.6))
    grid = GridSpec(len(rows), columns, figure=fig, height_ratios=rows)
    span = columns // panels
    for i, (name, curve) in enumerate(curves.items()):
        ax = fig.add_subplot(grid[0, i * span : (i + 1) * span])
        for attack, values in curve.accuracy.items():
            ax.plot(curve.epsilons, values, label=attack.upper(), **STYLE[attack])
        ax.set_xlabel("ε (pixels in [0, 1])")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"the {name} model", fontsize=9)
        percent_axis(ax)
        ax.legend(fontsize=7)
    if photo_name:
        ax = fig.add_subplot(grid[0, len(curves) * span : (len(curves) + 1) * span])
        for name, curve in photos.items():
            epsilons = [e * 255 for e in curve.epsilons]
            for attack, values in curve.named_right.items():
                ax.plot(epsilons, values, label=f"{name}, {attack.upper()}", **STYLE[attack])
        ax.set_xlabel("ε (in 1/255 of the pixel range)")
        ax.set_ylabel("photos named right")
        ax.set_title("ImageNet models, 6 photos", fontsize=9)
        percent_axis(ax, chance=None)
        ax.legend(fontsize=6)
    for row, (name, curve) in enumerate(curves.items(), start=1):
        for column, (epsilon, (image, predicted, confidence)) in enumerate(
            zip(curve.epsilons, curve.examples, strict=True)
        ):
            ax = fig.add_subplot(grid[row, column])
            said = f"ε={epsilon:g}: {predicted} ({confidence:.0%})"
            show(ax, image, f"{name}: a {curve.example_class}\n{said}" if column == 0 else said,
                 colour=WRONG if predicted != curve.example_class else "black")  # fmt: skip
    if photo_name:
        curve = photos[photo_name]
        largest = curve.epsilons[-1] * 255
        labels = {
            "clean": f"{photo_name}: the photo",
            "pgd": f"PGD, ε={largest:g}/255",
            "targeted": f"aimed at {curve.target}",
        }
        first, clean = len(rows) - 3, curve.shown["clean"][1]
        for row, (key, (images, names, probabilities)) in enumerate(curve.shown.items()):
            for column, image in enumerate(images[:columns]):
                ax = fig.add_subplot(grid[first + row, column])
                title = f"{names[column]} ({probabilities[column]:.0%})"
                show(ax, image, f"{labels[key]}\n{title}" if column == 0 else title,
                     colour=WRONG if names[column] != clean[column] else "black")  # fmt: skip
    fig.suptitle(f"Adversarial examples: every pixel moved by at most ε (PGD: {pgd_steps} steps)",
                 fontsize=11)  # fmt: skip
    return figures.save(fig, run.figure_path("adversarial"))


# -- memorisation -----------------------------------------------------------------------------
def memorisation(run: Run, by_noise: dict[float, Run], *, title: str) -> Path:
    """Training accuracy (on the labels given) and held-out accuracy (on the true labels) by
    epoch, a colour per share of random labels; beside it, the final accuracies by that share."""
    fig, (curves, final) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[1.6, 1])
    colours = plt.get_cmap("viridis")
    noises = sorted(by_noise)
    for noise in noises:
        evaluations = by_noise[noise].evaluations()
        epochs = [e["epoch"] + 1 for e in evaluations]
        colour = colours(noise * 0.85)
        curves.plot(epochs, [e["train_accuracy"] for e in evaluations], color=colour,
                    label=f"{noise:.0%} random labels: training")  # fmt: skip
        curves.plot(epochs, [e["val_accuracy"] for e in evaluations], color=colour,
                    linestyle="--", label=f"{noise:.0%} random labels: held out")  # fmt: skip
    curves.set_xlabel("epoch")
    curves.set_ylabel("accuracy")
    curves.set_title("solid: on the labels it was given · dashed: held-out images, true labels",
                     fontsize=9)  # fmt: skip
    percent_axis(curves)
    curves.legend(fontsize=7, loc="center right")
    measured = [by_noise[n].summary["metrics"] for n in noises]
    final.plot(noises, [m["train_accuracy"] for m in measured], "o-", color=TRAIN,
               label="training images, labels given")  # fmt: skip
    final.plot(noises, [m["test_accuracy"] for m in measured], "s--", color=VAL,
               label="test images, true labels")  # fmt: skip
    final.set_xlabel("share of training labels replaced by random classes")
    final.set_title("after the last epoch", fontsize=9)
    final.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    percent_axis(final)
    final.legend(fontsize=7)
    fig.suptitle(f"Memorisation: {title}, true labels against random ones (dotted: chance)",
                 fontsize=11)  # fmt: skip
    return figures.save(fig, run.figure_path("memorisation"))


# -- distribution shift -------------------------------------------------------------------------
def shift(
    run: Run,
    table: dict[str, dict[str, float]],
    tests: dict[str, TensorSplit],
    levels: dict[str, tuple[float, ...]],
    sweeps: dict[str, list[float]],
    example: torch.Tensor,
) -> Path:
    """The test digits of each style, the accuracy of each style's model on each, and the MNIST
    model's accuracy against the severity of each corruption, the corrupted digit under it."""
    fig = plt.figure(figsize=(13, 8.2))
    grid = GridSpec(3, 4, figure=fig, height_ratios=[2.4, 2.4, 0.7])
    examples = fig.add_subplot(grid[0, :2])
    rows = [strip(split.inputs[torch.arange(10) * (len(split) // 10)]) for split in tests.values()]
    examples.imshow(picture(torch.cat(rows, dim=1)), cmap="gray", vmin=0, vmax=1)
    side = rows[0].shape[1]
    examples.set_yticks([side * (i + 0.5) for i in range(len(tests))], list(tests))
    examples.set_xticks([])
    examples.set_title("test digits of each style, framed alike", fontsize=9)
    matrix = np.array([[table[t][s] for s in tests] for t in table])
    heat = fig.add_subplot(grid[0, 2:])
    heat.imshow(matrix, cmap="RdYlGn", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(matrix):
        heat.text(j, i, f"{value:.1%}", ha="center", va="center", fontsize=10)
    heat.set_xticks(range(len(tests)), list(tests), fontsize=8)
    heat.set_yticks(range(len(table)), list(table), fontsize=8)
    heat.set_xlabel("tested on", fontsize=8)
    heat.set_ylabel("trained on", fontsize=8)
    heat.set_title("test accuracy: one style's model on each style", fontsize=9)
    for column, (name, values) in enumerate(levels.items()):
        ax = fig.add_subplot(grid[1, column])
        ax.plot(values, sweeps[name], "o-")
        ax.set_xlabel(SWEPT[name], fontsize=8)
        ax.set_ylabel("MNIST test accuracy" if column == 0 else "")
        percent_axis(ax)
        look = fig.add_subplot(grid[2, column])
        look.imshow(picture(strip(torch.cat([CORRUPTIONS[name](example, v) for v in values]))),
                    cmap="gray", vmin=0, vmax=1)  # fmt: skip
        look.set_xticks([])
        look.set_yticks([])
    fig.suptitle("Distribution shift: new styles of digit, and old digits corrupted", fontsize=11)
    return figures.save(fig, run.figure_path("shift"))


# -- spurious correlation: coloured MNIST ---------------------------------------------------------
def spurious(run: Run, metrics: dict[str, float], painted: Splits, *, agreement: float) -> Path:
    """Coloured training and test digits, and the accuracies of the CNN that saw colour and of
    the CNN that saw grey digits."""
    fig = plt.figure(figsize=(12, 4.4))
    grid = GridSpec(2, 2, figure=fig, width_ratios=[1.2, 1])
    shown = {
        f"training: colour = the label's for {agreement:.0%}": painted.train,
        "test: colour at random": painted.test,
    }
    for row, (said, split) in enumerate(shown.items()):
        ax = fig.add_subplot(grid[row, 0])
        order = split.targets.argsort()[:: max(1, len(split) // 12)][:12]
        show(ax, strip(split.inputs[order]))
        ax.set_title(said, fontsize=9)
    bars = fig.add_subplot(grid[:, 1])
    kinds = ["training", "test, colours as in training", "test, colours at random"]
    values = {
        "coloured digits": [metrics["coloured_train_accuracy"],
                            metrics["coloured_agreeing_test_accuracy"],
                            metrics["coloured_test_accuracy"]],
        "grey digits": [metrics["grey_train_accuracy"], metrics["grey_test_accuracy"],
                        metrics["grey_test_accuracy"]],
    }  # fmt: skip
    positions = np.arange(len(kinds))
    for i, (name, heights) in enumerate(values.items()):
        drawn = bars.bar(positions + 0.38 * i, heights, 0.38, label=f"CNN on {name}")
        bars.bar_label(drawn, fmt="{:.0%}", fontsize=7)
    bars.set_xticks(positions + 0.19, kinds, fontsize=7)
    percent_axis(bars)
    bars.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    bars.set_title(f"the colour CNN follows the colour on {metrics['colour_follow_rate']:.0%} "
                   "of test digits", fontsize=9)  # fmt: skip
    fig.suptitle("Spurious correlation: coloured MNIST", fontsize=11)
    return figures.save(fig, run.figure_path("coloured_mnist"))
