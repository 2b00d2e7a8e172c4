"""The accuracy–cost frontier: which models are worth what they cost.

A model is on the frontier when no other model is both at least as accurate and cheaper. Labs
that compare models (architectures, compression) measure each one's costs with `deepscape.costs`
in the same run and draw accuracy against FLOPs and against latency with `frontier_figure`.
Models measured elsewhere — pretrained on ImageNet, at another input size — stand beside them as
references: a line at their cost, with no accuracy on this data to claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

from deepscape import figures
from deepscape.runs import Run

COSTS = {
    "flops": "FLOPs per image (log)",
    "latency_ms": "CPU latency at batch 1, ms (log)",
    "size_bytes": "size on disk, bytes (log)",
}


@dataclass(frozen=True)
class Point:
    """One model: its test accuracy (None for a reference measured on other data) and costs."""

    name: str
    accuracy: float | None
    flops: float  # of one forward pass on one image
    latency_ms: float  # of one forward pass at batch 1
    note: str = ""  # a reference's caveat: "ImageNet, 224×224"
    size_bytes: float = 0.0  # of the file it ships as (where measured)


def pareto(points: Sequence[Point], cost: str) -> list[Point]:
    """The points with an accuracy that no cheaper (or equally cheap) point matches, cheapest
    first: the frontier along `cost` (a key of COSTS)."""
    front: list[Point] = []
    scored = [p for p in points if p.accuracy is not None]
    for point in sorted(scored, key=lambda p: (getattr(p, cost), -p.accuracy)):
        if not front or point.accuracy > front[-1].accuracy:
            front.append(point)
    return front


def frontier_figure(
    run: Run,
    points: Sequence[Point],
    *,
    references: Sequence[Point] = (),
    title: str = "",
    name: str = "frontier",
    costs: Sequence[str] = ("flops", "latency_ms"),
) -> Path:
    """One panel per cost (COSTS' names; log axes), accuracy against it: each point named, the
    frontier joined by a line, and every reference a dashed line at its cost."""
    fig, axes = plt.subplots(1, len(costs), figsize=(6 * len(costs), 4.8), squeeze=False)
    for ax, cost in zip(axes[0], costs, strict=True):
        for point in points:
            ax.scatter(getattr(point, cost), point.accuracy, s=40, zorder=3)
            ax.annotate(point.name, (getattr(point, cost), point.accuracy),
                        textcoords="offset points", xytext=(5, 5), fontsize=9)  # fmt: skip
        front = pareto(points, cost)
        ax.plot([getattr(p, cost) for p in front], [p.accuracy for p in front], "--",
                color="grey", lw=1, label="frontier: nothing cheaper is as accurate")  # fmt: skip
        for i, reference in enumerate(references):  # named left of the line, staggered
            ax.axvline(getattr(reference, cost), color=figures.WRONG, ls=":", lw=1.2,
                       label=reference.note if reference.note and i == 0 else None)  # fmt: skip
            ax.text(getattr(reference, cost), 0.98 - 0.5 * (i % 2), f"{reference.name} ",
                    transform=ax.get_xaxis_transform(), rotation=90, va="top", ha="right",
                    fontsize=8, color=figures.WRONG)  # fmt: skip
        ax.set_xscale("log")
        if references:  # room right of the last line
            ax.set_xlim(right=2 * max(getattr(r, cost) for r in references))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set(xlabel=COSTS[cost], ylabel="test accuracy")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title or f"Accuracy against cost · {run.id}")
    return figures.save(fig, run.figure_path(name))
