"""Looking inside a sentence CNN: which phrases make each filter fire.

A filter of width w responds to every w consecutive words; the phrases of the training sentences
where it responds most are what it detects. The filters worth reading are the ones the classifier
leans on: for each class, those whose weight toward that class stands out most from their weight
toward the other classes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from deepscape import figures
from deepscape.data import Splits
from deepscape.models.text import PAD_ID, SentenceCNN
from deepscape.runs import Run

CANDIDATES = 64  # strongest windows kept per filter before repeated phrases are merged


def telling_filters(
    model: SentenceCNN, classes: list[str], per_class: int
) -> list[tuple[str, int]]:
    """(class, filter index into the pooled features) of the filters that speak most for each
    class: weight toward the class minus the mean weight toward the others."""
    weight = model.classifier.weight.detach().float()  # "classes features"
    n = len(classes)
    others = (weight.sum(0, keepdim=True) - weight) / max(1, n - 1)
    lean = weight - others if n > 1 else weight
    picked: list[tuple[str, int]] = []
    for c, name in enumerate(classes):
        picked += [(name, int(j)) for j in lean[c].topk(per_class).indices]
    return picked


@torch.inference_mode()
def top_phrases(
    model: SentenceCNN, data: Splits, *, count: int = 5, per_class: int | None = None
) -> list[dict[str, Any]]:
    """For the telling filters of each class: the `count` distinct training phrases that make it
    fire most, with their activations."""
    model = model.float().eval()
    per_class = per_class or (3 if len(data.classes) <= 2 else 2)
    picked = telling_filters(model, data.classes, per_class)
    filters = model.convs[0].out_channels
    inputs = data.train.inputs
    # a running top list per picked filter: (activations "k", sentence index "k", start "k")
    best: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for offset in range(0, len(inputs), 512):
        batch, _ = data.train.__getitems__(range(offset, min(offset + 512, len(inputs))))
        maps = model.filter_maps(batch)  # per width: "b filters windows"
        for _, j in picked:
            response = maps[j // filters][:, j % filters, :]  # "b windows"
            values, flat = response.flatten().topk(min(CANDIDATES, response.numel()))
            rows, starts = flat // response.shape[1] + offset, flat % response.shape[1]
            if j in best:
                values = torch.cat([best[j][0], values])
                rows, starts = torch.cat([best[j][1], rows]), torch.cat([best[j][2], starts])
                keep = values.topk(min(CANDIDATES, len(values))).indices
                values, rows, starts = values[keep], rows[keep], starts[keep]
            best[j] = (values, rows, starts)

    found = []
    for name, j in picked:
        width = model.widths[j // filters]
        values, rows, starts = best[j]
        phrases: dict[str, float] = {}
        candidates = zip(values.tolist(), rows.tolist(), starts.tolist(), strict=True)
        for value, row, start in sorted(candidates, reverse=True):
            ids = [i for i in inputs[row, start : start + width].tolist() if i != PAD_ID]
            phrase = " ".join(data.tokenizer.id_to_token(i) for i in ids)
            if phrase not in phrases and value > 0:
                phrases[phrase] = round(value, 3)
            if len(phrases) == count:
                break
        found.append({"class": name, "filter": f"width {width} #{j % filters}", "phrases": phrases})
    return found


def top_phrases_figure(run: Run, found: list[dict[str, Any]], *, title: str) -> Path:
    """One panel per telling filter, a row per class: its top phrases and their activations."""
    classes = list(dict.fromkeys(f["class"] for f in found))
    columns = max(sum(f["class"] == c for f in found) for c in classes)
    fig, axes = plt.subplots(
        len(classes), columns, figsize=(3.6 * columns, 0.35 + 1.7 * len(classes)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for row, name in enumerate(classes):
        for col, item in enumerate(f for f in found if f["class"] == name):
            ax = axes[row, col]
            lines = [
                f"{value:5.2f}  {textwrap.shorten(phrase, 34)}"
                for phrase, value in item["phrases"].items()
            ] or ["(never fires)"]
            ax.set_title(f"→ {name} · {item['filter']}", fontsize=9, loc="left")
            ax.text(0, 0.92, "\n".join(lines), va="top", family="monospace", fontsize=8.5)
    fig.suptitle(title, fontsize=10)
    return figures.save(fig, run.figure_path("top_phrases"))
