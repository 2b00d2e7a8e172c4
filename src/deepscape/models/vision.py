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


def conv_unit(c_in: int, c_out: int, *, batch_norm: bool, pool: bool = False) -> nn.Sequential:
    """3×3 convolution, [2×2 max pool], [batch norm], ReLU. Pooling before the norm lets the norm
    and the ReLU work on a quarter of the values for the same result."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(), nn.ReLU()]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + f(x): the block learns a correction to its input, and gradients reach early layers
    through the identity path undiminished.

    f starts at zero (its last norm's scale, or without a norm its last convolution, is zeroed):
    at initialisation the block is the identity, so stacking blocks does not inflate the
    activations, and the correction grows only as far as training finds it useful."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        last = [m for m in body.modules() if isinstance(m, nn.BatchNorm2d | nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Whitening(nn.Conv2d):
    """A fixed 2×2 convolution that decorrelates neighbouring pixels and colours: its filters are
    the eigenvectors of the covariance of the training images' 2×2 patches, each scaled by
    1/√eigenvalue, and their negatives (so a ReLU after it loses nothing). The first layer then
    starts from what a trained one converges to, and the rest learns faster (Jordan 2024).
    Only its bias trains."""

    def __init__(self, *, images: torch.Tensor, eps: float = 5e-4):
        channels = images.shape[1]
        super().__init__(channels, 2 * channels * 4, kernel_size=2)
        patches = images.unfold(2, 2, 1).unfold(3, 2, 1)  # "n c h w 2 2"
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels * 4)  # "(n h w) (c 2 2)"
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
        filters = eigenvectors.T / (eigenvalues[:, None] + eps).sqrt()
        filters = filters.float().reshape(-1, channels, 2, 2)
        with torch.no_grad():
            self.weight.copy_(torch.cat([filters, -filters]))
            self.bias.zero_()
        self.weight.requires_grad_(False)


class ObjectsCNN(nn.Module):
    """The digits CNN grown up for photos, each lever switchable so that a sweep can show what it
    buys: batch norm, residual blocks, test-time flip averaging.

        b c h w → stem → b w/2 h w → stage 1 → b w h/2 w/2 → … stage d → b w·2^(d−1) h/2^d w/2^d
                → global max pool → b w·2^(d−1) → linear → b classes

    A stage halves the image and doubles the channels with one unit (conv, pool, norm, ReLU), then
    refines with a second — inside a residual block when `residual`.
    """

    def __init__(
        self,
        *,
        in_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 64,
        depth: int = 3,
        batch_norm: bool = True,
        residual: bool = True,
        flip_average: bool = True,
        whiten: bool = False,
        images: torch.Tensor | None = None,
        dropout: float = 0.0,
        **_: object,
    ):
        super().__init__()
        if whiten:  # `images`: standardised training images, to whiten their patches
            stem = Whitening(images=images)
            layers: list[nn.Module] = [stem, nn.ReLU()]
            channels = stem.out_channels
        else:
            channels = max(width // 2, in_shape[0])
            layers = [conv_unit(in_shape[0], channels, batch_norm=batch_norm)]
        for stage in range(depth):
            out = width * 2**stage
            refine = conv_unit(out, out, batch_norm=batch_norm)
            layers += [
                conv_unit(channels, out, batch_norm=batch_norm, pool=True),
                Residual(refine) if residual else refine,
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(channels, num_classes)
        self.flip_average = flip_average

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        return self.classify(self.dropout(self.pool(self.features(x)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        if self.flip_average and not self.training:
            # a mirrored photo shows the same object: average the two views' logits
            return (self.logits(x) + self.logits(x.flip(3))) / 2
        return self.logits(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": LinearClassifier,
    "mlp": MLP,
    "cnn": SmallCNN,
    "resnet": ObjectsCNN,
}


def build_model(
    name: str, *, images: torch.Tensor, num_classes: int, **hyperparameters: object
) -> nn.Sequential:
    """`Standardize` (statistics from `images`, the training split) followed by MODELS[name]."""
    per_channel = images.transpose(0, 1).flatten(1)
    standardize = Standardize(mean=per_channel.mean(1), std=per_channel.std(1) + 1e-6)
    in_shape = tuple(images.shape[1:])
    return nn.Sequential(
        standardize,
        MODELS[name](
            in_shape=in_shape,
            num_classes=num_classes,
            images=standardize(images[:5000]),  # for a model that learns from the data's shape
            **hyperparameters,
        ),
    )
