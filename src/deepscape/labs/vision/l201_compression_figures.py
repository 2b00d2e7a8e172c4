"""vision/201/compression: the pruning figure — accuracy against sparsity (one shot, fine-tuned,
in rounds), and where global magnitude pruning put the zeros, layer by layer."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

from deepscape import figures
from deepscape.runs import Run


def draw_sparsity(
    run: Run,
    original: float,
    curve: dict[float, float],
    rounds: list[tuple[float, float]],
    *,
    one_shot: dict[str, Any],
    layers: dict[str, float],
) -> None:
    fig, (ax, ax_layers) = plt.subplots(1, 2, figsize=(12, 4.5),
                                        gridspec_kw={"width_ratios": [3, 2]})  # fmt: skip
    shares = [0.0, *curve]
    ax.plot(shares, [original, *curve.values()], marker="o", label="one shot, no fine-tuning")
    ax.plot([0.0] + [s for s, _ in rounds], [original] + [a for _, a in rounds], marker="s",
            label="in rounds, each fine-tuned")  # fmt: skip
    ax.scatter([one_shot["zero_share"]], [one_shot["test_accuracy"]], marker="*", s=160,
               color=figures.WRONG, zorder=3, label="one shot, then fine-tuned")  # fmt: skip
    ax.axhline(original - 0.01, color="grey", ls=":", lw=1, label="1 point below the original")
    ax.set(xlabel="share of weights set to zero", ylabel="test accuracy",
           title="Accuracy against sparsity")  # fmt: skip
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(bottom=max(0.0, min(original - 0.3, *(a for _, a in rounds))))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")

    names = list(layers)
    ax_layers.barh(range(len(names)), list(layers.values()), color="#7f7f7f")
    ax_layers.set_yticks(range(len(names)), names, fontsize=7)
    ax_layers.invert_yaxis()
    ax_layers.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax_layers.set(xlim=(0, 1), xlabel="share of zeros",
                  title="Where the zeros fell (pruned in rounds)")  # fmt: skip
    ax_layers.grid(alpha=0.3, axis="x")
    fig.suptitle("Unstructured pruning: the smallest weights of all layers, ranked together")
    figures.save(fig, run.figure_path("sparsity"))
