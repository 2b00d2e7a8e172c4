"""vision/201/image-to-text's figures: test pictures with their captions, where each word looked
(cross-attention over the encoder's grid), and every captioner's scores side by side."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from deepscape import figures
from deepscape.runs import Run


def as_rgb(pixels: torch.Tensor) -> np.ndarray:
    """ "c h w" in [0, 1] (1 or 3 channels) → "h w 3" for imshow."""
    return pixels.expand(3, -1, -1).permute(1, 2, 0).clamp(0, 1).numpy()


def captions(
    run: Run, pixels: torch.Tensor, references: list[list[str]], written: dict[str, list[str]]
) -> Path:
    """Each test picture above what each captioner wrote (bold: the first) and two references."""
    n = len(pixels)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 5.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(as_rgb(pixels[i]))
        lines = [f"{name}: {said[i]}" for name, said in written.items()]
        lines += [f"ref: {r}" for r in references[i][:2]]
        text = "\n".join(textwrap.fill(line, 46) for line in lines)
        ax.text(0, -0.03, text, transform=ax.transAxes, va="top", fontsize=7.5, wrap=True)
        ax.set_title(textwrap.fill(written[next(iter(written))][i], 40), fontsize=9,
                     fontweight="bold")  # fmt: skip
    fig.suptitle("Test pictures: generated captions, and references they are scored against",
                 fontsize=10)  # fmt: skip
    # under the last row, an inch for its captions: tight_layout sees only the axes
    fig.tight_layout(rect=(0, 1.0 / (5.0 * rows), 1, 0.97), h_pad=6)
    return figures.save(fig, run.figure_path("captions"), tight=False)


def attention_figure(pixels: torch.Tensor, maps: torch.Tensor, words: list[str]) -> plt.Figure:
    """One panel per generated word: the picture dimmed where the last layer's cross-attention
    (averaged over heads) did not look as that word was chosen. maps "layer head t cells"."""
    side = int(maps.shape[-1] ** 0.5)
    weights = maps[-1].mean(dim=0)  # "t cells": the last layer decides the word
    cols = min(len(words), 6)
    rows = -(-len(words) // cols)
    # constrained layout keeps each row's word titles clear of the pictures above them
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.3 * rows + 0.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    picture = as_rgb(pixels)
    for t, (ax, word) in enumerate(zip(axes.flat, words, strict=False)):
        heat = weights[t].reshape(1, 1, side, side)
        heat = F.interpolate(heat, size=picture.shape[:2], mode="bilinear")[0, 0].numpy()
        heat = heat / max(heat.max(), 1e-8)
        ax.imshow(picture * (0.25 + 0.75 * heat[..., None]))
        ax.set_title(word, fontsize=10)
    fig.suptitle(f"Where each word looked ({side}×{side} cells, last layer, mean of heads)",
                 fontsize=10)  # fmt: skip
    return fig


def attention_per_word(run: Run, pixels: torch.Tensor, maps: torch.Tensor, words: list[str], *,
                       name: str) -> Path:  # fmt: skip
    return figures.save(attention_figure(pixels, maps, words), run.figure_path(name), tight=False)


def attention_picture(pixels: torch.Tensor, maps: torch.Tensor, words: list[str]) -> Image.Image:
    """The same figure as a picture, for the serve page."""
    buffer = io.BytesIO()
    fig = attention_figure(pixels, maps, words)
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def scores_chart(run: Run, scores: dict[str, dict[str, float]], dataset: str) -> Path:
    """Every captioner's BLEU-1…4, METEOR, ROUGE-L and CIDEr (and grounding) on the same test."""
    names = list(scores)
    metrics = [m for m in scores[names[0]] if all(m in s for s in scores.values())]
    fig, ax = plt.subplots(figsize=(1.0 * len(metrics) * len(names) / 2 + 3, 3.6))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        values = [scores[name][m] for m in metrics]
        bars = ax.bar(np.arange(len(metrics)) + k * width, values, width, label=name)
        ax.bar_label(bars, [f"{v:.2f}" for v in values], fontsize=6)
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, metrics, fontsize=8)
    ax.set_ylabel("score (higher is better)")
    ax.set_title(f"Captioners on the same test pictures of {dataset}", fontsize=10)
    ax.legend(fontsize=8)
    return figures.save(fig, run.figure_path("scores"))
