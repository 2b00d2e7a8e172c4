"""The standard figures every training run gets, drawn from the run's recorded history.

Each function writes one PNG into the run's `figures/` folder and returns its path. They read the
run store, not the trainer, so they can be redrawn for any recorded run.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, never windows: labs run in terminals, notebooks and CI alike
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from deepscape import metrics
from deepscape.runs import Run

TRAIN, VAL, WRONG = "#1f77b4", "#ff7f0e", "#d62728"


def log_axis(ax: plt.Axes, values: list[float]) -> None:
    """A y axis for losses and error rates: log where values span decades, with plain-number
    labels ('0.3', not '3×10⁻¹'); symlog when a value is 0, so a perfect score still shows."""
    positive = [v for v in values if v > 0]
    if not positive:
        return
    if len(positive) < len(values):
        ax.set_yscale("symlog", linthresh=min(0.01, min(positive)))
    else:
        ax.set_yscale("log")
        if max(positive) / min(positive) < 10:  # under a decade: label the minor ticks too
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))


def fixed_margins(
    fig: plt.Figure,
    *,
    left: float,
    bottom: float,
    top: float,
    right: float = 0.2,
    wspace: float = 0,
) -> None:
    """Margins in inches. The standard figures are drawn for every run (a sweep draws hundreds),
    and measuring every label as `tight_layout` does costs as much as drawing the figure."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=wspace,
    )


