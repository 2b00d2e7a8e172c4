"""vision/201/unsolvable's attacks, written out: FGSM and PGD against any model that takes pixels
in [0, 1] (tests check both against torchattacks, step for step).

FGSM (Goodfellow et al. 2015) takes one step of size ε in the direction that raises the loss
fastest when every pixel may move by at most ε: the sign of the gradient. PGD (Madry et al. 2018)
takes `steps` smaller steps of size α, each followed by a projection back into the ε-ball around
the image (and into [0, 1]): the strongest attack of this family, and the one defences are judged
by. Neither changes the model: only the input moves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepscape.data import TensorSplit


@contextmanager
def pixels_only(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode with its weights frozen while it is attacked: the gradient is
    wanted for the pixels alone, and skipping the weights' saves a third of each backward pass."""
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)


def loss_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """∇ₓ cross-entropy(f(x), y): how each pixel moves the loss."""
    images = images.detach().requires_grad_(True)
    loss = F.cross_entropy(model(images).float(), labels)
    (gradient,) = torch.autograd.grad(loss, images)
    return gradient


def fgsm(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """x' = clip(x + ε · sign(∇ₓ loss), 0, 1): one step up the loss, every pixel moved by ε."""
    with pixels_only(model):
        step = epsilon * loss_gradient(model, images, labels).sign()
    return (images + step).clamp(0, 1).detach()


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    *,
    steps: int = 10,
    step_size: float | None = None,
    targeted: bool = False,
) -> torch.Tensor:
    """`steps` steps of size α (default 2.5 ε / steps, Madry et al.'s), each projected back into
    the ε-ball around `images` and into [0, 1]. `targeted`: `labels` are the classes to reach,
    and each step goes down their loss instead of up the true one."""
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    direction = -1.0 if targeted else 1.0
    adversarial = images.clone().detach()
    with pixels_only(model):
        for _ in range(steps):
            gradient = loss_gradient(model, adversarial, labels)
            adversarial = adversarial + direction * alpha * gradient.sign()
            moved = (adversarial - images).clamp(-epsilon, epsilon)
            adversarial = (images + moved).clamp(0, 1).detach()
    return adversarial


ATTACKS = ("fgsm", "pgd")


def attack(
    name: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epsilon: float,
    *, steps: int,
) -> torch.Tensor:  # fmt: skip
    if epsilon == 0:
        return images
    if name == "fgsm":
        return fgsm(model, images, labels, epsilon)
    return pgd(model, images, labels, epsilon, steps=steps)


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """ "n classes" probabilities (the model in eval mode)."""
    model.eval()
    return model(images).float().softmax(1)


@dataclass
class Curve:
    """Accuracy against ε for each attack, and an example attacked at each ε."""

    epsilons: list[float]
    accuracy: dict[str, list[float]]  # attack → accuracy at each ε
    # the first test image the model gets right, as each ε of PGD leaves it: ("c h w",
    # predicted class, its probability)
    examples: list[tuple[torch.Tensor, str, float]]
    example_class: str  # that image's true class


def accuracy_curve(
    model: nn.Module, split: TensorSplit, epsilons: list[float], *, steps: int, classes: list[str],
    batch: int = 250,
) -> Curve:  # fmt: skip
    """The share of `split` still classified right after each attack at each ε."""
    batches = list(zip(split.inputs.split(batch), split.targets.split(batch), strict=True))
    first_images, first_labels = batches[0]
    right_at_first = predict(model, first_images).argmax(1) == first_labels
    shown = int(right_at_first.float().argmax())  # 0 when it gets none right
    accuracy: dict[str, list[float]] = {name: [] for name in ATTACKS}
    examples = []
    for epsilon in epsilons:
        for name in ATTACKS:
            right = 0
            for i, (images, labels) in enumerate(batches):
                attacked = attack(name, model, images, labels, epsilon, steps=steps)
                probabilities = predict(model, attacked)
                right += int((probabilities.argmax(1) == labels).sum())
                if i == 0:
                    example = (attacked[shown], classes[int(probabilities[shown].argmax())],
                               float(probabilities[shown].max()))  # fmt: skip
            accuracy[name].append(right / len(split))
        examples.append(example)  # the last attack's: PGD
    return Curve(list(epsilons), accuracy, examples, classes[int(first_labels[shown])])


@dataclass
class PhotoCurve:
    """An ImageNet model attacked on photos that have no single true label: each is attacked
    away from the model's own clean answer, and scored as named right (an expected class at
    top-1) or not."""

    epsilons: list[float]
    named_right: dict[str, list[float]]  # attack → share of photos named right at each ε
    changed: dict[str, list[float]]  # attack → share whose top-1 moved at each ε
    target: str  # the class the targeted PGD aims every photo at, at the largest ε
    target_reached: float  # share of photos whose top-1 became `target`
    # "clean", "pgd" (untargeted, largest ε), "targeted": each "n 3 s s" with its top-1 names
    # and probabilities, for the figure
    shown: dict[str, tuple[torch.Tensor, list[str], list[float]]]


def photo_curve(
    model: nn.Module,
    images: torch.Tensor,
    expected: list[tuple[str, ...]],
    epsilons: list[float],
    *,
    steps: int,
    target: int,
    names: list[str],
) -> PhotoCurve:
    clean = predict(model, images)
    answers = clean.argmax(1)

    def scored(probabilities: torch.Tensor) -> tuple[float, float]:
        top = probabilities.argmax(1)
        right = [names[int(t)] in wanted for t, wanted in zip(top, expected, strict=True)]
        return sum(right) / len(right), float((top != answers).float().mean())

    named_right: dict[str, list[float]] = {name: [] for name in ATTACKS}
    changed: dict[str, list[float]] = {name: [] for name in ATTACKS}
    for epsilon in epsilons:  # ascending: what is left in `attacked` is the largest ε's
        for name in ATTACKS:
            attacked = attack(name, model, images, answers, epsilon, steps=steps)
            right, moved = scored(predict(model, attacked))
            named_right[name].append(right)
            changed[name].append(moved)
    aimed = torch.full_like(answers, target)
    pictures = {
        "clean": images,
        "pgd": attacked,
        "targeted": pgd(model, images, aimed, epsilons[-1], steps=steps, targeted=True),
    }
    shown = {}
    for key, batch in pictures.items():
        top = predict(model, batch).max(1)
        shown[key] = (batch, [names[int(i)] for i in top.indices], top.values.tolist())
    reached = shown["targeted"][1].count(names[target]) / len(images)
    return PhotoCurve(list(epsilons), named_right, changed, names[target], reached, shown)
