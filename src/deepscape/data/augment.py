"""Augmentation on whole batches of image tensors, a fresh random draw for every image.

torchvision's v2 transforms draw one set of parameters per call, which on a batch tensor means the
whole batch moves together; here each image gets its own shift, rotation and scale, in one
`grid_sample` call, on whatever device the batch is on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
