"""The learning-rate range test (L. Smith, 2017): which learning rates does this model train at?

Train from the model's starting weights for a few hundred batches while the learning rate grows
exponentially from tiny to huge, and record the loss at each. The loss first barely moves (LR too
small), then falls fastest (a good LR), then explodes (too large). The suggestion is the LR where
the smoothed loss falls fastest, the usual pick for the peak of a one-cycle schedule.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from deepscape.config import TrainConfig
from deepscape.data import whole_batch
from deepscape.optim import make_optimizer


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed (exponential moving average, bias-corrected)
    suggested: float


def lr_range_test(
    model: nn.Module,
    train: Dataset,
    config: TrainConfig,
    *,
    start: float = 1e-6,
    end: float = 10.0,
    steps: int = 200,
    smoothing: float = 0.9,
) -> RangeTest:
    """Run the test on a copy of `model` (the model itself is left untouched)."""
    model = copy.deepcopy(model).train()
    optimizer = make_optimizer(model, config)
    loader = DataLoader(train, batch_size=config.batch_size, shuffle=True, collate_fn=whole_batch)
    growth = (end / start) ** (1 / (steps - 1))
    lrs, losses, average, best = [], [], 0.0, math.inf
    batches = iter(loader)
    for step in range(steps):
        lr = start * growth**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        try:
            inputs, targets = next(batches)
        except StopIteration:  # small data: go round again
            batches = iter(loader)
            inputs, targets = next(batches)
        loss = F.cross_entropy(model(inputs), targets)
        if not math.isfinite(loss.item()):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        average = smoothing * average + (1 - smoothing) * loss.item()
        smoothed = average / (1 - smoothing ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > 4 * best:  # exploded: the rest says nothing new
            break
    return RangeTest(lrs, losses, suggest(lrs, losses))


def suggest(lrs: list[float], losses: list[float]) -> float:
    """The LR of the steepest fall of the loss against log(LR), before the minimum."""
    lowest = int(np.argmin(losses))
    if lowest < 2:
        return lrs[lowest] / 10
    slope = np.gradient(np.asarray(losses[: lowest + 1]), np.log(lrs[: lowest + 1]))
    return float(lrs[int(np.argmin(slope))])


def figure(test: RangeTest, path: Path, *, title: str = "Learning-rate range test") -> Path:
    import matplotlib.pyplot as plt

    from deepscape.figures import save

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot(test.lrs, test.losses, color="#1f77b4")
    ax.axvline(test.suggested, color="#d62728", ls="--")
    at = test.losses[int(np.argmin(np.abs(np.log(test.lrs) - math.log(test.suggested))))]
    ax.annotate(
        f"suggested lr ≈ {test.suggested:.2g}\n(steepest fall)",
        (test.suggested, at),
        textcoords="offset points",
        xytext=(10, 25),
        color="#d62728",
        arrowprops={"arrowstyle": "->", "color": "#d62728"},
    )
    ax.set(
        xscale="log",
        xlabel="learning rate (growing every batch)",
        ylabel="training loss (smoothed)",
        title=title,
    )
    low, high = min(test.losses), max(test.losses[: max(3, len(test.losses) // 3)])
    ax.set_ylim(low - 0.05 * (high - low), high + 0.3 * (high - low))
    ax.grid(alpha=0.3, which="both")
    return save(fig, path)
