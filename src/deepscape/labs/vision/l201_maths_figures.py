"""vision/201/model-as-maths: its figures — the hand CNN learning, memory by kind against batch
size (predicted bars, measured dots), and throughput against the matmul peak."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from deepscape.figures import save
from deepscape.runs import Run

KIND_COLOURS = {
    "parameters": "#2ca02c",
    "gradients": "#1f77b4",
    "optimizer_state": "#bcbd22",
    "activations": "#d62728",
}


def draw_training(run: Run, losses: list[float]) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.arange(len(losses))
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.plot(steps, losses, color="#1f77b4", alpha=0.25, lw=0.6, label="each step")
    ax.plot(steps[window - 1 :], smooth, color="#1f77b4", label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="cross-entropy", yscale="log",
           title="The hand-written CNN learns the digits (its own backward)")  # fmt: skip
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    save(fig, run.figure_path("hand_cnn_training"))


def draw_memory(run: Run, rows: list[dict[str, Any]]) -> None:
    """Per model: stacked predicted bytes by kind at each batch size (fp32), measured as dots."""
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    models = list(dict.fromkeys(r["model"] for r in fp32))
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in fp32 if r["model"] == model]
        x = np.arange(len(mine))
        bottom = np.zeros(len(mine))
        for kind, colour in KIND_COLOURS.items():
            predicted = np.array([r[f"predicted_{kind}"] for r in mine]) / 2**20
            measured = np.array([r[f"measured_{kind}"] for r in mine]) / 2**20
            ax.bar(x, predicted, bottom=bottom, color=colour, width=0.6,
                   label=f"{kind.replace('_', ' ')} (predicted)")  # fmt: skip
            ax.scatter(x, bottom + measured, color="black", marker="_", s=300, zorder=3,
                       label="measured" if kind == "parameters" else None)  # fmt: skip
            bottom += predicted
        ax.set_xticks(x, [str(r["batch"]) for r in mine])
        ax.set(xlabel="batch size", ylabel="MiB", title=model)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(
        "Memory of one training step (fp32, AdamW): predicted by kind (bars), measured (lines)"
    )
    save(fig, run.figure_path("memory_by_batch_size"))


def draw_mfu(
    run: Run, models: list[dict[str, Any]], small: list[dict[str, Any]], peaks: dict[str, float]
) -> None:
    """Left: each model's training FLOP/s as a share of the matmul peak, per precision. Right:
    the digits CNN's share against batch size — where a small model loses it."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(models))
    for i, precision in enumerate(peaks):
        shares = [100 * r[f"mfu_{precision}"] for r in models]
        left.bar(x + 0.4 * i - 0.2 * (len(peaks) - 1), shares, width=0.4,
                 label=f"{precision} (peak {peaks[precision] / 1e9:.0f} GFLOP/s)")  # fmt: skip
    left.set_xticks(x, [f"{r['model']}\nbatch {r['batch']}" for r in models], fontsize=8)
    left.set(ylabel="% of the matmul peak", title="Model FLOPs utilisation, training")
    left.legend(fontsize=8)
    for precision in peaks:
        right.plot([r["batch"] for r in small], [100 * r[f"mfu_{precision}"] for r in small],
                   marker="o", label=precision)  # fmt: skip
    right.set(xscale="log", xlabel="batch size", ylabel="% of the matmul peak",
              title=f"{small[0]['model']}: small batches leave the cores idle")  # fmt: skip
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    save(fig, run.figure_path("flops_utilisation"))
