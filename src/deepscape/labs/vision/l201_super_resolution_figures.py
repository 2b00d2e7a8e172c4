"""vision/201/super-resolution, the figures: crops side by side, PSNR over training, the ladder."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepscape import figures
from deepscape.labs.vision.l201_super_resolution_data import Pair, measured
from deepscape.runs import Run


def psnr(made: Tensor, truth: Tensor, scale: int) -> float:
    """PSNR in dB of one image "3 h w" as the tables measure it (Y channel, border cropped)."""
    view = measured(scale)
    error = (view(made[None].clamp(0, 1)) - view(truth[None])).pow(2).mean()
    return float(-10 * torch.log10(error))


def busiest_crop(pair: Pair, upscaled: Tensor, side: int) -> tuple[int, int]:
    """The top-left corner of the `side`-pixel square where bicubic errs most (the detail)."""
    error = (upscaled - pair.high).pow(2).mean(0, keepdim=True)[None]
    side = min(side, *pair.high.shape[-2:])
    mean = F.avg_pool2d(error, side, stride=max(1, side // 4))[0, 0]
    row, col = divmod(int(mean.argmax()), mean.shape[1])
    return row * max(1, side // 4), col * max(1, side // 4)


@torch.no_grad()
def crops(run: Run, model: nn.Module, pairs: list[Pair], *, scale: int, title: str) -> None:
    """For each test image: a crop of bicubic's enlargement, the model's and the truth, with each
    whole image's PSNR in the titles."""
    from deepscape.labs.vision.l201_super_resolution_models import bicubic

    model.eval()
    fig, axes = plt.subplots(len(pairs), 3, figsize=(9, 3.6 * len(pairs) + 0.6), squeeze=False)
    for row, pair in enumerate(pairs):
        device = next(iter(model.parameters()), pair.low).device
        made = model(pair.low[None].to(device)).float().cpu()[0].clamp(0, 1)
        upscaled = bicubic(pair.low[None], scale)[0].clamp(0, 1)
        side = 96
        y, x = busiest_crop(pair, upscaled, side)
        panels = [
            (upscaled, f"bicubic: {psnr(upscaled, pair.high, scale):.2f} dB"),
            (made, f"model: {psnr(made, pair.high, scale):.2f} dB"),
            (pair.high, f"truth ({pair.name})"),
        ]
        for ax, (image, label) in zip(axes[row], panels, strict=True):
            ax.imshow(image[:, y : y + side, x : x + side].permute(1, 2, 0).numpy())
            ax.set_title(label, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{title}\n(PSNR of the whole image, Y channel; the crop where bicubic errs most)")
    fig.tight_layout(rect=(0, 0, 1, 0.95), h_pad=1.5)  # room for the titles above the panels
    figures.save(fig, run.figure_path("crops"), tight=False)


def psnr_curve(run: Run, bicubic_psnr: float, *, title: str) -> None:
    """Validation PSNR at every evaluation, against bicubic's on the same patches."""
    evaluations = run.evaluations()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([e["step"] for e in evaluations], [e["val_psnr_db"] for e in evaluations], "o-",
            label="model")  # fmt: skip
    ax.axhline(bicubic_psnr, color="grey", linestyle="--", label=f"bicubic ({bicubic_psnr:.2f} dB)")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("validation PSNR, Y channel (dB)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    figures.save(fig, run.figure_path("psnr_curve"))


def ladder(run: Run, rungs: dict[str, Run], *, title: str) -> None:
    """Left: each rung's validation PSNR against its training time. Right: the test PSNR of
    every rung and of bicubic, on the same images."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    measured_by = next(iter(rungs.values())).summary["metrics"]  # bicubic: the same in every rung
    tests: dict[str, Any] = {"bicubic": measured_by["bicubic_psnr_db"]}
    left.axhline(measured_by["bicubic_val_psnr_db"], color="grey", linestyle="--", label="bicubic")
    for name, rung in rungs.items():
        evaluations = rung.evaluations()
        seconds = [e["seconds"] / 60 for e in evaluations]
        left.plot(seconds, [e["val_psnr_db"] for e in evaluations], "o-", label=name)
        tests[name] = rung.summary["metrics"]["test_psnr_db"]
    left.set_xlabel("training time (minutes)")
    left.set_ylabel("validation PSNR, Y channel (dB)")
    left.legend()
    left.grid(alpha=0.3)
    bars = right.bar(list(tests), list(tests.values()), color=["grey", *["C0"] * len(rungs)])
    right.bar_label(bars, labels=[f"{v:.2f}" for v in tests.values()])
    low = min(tests.values())
    right.set_ylim(low - 1, max(tests.values()) + 0.8)
    right.set_ylabel("test PSNR, Y channel (dB)")
    fig.suptitle(title)
    figures.save(fig, run.figure_path("ladder"))
