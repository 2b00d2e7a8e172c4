"""language/201/one-model's figure: the table of task × method as a heatmap."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from deepscape import figures
from deepscape.runs import Run


def task_by_method(
    run: Run, table: dict[str, dict[str, float]], metrics: dict[str, str], *, title: str
) -> Path:
    """One row a task, one column a method, each cell its score (accuracy and exact match in %,
    ROUGE-L as a fraction), coloured 0 → 1; a method a task cannot have (calibration without
    labels) is left grey."""
    methods = sorted({m for row in table.values() for m in row}, key=column_order)
    values = np.array([[row.get(m, math.nan) for m in methods] for row in table.values()])
    fig, ax = plt.subplots(figsize=(1.0 * len(methods) + 3.2, 0.5 * len(table) + 1.8))
    ax.set_facecolor("#dddddd")
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        if not math.isnan(value):
            rouge = metrics[list(table)[i]] == "ROUGE-L"
            ax.text(j, i, f"{value:.2f}" if rouge else f"{value:.0%}", ha="center", va="center",
                    fontsize=8, color="black" if value > 0.6 else "white")  # fmt: skip
    ax.set_xticks(range(len(methods)), [m.replace(" ", "\n", 1) for m in methods], fontsize=8)
    ax.set_yticks(range(len(table)), [f"{t}\n{metrics[t]}" for t in table], fontsize=8)
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    ax.set_title(title, fontsize=10, pad=28)
    return figures.save(fig, run.figure_path("task_by_method"))


LATER = ("LoRA per task", "LoRA all tasks", "101 specialist")


def column_order(method: str) -> tuple[int, int, bool]:
    """0-shot, 0-shot calibrated, 1-shot, …, then the LoRAs and language/101's model."""
    if method in LATER:
        return (1 + LATER.index(method), 0, False)
    return (0, int(method.split("-")[0]), "calibrated" in method)
