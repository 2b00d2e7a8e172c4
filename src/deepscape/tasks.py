"""Tasks: what a batch is and what is learned, so that one training loop carries every lab.

    loss, outputs = task.loss(model, batch)      # the objective, and what the model said
    task.update(metrics, outputs, batch)          # streaming metrics (the registry's names)
    batch = task.augment(batch)                   # the whole (input, target) pair moves together

A classifier, a language model, a segmenter and a denoiser differ only here. `monitor` names the
metric whose validation value picks the best evaluation; which way is better comes from the
metrics registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscape import metrics as registry

if TYPE_CHECKING:
    from deepscape.train import Trainer

Batch = Any  # what a DataLoader yields: usually a tuple of tensors
Augment = Callable[[Batch], Batch]


@dataclass
class Task:
    """The base: a task names its monitored metric and may augment training batches."""

    augment: Augment | None = field(default=None, kw_only=True)
    monitor: str = field(default="loss", kw_only=True)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def metrics(self) -> dict[str, Any]:
        """Fresh streaming metrics for one evaluation, by registry name (the loss is added by the
        trainer: every task has one)."""
        return {}

    def update(self, metrics: dict[str, Any], outputs: Any, batch: Batch) -> None:
        """Feed one evaluation batch to `metrics`."""

    def train_counts(self, outputs: Any, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-batch sums whose mean over the training examples is recorded as `train_<name>`:
        device tensors added up without a sync, cheap enough for every step."""
        return {}

    def size(self, batch: Batch) -> int:
        """Examples in `batch` (what a mean loss is weighted by)."""
        return len(batch[0])


@dataclass
class Classification(Task):
    """(inputs, class indices) → logits "b classes"; cross-entropy, accuracy."""

    num_classes: int
    label_smoothing: float = 0.0
    monitor: str = field(default="accuracy", kw_only=True)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        logits = model(inputs)
        # smoothing regularises training; what evaluation measures is the plain cross-entropy
        smoothing = self.label_smoothing if model.training else 0.0
        return F.cross_entropy(logits.float(), targets, label_smoothing=smoothing), logits

    def metrics(self) -> dict[str, Any]:  # our own logits and targets: no need to validate them
        return {"accuracy": registry.get("accuracy").make(
            num_classes=self.num_classes, validate_args=False)}  # fmt: skip

    def update(self, metrics: dict[str, Any], outputs: torch.Tensor, batch: Batch) -> None:
        metrics["accuracy"].update(outputs.float(), batch[1])

    def train_counts(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"accuracy": (outputs.detach().argmax(1) == batch[1]).sum()}


@dataclass
class LanguageModeling(Task):
    """(tokens "b t", the next tokens "b t") → logits "b t vocab"; a model whose forward is
    nanoGPT's `forward(idx, targets) -> (logits, loss)`; the loss is the mean cross-entropy per
    token, and perplexity its exponential."""

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        idx, targets = batch
        logits, loss = model(idx, targets)
        return loss, logits


