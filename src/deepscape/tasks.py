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
