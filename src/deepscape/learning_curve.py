"""The learning curve over labelled examples: what pretraining is worth depends on how many labels
you have, so a transfer lab runs each method (from scratch, a linear probe, fine-tuning) at each
number of labels and draws test accuracy against it.

Every point is a run of the lab itself — one method at one size — made by a recorded sweep that
the curve's run stages, so a resumed curve reuses the points it already has.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

from deepscape import figures
from deepscape.config import ConfigError
from deepscape.runs import Run
from deepscape.sweep import inherited, stage

METHODS = ("scratch", "probe", "finetune")
CURVE_KEYS = {"method", "labelled", "sizes", "jobs", "seed"}  # a point's own, not inherited

Curve = dict[str, dict[int, float]]  # method -> labelled examples -> test accuracy


def parse_sizes(text: str, available: int, *, unit: str = "examples") -> list[int]:
    """Labelled examples along the curve, from `100,500,all`: numbers of at least 10 (clipped to
    the `available` training examples), 0 or `all` for the whole split, each used once."""
    sizes = []
    for item in (item.strip() for item in text.split(",")):
        n = available if item in ("all", "0") else int(item) if item.isdigit() else -1
        if n < 10:
            raise ConfigError(f"sizes: '{item}' is not a number of {unit} ≥ 10, or 0 or all")
        sizes.append(min(n, available))
    return sorted(set(sizes))


def run_points(
    run: Run,
    lab: str,
    config: Any,
    sizes: Sequence[int],
    *,
    own: Iterable[str] = (),
    jobs: int = 1,
    methods: Sequence[str] = METHODS,
) -> Curve:
    """Every method at every size, each a run of `lab` that takes over `config`'s options but
    the curve's own and `own` (a sweep runs seed 0: the points compare). Test accuracy by
    method and by the labelled examples each point really had."""
    base = inherited(config, CURVE_KEYS | set(own))
    labelled = ",".join(str(n) for n in sizes)
    items = [*base, f"method={','.join(methods)}", f"labelled={labelled}"]
    curve: Curve = {method: {} for method in methods}
    for point in stage(run, "arms", lab, type(config), items, jobs=jobs):
        if point.status == "finished":
            accuracy = point.summary["metrics"]["test_accuracy"]
            curve[point.config["method"]][point.summary["data"]["train"]] = accuracy
    return curve


def curve_metrics(curve: Curve) -> dict[str, float]:
    """`probe_200: 0.75`, … : every point as a metric of the curve's run."""
    return {
        f"{method}_{n}": value for method, points in curve.items() for n, value in points.items()
    }


def gain_at(better: dict[int, float], baseline: dict[int, float], most: int) -> dict[str, Any]:
    """How far `better` is above `baseline` at the largest size up to `most` that both have:
    {"gain": …, "compared_at": size}, or {} where they share no such size."""
    shared = [n for n in better if n <= most and n in baseline]
    if not shared:
        return {}
    at = max(shared)
    return {"gain": better[at] - baseline[at], "compared_at": at}


@dataclass
class Level:
    """A horizontal line across the curve: a method that needs no labels, or chance."""

    value: float
    label: str
    color: str = "grey"
    linestyle: str = ":"


def curve_figure(
    run: Run,
    curve: Curve,
    labels: dict[str, str],
    *,
    title: str,
    unit: str,
    levels: Sequence[Level] = (),
    name: str = "transfer_curve",
) -> Path:
    """Test accuracy against labelled examples (log scale), one line per method with its values
    written beside the points, and `levels` across; saved as the run's figure `name`."""
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for method, points in curve.items():
        sizes = sorted(points)
        ax.plot(sizes, [points[n] for n in sizes], "o-", label=labels[method])
        offset = (0, 7) if method == "finetune" else (0, -13)  # fine-tuning's values above
        for n in sizes:
            ax.annotate(f"{points[n]:.0%}", (n, points[n]), textcoords="offset points",
                        xytext=offset, ha="center", fontsize=8)  # fmt: skip
    for level in levels:
        ax.axhline(level.value, color=level.color, linestyle=level.linestyle, label=level.label)
    sizes = sorted({n for points in curve.values() for n in points})
    ax.set_xscale("log")
    if sizes:  # none when every point failed
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.margins(y=0.12)
    ax.set_xlabel(f"labelled training {unit} (log scale)")
    ax.set_ylabel("test accuracy")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=8)
    return figures.save(fig, run.figure_path(name))
