"""Augmentation on whole batches of image tensors, a fresh random draw for every image.

torchvision's v2 transforms draw one set of parameters per call, which on a batch tensor means the
whole batch moves together. `RandomAffine` gives each digit its own shift, rotation and scale in
one `grid_sample` call; `RandomCropFlip` crops and mirrors each photo in one gather; `PerImage`
runs a v2 transform (erasing) image by image; `PairedFlips` moves a mask with its image.
`AlternatingFlips` is a split, not a transform: it mirrors each image every other epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from deepscape.data import TensorSplit


class RandomAffine:
    """Random rotation (± `degrees`), zoom (1 ± `scale`), shift (± `shift` of the image size)."""

    def __init__(self, *, degrees: float = 10.0, shift: float = 0.1, scale: float = 0.1):
        self.degrees, self.shift, self.scale = degrees, shift, scale

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # "b c h w -> b c h w"
        b = images.shape[0]

        def uniform(bound: float) -> torch.Tensor:
            return (torch.rand(b, device=images.device) * 2 - 1) * bound

        angle = uniform(math.radians(self.degrees))
        zoom = 1 + uniform(self.scale)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # grid coordinates span [-1, 1], so a shift of s (fraction of the size) is 2·s there
        theta = torch.stack(
            [
                torch.stack([cos, -sin, uniform(2 * self.shift)], dim=1),
                torch.stack([sin, cos, uniform(2 * self.shift)], dim=1),
            ],
            dim=1,
        )  # "b 2 3"
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


class PerImage:
    """A torchvision v2 transform applied to each image of a batch on its own.

    v2 transforms draw one set of random parameters per call; called on a batch tensor they would
    crop and flip every image alike. Looping costs ~0.1 ms an image, small beside a CNN's step.
    """

    def __init__(self, transform: v2.Transform):
        self.transform = transform

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # "b c h w -> b c h w"
        return torch.stack([self.transform(image) for image in images])


class RandomCropFlip:
    """An image-sized random crop of each image padded by `padding` (reflected) — a shift of up
    to `padding` pixels each way — and a left-right flip half the time (unless `mirror=False`),
    each image drawn on its own. One gather for the whole batch: ~20× faster than torchvision's
    RandomCrop per image."""

    def __init__(self, *, padding: int = 4, mirror: bool = True):
        self.padding, self.mirror = padding, mirror

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # "b c h w -> b c h w"
        b, c, h, w = images.shape
        pad, device = self.padding, images.device
        padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
        top, left = torch.randint(0, 2 * pad + 1, (2, b, 1), device=device)
        rows = top + torch.arange(h, device=device)  # "b h": the rows each crop reads
        cols = left + torch.arange(w, device=device)  # "b w"
        if self.mirror:
            mirrored = torch.rand(b, 1, device=device) < 0.5
            cols = torch.where(mirrored, cols.flip(1), cols)  # a mirror image reads right to left
        batch, channel = torch.arange(b, device=device), torch.arange(c, device=device)
        return padded[
            batch[:, None, None, None],
            channel[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]


class AlternatingFlips(TensorSplit):
    """A split of images each shown mirrored every other epoch (Jordan 2024): a random half
    starts mirrored, and every epoch shows each image the other way round from the epoch before.
    Flipping at random shows an image the same way two epochs running half the time; alternating
    never does, so each image's two views are seen equally often, and a few epochs see more
    variety. The Trainer tells the split each epoch (`set_epoch`) before drawing from it; its
    augmentation must then crop without mirroring (`RandomCropFlip(mirror=False)`)."""

    def __init__(self, split: TensorSplit, *, seed: int = 0):
        super().__init__(split.inputs, split.targets)
        generator = torch.Generator().manual_seed(seed)
        self.mirrored_first = torch.rand(len(split), generator=generator) < 0.5
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = super().__getitems__(indices)
        mirrored = self.mirrored_first[torch.as_tensor(indices)] ^ (self.epoch % 2 == 1)
        return torch.where(mirrored[:, None, None, None], images.flip(3), images), targets


class PairedFlips:
    """The eight symmetries of a square (left-right and up-down flips, quarter turns), each image
    drawn on its own, applied to (images "b c h w", masks "b h w") alike: a dense target must
    move with its image, pixel for pixel. `turns=False` keeps to the flips (a non-square image,
    or one whose up and down differ)."""

    def __init__(self, *, vertical: bool = True, turns: bool = True):
        self.vertical, self.turns = vertical, turns

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        images, masks, *rest = batch
        b, device = len(images), images.device
        both = [images, masks[:, None]]  # the mask as a one-channel image while it moves

        def some(moved: list[torch.Tensor], p: float = 0.5) -> None:
            chosen = (torch.rand(b, device=device) < p)[:, None, None, None]
            for i, (before, after) in enumerate(zip(both, moved, strict=True)):
                both[i] = torch.where(chosen, after, before)

        some([t.flip(3) for t in both])
        if self.vertical:
            some([t.flip(2) for t in both])
        if self.turns and images.shape[-1] == images.shape[-2]:
            some([t.transpose(2, 3) for t in both])  # with the flips: every quarter turn
        return (both[0], both[1][:, 0], *rest)


class PairedCrop:
    """A random `side` × `side` window of each image and the same window of its mask, each image
    drawn on its own: big images train on many small views (the U-Net paper's tiles)."""

    def __init__(self, side: int):
        self.side = side

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        images, masks, *rest = batch
        b, c, h, w = images.shape
        if self.side >= min(h, w):
            return batch
        device = images.device
        top = torch.randint(0, h - self.side + 1, (b, 1), device=device)
        left = torch.randint(0, w - self.side + 1, (b, 1), device=device)
        rows = (top + torch.arange(self.side, device=device))[:, :, None]  # "b side 1"
        cols = (left + torch.arange(self.side, device=device))[:, None, :]  # "b 1 side"
        batch_index = torch.arange(b, device=device)[:, None, None]
        crops = images[batch_index[:, None], torch.arange(c, device=device)[None, :, None, None],
                       rows[:, None], cols[:, None]]  # fmt: skip
        return (crops, masks[batch_index, rows, cols], *rest)


AUGMENTATIONS = ("none", "crop-flip", "strong")


def photo_augmentation(
    kind: str, *, padding: int = 4, mirror: bool = True
) -> RandomCropFlip | v2.Compose | None:
    """The standard augmentations for small photos, weakest to strongest:
    crop-flip: a random crop of the image padded by `padding` (reflected), and a left-right flip
        half the time — a shifted or mirrored object is the same object;
    strong: crop-flip, then Random Erasing (Cutout) of up to a fifth of the image half the time,
        so that no single part of an object can carry the decision.
    `mirror=False` leaves the flips out (to a split that alternates them, `AlternatingFlips`)."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augmentation {kind!r} is not one of {', '.join(AUGMENTATIONS)}")
    if kind == "none":
        return None
    crop_flip = RandomCropFlip(padding=padding, mirror=mirror)
    if kind == "crop-flip":
        return crop_flip
    return v2.Compose([crop_flip, PerImage(v2.RandomErasing(p=0.5, scale=(0.02, 0.2), value=0))])