def save(fig: plt.Figure, path: Path, *, tight: bool = True) -> Path:
    """Write `fig` as a PNG; `tight=False` keeps the margins set by `fixed_margins`."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(run: Run, *, title: str = "") -> Path:
    """Loss, train vs validation (train loss per step faint behind), and beside it the monitored
    metric (an accuracy as its error rate, 1 − accuracy), per epoch or per evaluation."""
    steps, evaluations = run.history("step"), run.evaluations()
    by_epoch = bool(evaluations) and evaluations[0]["kind"] == "epoch"
    monitor = run.summary.get("monitor", "val_loss")
    panels = 1 if metrics.base_name(monitor) == "loss" else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    ax_loss = axes[0][0]
    if by_epoch:  # x in epochs: a step is a fraction of one
        per_epoch = evaluations[0]["step"] / (evaluations[0]["epoch"] + 1)
        x = [e["epoch"] + 1 for e in evaluations]
        step_x = [(s["step"] + 1) / per_epoch for s in steps]
    else:
        x = [e["step"] for e in evaluations]
        step_x = [s["step"] + 1 for s in steps]
    ax_loss.plot(step_x, [s["loss"] for s in steps], color=TRAIN, alpha=0.25, lw=0.8,
                 label="train (each step)")  # fmt: skip
    ax_loss.plot(x, [e["train_loss"] for e in evaluations], "o-", color=TRAIN,
                 label="train (mean since the last evaluation)")  # fmt: skip
    ax_loss.plot(x, [e["val_loss"] for e in evaluations], "o-", color=VAL, label="validation")
    x_label = "epoch" if by_epoch else "step"
    ax_loss.set(xlabel=x_label, ylabel="loss", title="Loss")
    log_axis(ax_loss, [s["loss"] for s in steps] + [e["val_loss"] for e in evaluations])
    if panels == 2:
        metric_panel(axes[0][1], evaluations, x, metrics.base_name(monitor), x_label)
    if run.config.get("label_smoothing") or run.config.get("augment"):
        fig.text(
            0.01,
            0.01,
            "Train loss is measured on augmented / label-smoothed batches, so it "
            "can sit above the validation loss, which is plain cross-entropy.",
            fontsize=8,
            color="grey",
        )
    for ax in axes[0]:
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.suptitle(title or f"Training curves · {run.id}")
    fixed_margins(fig, left=1.0, bottom=0.75, top=0.55, wspace=0.25)
    return save(fig, run.figure_path("curves"), tight=False)


def metric_panel(
    ax: plt.Axes, evaluations: list[dict], x: list[float], name: str, x_label: str
) -> None:
    """Train and validation `name` per evaluation, the best validation value marked; a share
    that is better high (an accuracy) is drawn as what is left, 1 − value, on a log axis."""
    info = metrics.get(name)
    as_error = info.higher_is_better and "%" in info.format

    def shown(value: float) -> float:
        return 1 - value if as_error else value

    drawn = []
    for split, colour in (("train", TRAIN), ("val", VAL)):
        key = f"{split}_{name}"
        if key in evaluations[0]:
            values = [shown(e[key]) for e in evaluations]
            ax.plot(x, values, "o-", color=colour, label="validation" if split == "val" else split)
            drawn += values
    best = metrics.best(evaluations, f"val_{name}")
    if best:
        at = x[evaluations.index(best)]
        # the label in a corner, away from the curves, with an arrow to the point
        ax.annotate(
            f"best val {name} {info.show(best[f'val_{name}'])}",
            (at, shown(best[f"val_{name}"])),
            xytext=(0.97, 0.95),
            textcoords="axes fraction",
            ha="right",
            va="top",
            arrowprops={"arrowstyle": "->", "color": "0.4"},
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.8", "alpha": 0.9},
        )
    label = f"1 − {name} (error rate)" if as_error else name
    ax.set(xlabel=x_label, ylabel=label, title="Error" if as_error else name)
    if as_error:
        log_axis(ax, drawn)


def optimization(run: Run, *, title: str = "") -> Path:
    """Learning rate, global gradient norm, and update/weight ratio per layer, per step."""
    steps = run.history("step")
    x = [s["step"] for s in steps]
    fig, (ax_lr, ax_grad, ax_ratio) = plt.subplots(1, 3, figsize=(15, 4))
    ax_lr.plot(x, [s["lr"] for s in steps], color=TRAIN)
    ax_lr.set(xlabel="step", ylabel="learning rate", title="Learning-rate schedule")
    measured = [s for s in steps if "grad_norm" in s]  # every diagnostics_every steps
    ax_grad.plot([s["step"] for s in measured], [s["grad_norm"] for s in measured], color=TRAIN,
                 lw=0.8)  # fmt: skip
    ax_grad.set(
        xlabel="step", ylabel="‖∇loss‖ (all parameters)", yscale="log", title="Gradient norm"
    )
    watched = [s for s in steps if "update_ratio" in s]  # every diagnostics_every steps
    names = list(watched[0]["update_ratio"]) if watched else []
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""  # noqa: RUF071
    prefix = prefix[: prefix.rfind(".") + 1]  # cut at a dot: "1.features.0" → "features.0"
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(names))))
    for name, colour in zip(names, colours, strict=False):
        ratios = [max(s["update_ratio"][name], 1e-12) for s in watched]
        ax_ratio.plot([s["step"] for s in watched], ratios, color=colour, lw=0.8,
                      label=name.removeprefix(prefix))  # fmt: skip
    ax_ratio.axhline(1e-3, color="grey", ls="--", lw=1, label="≈1e-3: a healthy rate")
    ax_ratio.set(
        xlabel="step", ylabel="‖ΔW‖ / ‖W‖", yscale="log", title="Update size relative to weights"
    )
    ax_ratio.legend(fontsize=7)
    for ax in (ax_lr, ax_grad, ax_ratio):
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title or f"Optimisation · {run.id}")
    fixed_margins(fig, left=0.9, bottom=0.6, top=0.55, wspace=0.3)
    return save(fig, run.figure_path("optimization"), tight=False)


def confusion_matrix(
    run: Run, targets: torch.Tensor, predictions: torch.Tensor, classes: list[str]
) -> Path:
    """Counts of (true class, predicted class) on the test split; the diagonal is right."""
    n = len(classes)
    counts = torch.bincount(targets * n + predictions, minlength=n * n).reshape(n, n).numpy()
    size = max(5, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(counts, cmap="Blues")
    for (i, j), count in np.ndenumerate(counts):
        if count:
            colour = "white" if count > counts.max() / 2 else ("black" if i == j else WRONG)
            ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(n), classes, rotation=45 if max(map(len, classes)) > 2 else 0)
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true")
    accuracy = counts.trace() / counts.sum()
    ax.set_title(
        f"Test confusion matrix · accuracy {accuracy:.2%} · {counts.sum() - counts.trace()}"
        f" mistakes of {counts.sum()}"
    )
    fig.colorbar(image, ax=ax, fraction=0.046, label="images")
    longest = max(map(len, classes))  # tick labels: horizontal on the left, 45° below
    fixed_margins(fig, left=0.6 + 0.08 * longest, bottom=0.6 + 0.06 * longest, top=0.45, right=0.8)
    return save(fig, run.figure_path("confusion_matrix"), tight=False)


def prediction_grid(
    run: Run,
    images: torch.Tensor,
    targets: torch.Tensor,
    probabilities: torch.Tensor,
    classes: list[str],
    *,
    count: int = 32,
) -> Path:
    """Test images with their predictions: every mistake first (most confident first, in red),
    then correct ones; each titled 'true → predicted (probability)'."""
    confidence, predictions = probabilities.max(1)
    wrong = (predictions != targets).nonzero().flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)][: count // 2]
    right = (predictions == targets).nonzero().flatten()[: count - len(wrong)]
    shown = torch.cat([wrong, right]).tolist()
    cols = 8
    rows = max(1, -(-len(shown) // cols))
    # One axes with every image placed in it: a subplot per image costs ~30 ms each to draw.
    fig, ax = plt.subplots(figsize=(cols * 1.6, rows * 1.85))
    step_x, step_y = 1.25, 1.5
    split = "\n" if max(map(len, classes)) > 6 else " "  # T-shirt/top → Ankle boot: two lines
    for n, i in enumerate(shown):
        x, y = (n % cols) * step_x, -(n // cols) * step_y
        image = images[i].permute(1, 2, 0).numpy()
        ax.imshow(
            image.squeeze(-1) if image.shape[-1] == 1 else image,
            cmap="gray_r",
            extent=(x, x + 1, y - 1, y),
            interpolation="nearest",
        )
        is_wrong = bool(predictions[i] != targets[i])
        ax.text(
            x + 0.5,
            y + 0.06,
            f"{classes[targets[i]]} →{split}{classes[predictions[i]]} ({confidence[i]:.0%})",
            ha="center",
            va="bottom",
            fontsize=9 if split == " " else 8,
            color=WRONG if is_wrong else "black",
            fontweight="bold" if is_wrong else "normal",
        )
        if is_wrong:
            ax.add_patch(plt.Rectangle((x, y - 1), 1, 1, fill=False, edgecolor=WRONG, lw=3))
    ax.set_xlim(-0.1, cols * step_x)
    ax.set_ylim(-rows * step_y + 0.3, 0.35)
    ax.set_aspect("equal")
    ax.axis("off")
    mistakes = int((predictions != targets).sum())
    fig.suptitle(
        f"Test predictions, true → predicted (confidence) · {mistakes} mistake"
        f"{'s' * (mistakes != 1)} of {len(targets)}, shown first in red, most confident first"
    )
    fixed_margins(fig, left=0.1, bottom=0.1, top=0.5, right=0.1)
    return save(fig, run.figure_path("predictions"), tight=False)


def attention_maps(
    run: Run, maps: torch.Tensor, tokens: list[str], *, title: str = "", name: str = "attention"
) -> Path:
    """Every head's attention weights "layer head t t" on one sequence of `tokens`, one panel a
    head (rows: layers): row i of a panel is what token i looks at. Tokens label the axes of the
    first column and the last row (a space shown as ␣)."""
    layers, heads = maps.shape[:2]
    labels = [t.replace(" ", "␣").replace("\n", "⏎") for t in tokens]
    side = max(2.2, 0.11 * len(tokens))
    fig, axes = plt.subplots(
        layers, heads, figsize=(side * heads + 1, side * layers + 1), squeeze=False
    )
    ticks = range(len(tokens))
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer][head]
            ax.imshow(maps[layer, head].float().cpu().numpy(), cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks(ticks, labels if layer == layers - 1 else [], fontsize=6,
                          family="monospace")  # fmt: skip
            ax.set_yticks(ticks, labels if head == 0 else [], fontsize=6, family="monospace")
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
    fig.suptitle(title or f"Attention · {run.id}")
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the title above the panels' own
    return save(fig, run.figure_path(name), tight=False)


def text_samples(run: Run, samples: dict[str, str], *, title: str, name: str = "samples") -> Path:
    """Generated texts side by side, each under its heading (a temperature, say)."""
    import textwrap

    fig, axes = plt.subplots(1, len(samples), figsize=(5.2 * len(samples), 7), squeeze=False)
    for ax, (heading, text) in zip(axes[0], samples.items(), strict=True):
        lines = [wrapped for line in text.splitlines()[:40]
                 for wrapped in textwrap.wrap(line, 58) or [""]]  # fmt: skip
        ax.text(0, 1, "\n".join(lines[:40]), va="top", family="monospace", fontsize=7,
                transform=ax.transAxes)  # fmt: skip
        ax.set_title(heading)
        ax.axis("off")
    fig.suptitle(title)
    return save(fig, run.figure_path(name))
