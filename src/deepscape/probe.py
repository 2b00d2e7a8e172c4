"""The linear probe: a linear classifier on frozen features, the cheapest use of a pretrained model.

Multinomial logistic regression is convex, so it needs no learning rate and no epochs: L-BFGS
solves it to the optimum. What remains to choose is how strongly to pull the weights towards 0
(the L2 strength); that is chosen on the validation split, never on test.

`fit_probe` is the whole probe of a transfer lab: features in, the chosen head and its test
accuracy out. Where the features come from (an image backbone, a sentence encoder) is the lab's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

L2_STRENGTHS = (1e-4, 1e-3, 1e-2)


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, *, l2: float, num_classes: int | None = None
) -> nn.Linear:
    """Softmax regression of `y` on `x` by L-BFGS (a convex problem: no LR, no epochs); the loss
    is the mean cross-entropy plus `l2` times the squared weights (not the bias)."""
    head = nn.Linear(x.shape[1], num_classes or int(y.max()) + 1)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = F.cross_entropy(head(x), y) + l2 * head.weight.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    return head


def choose_logistic(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    *,
    strengths: Sequence[float] = L2_STRENGTHS,
    num_classes: int | None = None,
) -> tuple[nn.Linear, float]:
    """The logistic regression whose L2 strength does best on validation: (head, l2). Ties go to
    the first strength in `strengths`."""
    candidates = [
        (fit_logistic(train_x, train_y, l2=l2, num_classes=num_classes), l2) for l2 in strengths
    ]
    return max(candidates, key=lambda c: accuracy(c[0](val_x), val_y))


@dataclass
class Probe:
    head: nn.Linear
    l2: float  # the L2 strength chosen on validation
    test_accuracy: float
    test_loss: float


def fit_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    strengths: Sequence[float] = L2_STRENGTHS,
    num_classes: int | None = None,
) -> Probe:
    """A linear probe on (features, targets) of each split: the logistic regression whose L2
    strength does best on validation, judged once on test."""
    head, l2 = choose_logistic(*train, *validation, strengths=strengths, num_classes=num_classes)
    test_x, test_y = test
    logits = head(test_x).detach()
    return Probe(
        head=head,
        l2=l2,
        test_accuracy=accuracy(logits, test_y),
        test_loss=float(F.cross_entropy(logits, test_y)),
    )


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float((logits.argmax(1) == targets).float().mean())
