"""language/201/unsolvable's figures, one per experiment: counting letters, the reversal curse,
addition by length, and the LLM's reliability diagram."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from deepscape import figures
from deepscape.labs.language.l201_unsolvable_tasks import Reliability
from deepscape.runs import Run

SEEN, HELD_OUT = "#9ecae1", "#1f77b4"


def percent_axis(ax: plt.Axes) -> None:
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.grid(axis="y", alpha=0.3)


def legend_above_bars(ax: plt.Axes) -> None:
    """The legend in a band above 100 %, where no bar reaches."""
    ax.set_ylim(0, 1.32)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.legend(fontsize=8, loc="upper center", ncol=2)


def label_bars(ax: plt.Axes, bars: Any, values: list[float]) -> None:
    for bar, value in zip(bars, values, strict=True):
        if not math.isnan(value):
            ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.0%}",
                    ha="center", va="bottom", fontsize=8)  # fmt: skip


def counting(run: Run, models: dict[str, tuple[float, float]], majority: float) -> Path:
    """Accuracy at counting a letter in words trained on and in held-out words, per model."""
    x = np.arange(len(models))
    seen = [v[0] for v in models.values()]
    held_out = [v[1] for v in models.values()]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    label_bars(ax, ax.bar(x - 0.2, seen, 0.4, color=SEEN, label="words trained on"), seen)
    label_bars(ax, ax.bar(x + 0.2, held_out, 0.4, color=HELD_OUT, label="held-out words"),
               held_out)  # fmt: skip
    ax.axhline(majority, color="grey", linestyle="--", linewidth=1,
               label=f"always the commonest count ({majority:.0%})")  # fmt: skip
    ax.set_xticks(x, list(models), fontsize=9)
    percent_axis(ax)
    ax.set_ylabel("right count of the letter")
    legend_above_bars(ax)
    ax.set_title("'How many r in strawberry?': letters are visible to characters, hidden in "
                 "BPE tokens", fontsize=10)  # fmt: skip
    return figures.save(fig, run.figure_path("counting"))


def reversal(run: Run, metrics: dict[str, float], answers: dict[str, list[dict[str, str]]],
             *, both_ways: int) -> Path:  # fmt: skip
    """Exact recall of 'A is' → B and 'B is' → A, and the choice of the right answer among all,
    with a reverse answer the model gave underneath."""
    groups = ["A is … (trained)", "B is … (never trained)",
              f"B is … (trained too, {both_ways} facts)"]  # fmt: skip
    exact = [metrics["forward_accuracy"], metrics["reverse_accuracy"],
             metrics["reverse_both_ways_accuracy"] if both_ways else math.nan]  # fmt: skip
    choice = [metrics["forward_choice_accuracy"], metrics["reverse_choice_accuracy"], math.nan]
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    label_bars(ax, ax.bar(x - 0.2, np.nan_to_num(exact), 0.4, color=HELD_OUT,
                          label="completed word for word (greedy)"), exact)  # fmt: skip
    label_bars(ax, ax.bar(x + 0.2, np.nan_to_num(choice), 0.4, color=SEEN,
                          label="right answer the likeliest of all"), choice)  # fmt: skip
    ax.axhline(metrics["choice_chance"], color="grey", linestyle="--", linewidth=1,
               label=f"chance of the likeliest ({metrics['choice_chance']:.0%})")  # fmt: skip
    ax.set_xticks(x, groups, fontsize=9)
    percent_axis(ax)
    ax.set_ylabel("accuracy")
    legend_above_bars(ax)
    example = (answers.get("reverse") or [None])[0]
    if example:
        fig.text(0.02, 0.01, f"asked '{example['prompt']}', it said '{example['said']}' "
                 f"(truth: '{example['answer']}')", fontsize=8)  # fmt: skip
    ax.set_title("The reversal curse: a GPT trained on 'A is B' does not know 'B is A'",
                 fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return figures.save(fig, run.figure_path("reversal"), tight=False)


def addition(run: Run, by_length: dict[int, float], train_digits: int) -> Path:
    """Exact-match accuracy of sums against the digits of their numbers, the trained lengths
    shaded."""
    lengths = sorted(by_length)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.axvspan(0.5, train_digits + 0.5, color="#e5f5e0", label="lengths trained on")
    ax.plot(lengths, [by_length[n] for n in lengths], "o-", color=HELD_OUT)
    for n in lengths:
        ax.text(n, by_length[n] + 0.03, f"{by_length[n]:.0%}", ha="center", fontsize=8)
    ax.set_xticks(lengths)
    ax.set_xlim(0.5, max(lengths) + 0.5)
    percent_axis(ax)
    ax.set_xlabel("digits of each number added")
    ax.set_ylabel("sums exactly right")
    ax.legend(fontsize=8, loc="center right")
    ax.set_ylim(0, 1.1)
    ax.set_title(f"Length generalisation: a GPT trained on sums of up to {train_digits} digits, "
                 "tested on longer ones", fontsize=10)  # fmt: skip
    return figures.save(fig, run.figure_path("addition_by_length"))


def reliability(run: Run, found: Reliability, llm: dict[str, Any], dataset: str) -> Path:
    """The reliability diagram: accuracy against confidence in each bin (the diagonal is
    perfect calibration), the gap shaded, and how many answers each bin holds underneath."""
    edges = np.array(found.edges)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    accuracy, confidence = np.array(found.accuracy), np.array(found.confidence)
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(6, 6.4), height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    ax.bar(centres, np.nan_to_num(accuracy), width * 0.95, color=HELD_OUT, label="accuracy")
    # the gap between accuracy and mean confidence, above the bar (overconfident) or inside it
    low = np.nan_to_num(np.minimum(accuracy, confidence))
    gap = np.nan_to_num(np.abs(confidence - accuracy))
    ax.bar(centres, gap, width * 0.95, bottom=low, facecolor="none", edgecolor="#d62728",
           hatch="//", linewidth=0.8, label="gap to its mean confidence")  # fmt: skip
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in the bin")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{llm['model']} asked zero-shot on {dataset}: ECE {found.ece:.3f}\n"
                 f"{llm['precision']}, threads: {llm['threads']}, {llm['tokens_per_s']:.0f} prompt "
                 "tokens/s", fontsize=9)  # fmt: skip
    counts.bar(centres, found.counts, width * 0.95, color="grey")
    counts.set_xlim(0, 1)
    counts.set_xlabel("confidence: its probability of the answer it gives")
    counts.set_ylabel("answers")
    return figures.save(fig, run.figure_path("reliability"))
