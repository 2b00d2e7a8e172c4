"""vision/201/segmentation's yardsticks: the classical baseline (Otsu's threshold plus morphology)
and the IoU of each image, which orders the worst-first figure."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from skimage import filters, morphology

from deepscape.data import TensorSplit

# what morphology may clean a thresholded mask with, chosen on the training images
CLEANUPS = ("none", "open 1", "close 1", "open 2", "close 2", "drop specks")


def rare_class(masks: torch.Tensor) -> list[int]:
    """The classes a binary baseline calls 'object': all but the commonest (the background) —
    the membrane on the ISBI stack, the items on the built scenes."""
    common = int(torch.bincount(masks.flatten()).argmax())
    return [c for c in range(int(masks.max()) + 1) if c != common]


def binary_iou(predicted: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> float:
    predicted, truth = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    union = np.logical_or(predicted, truth).sum()
    return float(np.logical_and(predicted, truth).sum() / union) if union else 1.0


def threshold(grey: np.ndarray, *, dark: bool, cleanup: str) -> np.ndarray:
    """Otsu's threshold of one image "h w", the dark or the bright side as the object, then one
    morphological clean-up."""
    found = grey < filters.threshold_otsu(grey) if dark else grey > filters.threshold_otsu(grey)
    kind, _, radius = cleanup.partition(" ")
    if kind == "open":
        return morphology.opening(found, morphology.disk(int(radius)))
    if kind == "close":
        return morphology.closing(found, morphology.disk(int(radius)))
    if kind == "drop":
        return morphology.remove_small_objects(found, max_size=16)
    return found


class OtsuBaseline:
    """Object against background by Otsu's threshold (per image) and morphology; which side of
    the threshold is the object, and which clean-up, are chosen by IoU on training images —
    the same split the U-Net learns from, so the comparison is fair."""

    def __init__(self, train: TensorSplit, objects: list[int], *, images: int = 64):
        self.objects = objects
        greys, truths = self.greys(train.inputs[:images]), self.binary(train.targets[:images])
        scores = {}
        for dark, cleanup in itertools.product((True, False), CLEANUPS):
            predicted = [threshold(g, dark=dark, cleanup=cleanup) for g in greys]
            scores[dark, cleanup] = binary_iou(np.stack(predicted), truths)
        self.dark, self.cleanup = max(scores, key=scores.__getitem__)
        self.train_iou = scores[self.dark, self.cleanup]

    @staticmethod
    def greys(images: torch.Tensor) -> np.ndarray:
        return images.mean(1).numpy()

    def binary(self, masks: torch.Tensor) -> np.ndarray:
        return torch.isin(masks, torch.tensor(self.objects)).numpy()

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """ "n c h w" → "n h w" booleans (True: object)."""
        return np.stack([threshold(g, dark=self.dark, cleanup=self.cleanup)
                         for g in self.greys(images)])  # fmt: skip

    def describe(self) -> str:
        side = "darker" if self.dark else "brighter"
        return f"Otsu: {side} is object, clean-up {self.cleanup}"


def per_image_iou(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """ "n": each image's IoU averaged over the classes in its truth or its prediction (a class
    in neither says nothing about the image)."""
    n = len(truth)
    index = truth.reshape(n, -1) * num_classes + predicted.reshape(n, -1)
    confusion = torch.stack([torch.bincount(row, minlength=num_classes**2) for row in index])
    confusion = confusion.reshape(n, num_classes, num_classes).double()
    hits = confusion.diagonal(dim1=1, dim2=2)
    union = confusion.sum(2) + confusion.sum(1) - hits
    seen = union > 0
    return ((hits / union.clamp_min(1)) * seen).sum(1) / seen.sum(1).clamp_min(1)
