"""The figures of `deepscape inspect` and vision/101/look-inside, each a PNG readable on its own:
a title that says what is shown, true and predicted labels on every image, a colour scale."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from deepscape.figures import WRONG, save
from deepscape.inside import (
    METHOD_TITLES,
    METHODS,
    InspectError,
    Trained,
    confident_mistakes,
    conv_layers,
    feature_maps,
    first_layer_filters,
    gradient_maps,
    map_layers,
)
from deepscape.runs import Run

HEAT = "inferno"  # importance: dark = ignored, bright = matters


def show_image(ax: plt.Axes, image: torch.Tensor, title: str = "", **title_style: object) -> None:
    """A "c h w" image in [0, 1]: greyscale with dark ink, or colour."""
    pixels = image.permute(1, 2, 0).numpy()
    if pixels.shape[-1] == 1:
        ax.imshow(pixels[..., 0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(pixels.clip(0, 1), interpolation="nearest")
    ax.set_title(title, fontsize=9, **title_style)
    ax.set_xticks([])
    ax.set_yticks([])


def label(classes: list[str], target: int, probabilities: torch.Tensor) -> tuple[str, dict]:
    """'true 3 · predicted 8 (62 %)', in red when wrong."""
    predicted = int(probabilities.argmax())
    text = f"true {classes[target]} · predicted {classes[predicted]} ({probabilities.max():.0%})"
    return text, {"color": WRONG, "fontweight": "bold"} if predicted != target else {}


def filters_figure(filters: torch.Tensor, path: Path, *, model_name: str) -> Path:
    """First-layer filters, "n c h w": one diverging colour scale shared by all."""
    n = min(len(filters), 64)
    cols = min(n, 8 if filters.shape[-1] <= 8 else 5)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 1.2, 1.3 * rows + 1), squeeze=False)
    limit = float(filters[:n].abs().max())
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        kernel = filters[i]
        if kernel.shape[0] == 3:  # colour kernels: shown as colours, 0.5 grey = weight 0
            ax.imshow((kernel.permute(1, 2, 0) / (2 * limit) + 0.5).clip(0, 1).numpy())
        else:
            image = ax.imshow(kernel.mean(0).numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"#{i}", fontsize=8)
    kind = f"{filters.shape[-2]}×{filters.shape[-1]}"
    fig.suptitle(
        f"First-layer filters of the {model_name}: {n} of {len(filters)}, {kind} weights each\n"
        "red: the unit responds to ink there · blue: ink there suppresses it"
    )
    if filters.shape[1] != 3:
        fig.colorbar(image, ax=axes, fraction=0.03, label="weight")
    return save(fig, path, tight=False)


def feature_maps_figure(
    image: torch.Tensor,
    title: str,
    maps: dict[str, torch.Tensor],
    path: Path,
    *,
    per_layer: int = 10,
) -> Path:
    """The input, then a row per layer with the first `per_layer` channels of its output."""
    rows, cols = len(maps), per_layer + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.35 * rows + 1.1), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    show_image(axes[0, 0], image, "the input")
    axes[0, 0].set_axis_on()
    for row, (name, activation) in enumerate(maps.items()):
        for col in range(min(per_layer, len(activation))):
            ax = axes[row, col + 1]
            ax.imshow(activation[col].numpy(), cmap="viridis", interpolation="nearest")
            ax.set_title(
                f"{name}\n{len(activation)} maps, {activation.shape[-2]}×{activation.shape[-1]}"
                if col == 0
                else f"#{col}",
                fontsize=8,
                loc="left" if col == 0 else "center",
            )
    fig.suptitle(
        f"Feature maps: what each layer outputs for one image ({title})\n"
        f"the first {per_layer} channels of each; each on its own scale: yellow = strong, "
        "dark blue = weak"
    )
    fig.subplots_adjust(
        left=0.02,
        right=0.98,
        bottom=0.03,
        top=1 - 1.0 / (1.35 * rows + 1.1),
        hspace=0.6,
        wspace=0.1,
    )
    return save(fig, path, tight=False)


def gradient_maps_figure(
    images: torch.Tensor,
    targets: torch.Tensor,
    probabilities: torch.Tensor,
    maps: dict[str, torch.Tensor],
    classes: list[str],
    path: Path,
    *,
    title: str,
) -> Path:
    """Rows of images; columns: the image, then each method's map of the predicted class's
    score over the image. Each map scaled to its own maximum (shared colour bar)."""
    rows, cols = len(images), len(maps) + 1
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.1 * cols + 0.8, 2.15 * rows + 1.0), squeeze=False
    )
    for row in range(rows):
        text, style = label(classes, int(targets[row]), probabilities[row])
        show_image(axes[row, 0], images[row], text, **style)
        for col, (method, method_maps) in enumerate(maps.items(), start=1):
            ax = axes[row, col]
            heat = method_maps[row] / method_maps[row].max().clamp_min(1e-12)
            ax.imshow(images[row].mean(0).numpy(), cmap="gray_r", vmin=0, vmax=1)
            shown = ax.imshow(heat.numpy(), cmap=HEAT, vmin=0, vmax=1, alpha=0.75)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(METHOD_TITLES[method], fontsize=10, fontweight="bold")
    fig.suptitle(title + "\nbright: pixels that raise the predicted class's score most")
    fig.colorbar(shown, ax=axes, fraction=0.02, label="importance (share of the map's maximum)")
    return save(fig, path, tight=False)


def sanity_figure(
    image: torch.Tensor,
    trained: dict[str, torch.Tensor],
    randomized: dict[str, torch.Tensor],
    similarity: dict[str, dict[str, float]],
    path: Path,
) -> Path:
    """Top: one image's maps from the trained and from the randomised model, per method.
    Bottom: mean rank correlation with the randomised model against the control (a second
    trained model): a trustworthy method sits low on the first and high on the second."""
    methods = list(trained)
    fig = plt.figure(figsize=(2.2 * len(methods) + 2.2, 8.2))
    grid = fig.add_gridspec(3, len(methods) + 1, height_ratios=[1, 1, 1.5], hspace=0.5)
    show_image(fig.add_subplot(grid[0, 0]), image, "the input")
    for col, method in enumerate(methods, start=1):
        for row, (maps, who) in enumerate(((trained, "trained"), (randomized, "random weights"))):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(maps[method].numpy(), cmap=HEAT)
            ax.set_title(f"{METHOD_TITLES[method]}\n{who}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    ax = fig.add_subplot(grid[2, :])
    x = np.arange(len(methods))
    random_rho = [similarity[m]["random"] for m in methods]
    control_rho = [similarity[m]["retrained"] for m in methods]
    bars = ax.bar(
        x - 0.2, random_rho, 0.4, color="#d62728", label="vs the same model, random weights"
    )
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    bars = ax.bar(
        x + 0.2, control_rho, 0.4, color="#2ca02c", label="vs a second trained model (seed 1)"
    )
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.axhline(0.5, color="black", ls="--", lw=1)
    ax.set_xticks(x, [METHOD_TITLES[m] for m in methods])
    ax.set(ylim=(min(0, *random_rho) - 0.05, 1.1), ylabel="mean Spearman ρ over test images")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle(
        "Sanity check (Adebayo et al. 2018): do the maps depend on what the model learnt?\n"
        "red bar high = the map barely changes when the weights are random: it shows the image, "
        "not the model"
    )
    return save(fig, path, tight=False)


def draw_inside(
    trained: Trained,
    into: Run,
    *,
    layers: list[str] | None = None,
    index: int = 0,
    count: int = 6,
) -> dict[str, Path]:
    """The full set for one trained model, as PNGs in `into`'s figures folder: its filters, the
    feature maps of `layers` (default: the first and last convolution) for test image `index`,
    every method's gradient maps for the first `count` test images, and for its most confident
    mistakes (topped up with its least confident right answers when it makes few)."""
    model, data, classes = trained.model, trained.data, trained.classes
    test = data.test
    if not 0 <= index < len(test):
        raise InspectError(f"--index {index}: the test split has images 0 … {len(test) - 1}")
    probabilities = trained.probabilities(test.inputs)
    model_name = f"{trained.run.config.get('model', 'model')} of run {trained.run.id}"
    drawn = {
        "filters": filters_figure(
            first_layer_filters(model, trained.input_shape),
            into.figure_path("inside_filters"),
            model_name=model_name,
        )
    }
    convs, blocks = list(conv_layers(model)), map_layers(model)
    chosen = layers or ([blocks[0], blocks[-1]] if len(blocks) > 1 else blocks)
    if chosen:
        image = test.inputs[index]
        maps = {name: feature_maps(model, image, name) for name in chosen}
        text, _ = label(classes, int(test.targets[index]), probabilities[index])
        drawn["feature_maps"] = feature_maps_figure(
            image, f"test image {index}: {text}", maps, into.figure_path("inside_feature_maps")
        )
    methods = [m for m in METHODS if m != "gradcam" or convs]
    for name, chosen_images, what in (
        ("gradient_maps", torch.arange(min(count, len(test))), "the first test images"),
        ("mistakes", hardest(probabilities, test.targets, count), "the most confident mistakes"),
    ):
        images, targets = test.inputs[chosen_images], test.targets[chosen_images]
        predicted = probabilities[chosen_images].argmax(1)
        maps = {m: gradient_maps(model, images, predicted, m) for m in methods}
        wrong = int((predicted != targets).sum())
        title = f"Gradient maps of {what} · {model_name}"
        if name == "mistakes" and wrong < len(chosen_images):
            title += (
                f"\n{wrong} mistake{'s' * (wrong != 1)} on the test split; then the closest calls"
            )
        drawn[name] = gradient_maps_figure(
            images,
            targets,
            probabilities[chosen_images],
            maps,
            classes,
            into.figure_path(f"inside_{name}"),
            title=title,
        )
    return drawn


def hardest(probabilities: torch.Tensor, targets: torch.Tensor, count: int) -> torch.Tensor:
    """Up to `count` test indices: the most confident mistakes, then the least confident hits."""
    wrong = confident_mistakes(probabilities, targets)[:count]
    confidence, predicted = probabilities.max(1)
    right = (predicted == targets).nonzero().flatten()
    unsure = right[confidence[right].argsort()][: count - len(wrong)]
    return torch.cat([wrong, unsure])
