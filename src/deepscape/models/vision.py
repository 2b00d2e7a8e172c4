"""The first rungs of the model ladder, f(x, W) for images: linear → MLP → small CNN.

Every model takes raw pixels in [0, 1], shaped "b c h w", and returns class logits "b classes".
Each starts with `Standardize`, so the normalisation it was trained with travels with its weights.
Constructors are keyword-only and ignore hyperparameters that are not theirs (`**_`), so one
config can climb the ladder: `model=linear` simply has no use for `width`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Standardize(nn.Module):
    """(x − mean) / std per channel, with the training split's statistics stored as buffers."""

    def __init__(self, *, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class LinearClassifier(nn.Module):
    """Softmax regression: logits = W·x + b, one weight per pixel per class."""

    def __init__(self, *, in_shape: tuple[int, int, int], num_classes: int, **_: object):
        super().__init__()
        channels, height, width = in_shape
        self.classify = nn.Linear(channels * height * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        return self.classify(x.flatten(1))


class MLP(nn.Module):
    """Hidden layers of `width` ReLU units between the pixels and the classes."""

    def __init__(
        self,
        *,
        in_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 128,
        depth: int = 2,
        dropout: float = 0.0,
        **_: object,
    ):
        super().__init__()
        channels, height, width_px = in_shape
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = channels * height * width_px
        for _layer in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU(), nn.Dropout(dropout)]
            fan_in = width
        layers.append(nn.Linear(fan_in, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        return self.layers(x)


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """3×3 convolution, batch norm, ReLU: the CNN's unit of work."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class SmallCNN(nn.Module):
    """`depth` stages of two 3×3 convolutions, each stage halving the image and doubling the
    channels; then global average pooling and a linear classifier. Works for 8×8 and 28×28 alike.

        b c h w → stage 1 → b w h/2 w/2 → stage 2 → b 2w h/4 w/4 → pool → b 2w → linear → b classes
    """

    def __init__(
        self,
        *,
        in_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 32,
        depth: int = 2,
        dropout: float = 0.0,
        **_: object,
    ):
        super().__init__()
        stages, channels = [], in_shape[0]
        for stage in range(depth):
            out = width * 2**stage
            stages.append(
                nn.Sequential(conv_bn_relu(channels, out), conv_bn_relu(out, out), nn.MaxPool2d(2))
            )
            channels = out
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        return self.classify(self.dropout(self.pool(self.features(x)).flatten(1)))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": LinearClassifier,
    "mlp": MLP,
    "cnn": SmallCNN,
}


def build_model(
    name: str, *, images: torch.Tensor, num_classes: int, **hyperparameters: object
) -> nn.Sequential:
    """`Standardize` (statistics from `images`, the training split) followed by MODELS[name]."""
    per_channel = images.transpose(0, 1).flatten(1)
    return nn.Sequential(
        Standardize(mean=per_channel.mean(1), std=per_channel.std(1) + 1e-6),
        MODELS[name](in_shape=tuple(images.shape[1:]), num_classes=num_classes, **hyperparameters),
    )
