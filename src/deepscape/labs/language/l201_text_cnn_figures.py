"""language/201/text-cnn's figure: accuracy against sentence length, one line per model, with each
model's receptive field marked in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib import colormaps

from deepscape import figures
from deepscape.runs import Run


def bucket_centres(names: list[str]) -> list[float]:
    """Where each bucket ("1–10", …, "31+") sits on a words axis; the open last one as wide as
    the one before it."""
    bounds = [tuple(int(x) for x in name.rstrip("+").split("–")) for name in names]
    centres = [(b[0] + b[-1]) / 2 for b in bounds[:-1]]
    last = bounds[-1][0]
    width = bounds[-2][-1] - bounds[-2][0] + 1 if len(bounds) > 1 else 10
    return [*centres, last + (width - 1) / 2]


def accuracy_by_length(
    run: Run,
    curves: dict[str, list[dict[str, Any]]],
    fields: dict[str, dict[str, Any]],
    *,
    title: str,
) -> Path:
    """Test accuracy in each length bucket, a line per model (an empty bucket is a gap), and a
    dashed line at each model's receptive field in words (a character field converted at the
    test sentences' characters per word); the attention model's field is the whole sentence."""
    names = [row["words"] for row in next(iter(curves.values()))]
    x = bucket_centres(names)
    colours = colormaps["tab10"].colors
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for i, (model, rows) in enumerate(curves.items()):
        field = fields[model]
        where = field["in_words"]
        if where is None:
            seen = "sees the whole sentence"
        elif field["unit"] == "words":
            seen = f"field {field['computed']} words"
        else:
            seen = f"field {field['computed']} {field['unit']} ≈ {where:.0f} words"
        accuracy = [r["accuracy"] if r["accuracy"] is not None else float("nan") for r in rows]
        ax.plot(x, accuracy, "o-", color=colours[i], label=f"{model} ({seen})")
        if where is not None:
            ax.axvline(where, color=colours[i], linestyle="--", linewidth=1, alpha=0.8)
    counts = [row["sentences"] for row in next(iter(curves.values()))]
    ax.set_xticks(x, [f"{n}\n({c} sentences)" for n, c in zip(names, counts, strict=True)],
                  fontsize=8)  # fmt: skip
    ax.set_xlim(0, max(x[-1] + 5, *(f["in_words"] or 0 for f in fields.values())) + 2)
    ax.set_xlabel("sentence length in words (dashed: each CNN's receptive field)")
    ax.set_ylabel("test accuracy")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title, fontsize=10)
    return figures.save(fig, run.figure_path("accuracy_by_length"))
