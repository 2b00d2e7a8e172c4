"""The figure of vision/201/advanced-transfer: test accuracy by method at each number of labels,
beside accuracy against the share of parameters trained (the cost side of the choice)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import PercentFormatter

from deepscape import figures
from deepscape.runs import Run

ORDER = ("probe", "probe_adabn", "finetune", "finetune_adabn", "llrd", "llrd_adabn", "gradual",
         "gradual_adabn", "lora", "lora_adabn")  # fmt: skip


def comparison_figure(
    run: Run, results: dict[str, dict[int, dict[str, float]]], *, title: str
) -> Path:
    """Left: test accuracy of every arm (bars), one bar per number of labels. Right: at the most
    labels, test accuracy against the share of parameters trained (log scale), each point named
    with the measured peak memory of its training step."""
    names = sorted(results, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    sizes = sorted({n for by_size in results.values() for n in by_size})
    fig, (bars, cost) = plt.subplots(1, 2, figsize=(13, 5), width_ratios=(3, 2))
    width = 0.8 / len(sizes)
    for i, n in enumerate(sizes):
        x = np.arange(len(names)) + (i - (len(sizes) - 1) / 2) * width
        values = [results[name].get(n, {}).get("test_accuracy", np.nan) for name in names]
        drawn = bars.bar(x, values, width, label=f"{n:,} labels")
        bars.bar_label(drawn, [f"{v:.1%}" if v == v else "" for v in values], fontsize=7,
                       padding=2, rotation=90)  # fmt: skip
    bars.set_xticks(np.arange(len(names)), [n.replace("_", "\n+") for n in names], fontsize=8)
    low = min(arm["test_accuracy"] for by_size in results.values() for arm in by_size.values())
    bars.set_ylim(max(0.0, low - 0.1), 1.04)
    bars.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    bars.set_ylabel("test accuracy")
    bars.set_title(f"{title}: accuracy by method")
    bars.legend(fontsize=8, loc="lower right")
    bars.grid(axis="y", alpha=0.3)

    most = sizes[-1]
    for name in names:
        arm = results[name].get(most)
        if arm is None:
            continue
        cost.scatter(arm["trainable_share"], arm["test_accuracy"], s=40)
        memory = f", {arm['step_peak_mb']:.0f} MB" if "step_peak_mb" in arm else ""
        cost.annotate(f"{name}{memory}", (arm["trainable_share"], arm["test_accuracy"]),
                      textcoords="offset points", xytext=(5, 3), fontsize=8)  # fmt: skip
    cost.set_xscale("log")
    cost.xaxis.set_major_formatter(PercentFormatter(1.0))
    cost.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    cost.set_xlabel("parameters trained (share of the model's, log scale)")
    cost.set_ylabel("test accuracy")
    cost.set_title(f"at {most:,} labels: what each arm trains (peak step memory)")
    cost.grid(alpha=0.3)
    cost.margins(x=0.25, y=0.15)
    return figures.save(fig, run.figure_path("methods"))
