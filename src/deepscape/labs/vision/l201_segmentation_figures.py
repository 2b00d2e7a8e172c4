"""vision/201/segmentation's figures: the worst test images first, and IoU per class."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from deepscape import figures
from deepscape.figures import WRONG
from deepscape.runs import Run


def class_colours(num_classes: int) -> ListedColormap:
    return ListedColormap(colormaps["tab10"].colors[:num_classes])


def picture(image: torch.Tensor) -> np.ndarray:
    """ "c h w" in [0, 1] → what imshow draws (grey images as grey, light is light)."""
    pixels = image.permute(1, 2, 0).numpy().clip(0, 1)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def error_overlay(image: torch.Tensor, wrong: torch.Tensor) -> np.ndarray:
    """The image in grey with every wrongly labelled pixel painted red."""
    grey = image.mean(0).numpy().clip(0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2) * 0.7
    rgb[wrong.numpy()] = (0.85, 0.15, 0.16)
    return rgb


def worst_first(
    run: Run,
    images: torch.Tensor,
    truth: torch.Tensor,
    predicted: torch.Tensor,
    iou: torch.Tensor,
    classes: list[str],
    *,
    count: int = 6,
) -> Path:
    """Image / true mask / predicted mask / errors, a row per test image, the lowest IoU first."""
    order = iou.argsort()[:count].tolist()
    colours = class_colours(len(classes))
    fig, axes = plt.subplots(len(order), 4, figsize=(9, 2.3 * len(order) + 0.9), squeeze=False)
    for row, i in enumerate(order):
        wrong = predicted[i] != truth[i]
        panels = [
            (picture(images[i]), {"cmap": "gray", "vmin": 0, "vmax": 1}, f"test image {i}"),
            (truth[i].numpy(), {"cmap": colours, "vmin": 0, "vmax": len(classes) - 1}, "true mask"),
            (predicted[i].numpy(), {"cmap": colours, "vmin": 0, "vmax": len(classes) - 1},
             f"predicted (IoU {iou[i]:.2f})"),
            (error_overlay(images[i], wrong), {}, f"errors: {wrong.float().mean():.1%} of pixels"),
        ]  # fmt: skip
        for ax, (pixels, style, title) in zip(axes[row], panels, strict=True):
            ax.imshow(pixels, interpolation="nearest", **style)
            ax.set_title(title, fontsize=8, color=WRONG if "errors" in title else "black")
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(color=colours(c), label=name) for c, name in enumerate(classes)]
    fig.legend(handles=handles, loc="lower center", ncol=len(classes), fontsize=8, frameon=False)
    fig.suptitle("The worst test images first: mean IoU over the classes each image holds",
                 fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return figures.save(fig, run.figure_path("worst_first"), tight=False)


def iou_per_class(
    run: Run, iou: dict[str, float], classes: list[str], baseline: dict[str, float] | None
) -> Path:
    """One bar per class (the model's test IoU), the classical baseline's beside it where it
    makes one (object against background)."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(iou) + 2), 3.6))
    positions = np.arange(len(iou))
    width = 0.38 if baseline else 0.6
    bars = ax.bar(positions, list(iou.values()), width, label="U-Net",
                  color=[class_colours(len(classes))(classes.index(c)) if c in classes else "grey"
                         for c in iou])  # fmt: skip
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    if baseline:
        shown = [baseline.get(name, np.nan) for name in iou]
        others = ax.bar(positions + width, shown, width, label="Otsu + morphology",
                        color="lightgrey", edgecolor="grey")  # fmt: skip
        ax.bar_label(others, fmt="%.2f", fontsize=8)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2,
                  frameon=False)  # fmt: skip
    ax.set_xticks(positions + (width / 2 if baseline else 0), list(iou), fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("IoU on the test split")
    ax.set_title("Intersection over union per class", fontsize=10)
    return figures.save(fig, run.figure_path("iou_per_class"))