def soft_dice_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """1 − the Dice overlap of the predicted class probabilities with the true masks, averaged
    over the classes present in the batch (Milletari et al. 2016). Each class counts the same
    however few its pixels, which is what pixel cross-entropy, dominated by the background,
    lacks. `logits` "b classes h w", `masks` "b h w" of class indices."""
    probabilities = logits.float().softmax(1)
    truth = F.one_hot(masks, logits.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
    overlap = (probabilities * truth).sum((0, 2, 3))
    total = probabilities.sum((0, 2, 3)) + truth.sum((0, 2, 3))
    present = truth.sum((0, 2, 3)) > 0  # a class in no true mask has no overlap to score
    return 1 - (2 * overlap / total.clamp_min(1e-6))[present].mean()


@dataclass
class Segmentation(Task):
    """(images "b c h w", masks "b h w" of class indices) → logits "b classes h w"; pixel
    cross-entropy plus `dice_weight` × soft Dice loss; mean IoU and Dice over the whole split."""

    num_classes: int
    dice_weight: float = 0.0
    monitor: str = field(default="miou", kw_only=True)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, masks = batch
        logits = model(images)
        loss = F.cross_entropy(logits.float(), masks)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, masks)
        return loss, logits

    def metrics(self) -> dict[str, Any]:
        # over the split's pixels at once: a class absent from an image does not count as 0 there
        return {
            "miou": registry.get("miou").make(num_classes=self.num_classes, validate_args=False),
            "dice": registry.get("dice").make(
                num_classes=self.num_classes, input_format="index", aggregation_level="global"
            ),
            "pixel_accuracy": registry.get("pixel_accuracy").make(
                num_classes=self.num_classes, validate_args=False
            ),
        }

    def update(self, metrics: dict[str, Any], outputs: torch.Tensor, batch: Batch) -> None:
        predicted = outputs.argmax(1)
        metrics["miou"].update(predicted, batch[1])
        metrics["dice"].update(predicted, batch[1])
        metrics["pixel_accuracy"].update(predicted, batch[1])

    def train_counts(self, outputs: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        pixels = batch[1][0].numel()  # per image, so that the mean over images is a share
        correct = (outputs.detach().argmax(1) == batch[1]).sum()
        return {"pixel_accuracy": correct / pixels}


@dataclass
class ImageToImage(Task):
    """(inputs, target images "b c h w" in [0, 1]) → images "b c h w": mean squared error (or
    L1); PSNR (the mean over images) and SSIM of `view(outputs)` against `view(targets)`, where
    `view` picks what is measured (the Y channel with a border cropped, as published SR tables
    do). Outputs are clamped to [0, 1] before they are measured, as a saved image would be."""

    objective: str = "mse"  # or "l1"
    view: Callable[[torch.Tensor], torch.Tensor] | None = None
    monitor: str = field(default="psnr_db", kw_only=True)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = batch
        outputs = model(inputs).float()
        if self.objective == "l1":
            return F.l1_loss(outputs, targets), outputs
        return F.mse_loss(outputs, targets), outputs

    def metrics(self) -> dict[str, Any]:
        return {
            "psnr_db": registry.get("psnr_db").make(dim=(1, 2, 3)),  # per image, then the mean
            "ssim": registry.get("ssim").make(),
        }

    def update(self, metrics: dict[str, Any], outputs: torch.Tensor, batch: Batch) -> None:
        view = self.view or (lambda images: images)
        made, truth = view(outputs.clamp(0, 1)), view(batch[1])
        metrics["psnr_db"].update(made, truth)
        metrics["ssim"].update(made, truth)


def inputs_only(transform: Callable[[torch.Tensor], torch.Tensor] | None) -> Augment | None:
    """An augmentation of the inputs of (inputs, targets) batches whose targets do not move with
    them (a class label stays the label of a shifted digit)."""
    if transform is None:
        return None

    def augment(batch: Batch) -> Batch:
        inputs, *rest = batch
        return (transform(inputs), *rest)

    return augment


@dataclass
class Evaluation:
    """A classifier's outputs on a whole split, for the figures that need every prediction (a
    confusion matrix, the most confident mistakes). Small splits only: the trainer's own
    evaluation streams its metrics instead."""

    loss: float
    accuracy: float
    probabilities: torch.Tensor  # "n classes", on the CPU
    targets: torch.Tensor  # "n"

    @property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(1)


def classify(trainer: Trainer, model: nn.Module, split: Any) -> Evaluation:
    """Every class probability of `model` on `split` (the trainer's task: a Classification)."""
    loss_sum, probabilities, targets = 0.0, [], []
    for logits, batch, loss in trainer.predict(model, split):
        loss_sum += float(loss) * len(batch[1])
        probabilities.append(logits.float().softmax(1).cpu())
        targets.append(batch[1].cpu())
    probs, seen = torch.cat(probabilities), torch.cat(targets)
    return Evaluation(
        loss=loss_sum / len(seen),
        accuracy=float((probs.argmax(1) == seen).float().mean()),
        probabilities=probs,
        targets=seen,
    )
