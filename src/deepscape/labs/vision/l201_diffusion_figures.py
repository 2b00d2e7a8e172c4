"""vision/201/diffusion's figures: denoising trajectories, samples by class at each guidance
scale, and quality against guidance and sampler steps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from deepscape import figures
from deepscape.runs import Run

if TYPE_CHECKING:
    from deepscape.labs.vision.l201_diffusion import Samples


def mosaic(images: torch.Tensor, *, gap: int = 2) -> np.ndarray:
    """ "rows cols 1 h w" in [0, 1] → one grey picture, a gap of background between images."""
    rows, cols, _, h, w = images.shape
    canvas = np.zeros((rows * (h + gap) - gap, cols * (w + gap) - gap), dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            canvas[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[
                r, c, 0
            ].numpy()
    return canvas


def trajectories(run: Run, shown: list[Samples], names: list[str], *, rows: int = 4) -> Path:
    """x_t along the chain for the first few images of each sampler: pure noise on the left, the
    digit on the right."""
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 1.15 * rows * len(shown) + 0.6),
                             squeeze=False)  # fmt: skip
    for ax, made, name in zip(axes[:, 0], shown, names, strict=True):
        steps = made.trajectory[:, :rows]  # "moments rows 1 h w"
        ax.imshow(1 - mosaic(steps.transpose(0, 1)), cmap="gray", vmin=0, vmax=1)
        side = steps.shape[-1] + 2
        ax.set_xticks([side * i + side / 2 - 1 for i in range(len(made.moments))],
                      ["noise", *(f"t = {t}" for t in made.moments[1:])], fontsize=8)  # fmt: skip
        asked = [f"class {int(c)}" for c in made.labels[: steps.shape[1]]]
        ax.set_yticks([side * i + side / 2 - 1 for i in range(len(asked))], asked, fontsize=8)
        ax.set_title(f"{name}: noise to digit", fontsize=10)
        ax.tick_params(length=0)
    fig.suptitle("Denoising trajectories (x_t; dark ink on light, as written)", fontsize=10)
    return figures.save(fig, run.figure_path("trajectories"))


def samples_by_class(
    run: Run, cells: dict[float, Samples], accuracy: dict[float, float], classes: list[str],
    sampler: str, *, per_class: int = 8,
) -> Path:  # fmt: skip
    """A row per class, one panel per guidance scale; the same starting noise in every panel."""
    fig, axes = plt.subplots(1, len(cells), figsize=(2.6 * len(cells) + 0.6, 3.6), squeeze=False)
    for ax, (w, made) in zip(axes[0], cells.items(), strict=True):
        by_class = [made.images[made.labels == c][:per_class] for c in range(len(classes))]
        shown = min(per_class, *(len(images) for images in by_class))
        grid = torch.stack([images[:shown] for images in by_class])
        ax.imshow(1 - mosaic(grid), cmap="gray", vmin=0, vmax=1)
        side = grid.shape[-1] + 2
        ax.set_yticks([side * i + side / 2 - 1 for i in range(len(classes))], classes, fontsize=8)
        ax.set_xticks([])
        ax.tick_params(length=0)
        ax.set_title(f"w = {w:g}: {accuracy[w]:.0%} judged right", fontsize=9)
    fig.suptitle(f"Samples by class ({sampler}), guidance growing to the right", fontsize=10)
    return figures.save(fig, run.figure_path("samples_by_class"))


def quality(
    run: Run, table: list[dict[str, Any]], floors: dict[str, float], shown_guidance: float
) -> Path:
    """Accuracy and FID against the guidance scale, a line per sampler; and at `shown_guidance`,
    against the sampler's steps, with its seconds per image."""
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.9))
    samplers = list(dict.fromkeys(row["sampler"] for row in table))
    for sampler in samplers:
        rows = sorted((r for r in table if r["sampler"] == sampler), key=lambda r: r["guidance"])
        ws = [r["guidance"] for r in rows]
        style = {"marker": "o" if len(rows) > 1 else "*", "markersize": 6 if len(rows) > 1 else 12}
        label = f"{sampler} ({rows[0]['images']} images)"
        left.plot(ws, [r["accuracy"] for r in rows], label=label, **style)
        middle.plot(ws, [r["fid"] for r in rows], label=label, **style)
    left.set_ylabel("share judged the class asked for")
    left.set_ylim(min(0.9, left.get_ylim()[0]), 1.005)
    left.axhline(0.95, color="grey", lw=0.8, ls=":")
    middle.axhline(floors["same_size"], color="black", lw=0.8, ls="--",
                   label="real digits, as many as the samples")  # fmt: skip
    middle.axhline(floors["halves"], color="grey", lw=0.8, ls=":",
                   label="real: the test split's two halves")  # fmt: skip
    middle.set_ylabel("FID on the judge's features (lower: closer)")
    middle.set_yscale("log")
    for ax in (left, middle):
        ax.set_xlabel("guidance scale w")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    at = sorted(
        ((int(r["sampler"].split("-")[1]), r) for r in table if r["guidance"] == shown_guidance),
        key=lambda pair: pair[0],
    )
    right.plot([s for s, _ in at], [r["accuracy"] for _, r in at], "o-")
    for steps, r in at:
        right.annotate(f"{r['sampler']}\n{r['seconds_per_image'] * 1000:.0f} ms/image",
                       (steps, r["accuracy"]), fontsize=7, textcoords="offset points",
                       xytext=(4, -18))  # fmt: skip
    right.set_xscale("log")
    right.set_xticks([s for s, _ in at], [str(s) for s, _ in at])
    right.minorticks_off()
    right.set_xlabel("sampler steps")
    right.set_ylabel("share judged the class asked for")
    right.set_title(f"at w = {shown_guidance:g}", fontsize=9)
    right.grid(alpha=0.3)
    fig.suptitle("Sample quality against guidance and sampler steps", fontsize=10)
    return figures.save(fig, run.figure_path("quality"))
