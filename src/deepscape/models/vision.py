"""The first rungs of the model ladder, f(x, W) for images: linear → MLP → small CNN.

Every model takes raw pixels in [0, 1], shaped "b c h w", and returns class logits "b classes".
Each starts with `Standardize`, so the normalisation it was trained with travels with its weights.
Constructors are keyword-only and ignore hyperparameters that are not theirs (`**_`), so one
config can climb the ladder: `model=linear` simply has no use for `width`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class Standardize(nn.Module):
    """(x − mean) / std per channel, with the training split's statistics stored as buffers."""

    def __init__(self, *, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    @classmethod
    def of(cls, images: torch.Tensor) -> Standardize:
        """The statistics of `images` "n c h w" (the training split), per channel."""
        per_channel = images.transpose(0, 1).flatten(1)
        return cls(mean=per_channel.mean(1), std=per_channel.std(1) + 1e-6)

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


def conv_unit(
    c_in: int, c_out: int, *, batch_norm: bool, pool: bool = False, relu: bool = True
) -> nn.Sequential:
    """3×3 convolution, [2×2 max pool], [batch norm], [ReLU]. Pooling before the norm lets the
    norm and the ReLU work on a quarter of the values for the same result."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers.append(nn.BatchNorm2d(c_out) if batch_norm else nn.Identity())
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """relu(x + f(x)): the block learns a correction to its input, and gradients reach early
    layers through the identity path undiminished.

    f starts at zero (its last norm's scale, or without a norm its last convolution, is zeroed):
    at initialisation the block is the identity on its input (a ReLU's output, ≥ 0), so stacking
    blocks does not inflate the activations, and the correction grows only as far as training
    finds it useful. The ReLU comes after the sum, as in He et al.: a ReLU at the end of f would
    receive exactly 0 at the start, pass no gradient back (its slope at 0 is 0), and f would
    never learn — so f must not end in one."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        if isinstance(body[-1], nn.ReLU):
            raise ValueError("a residual body must end before its ReLU: the block applies it")
        self.body = body
        last = [m for m in body.modules() if isinstance(m, nn.BatchNorm2d | nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


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


class ViewAveraged(nn.Module):
    """A classifier whose `logits` are, at test time, averaged over views of each photo that show
    the same object (`average_views`): its mirror image when `flip_average`, one-pixel moves when
    `shift_average`. Training sees one view."""

    flip_average: bool
    shift_average: bool

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        if self.training:
            return self.logits(x)
        return average_views(self.logits, x, mirror=self.flip_average, shift=self.shift_average)


class ObjectsCNN(ViewAveraged):
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
        shift_average: bool = False,
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
            refine = conv_unit(out, out, batch_norm=batch_norm, relu=not residual)
            layers += [
                conv_unit(channels, out, batch_norm=batch_norm, pool=True),
                Residual(refine) if residual else refine,
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classify = nn.Linear(channels, num_classes)
        self.flip_average, self.shift_average = flip_average, shift_average

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        return self.classify(self.dropout(self.pool(self.features(x)).flatten(1)))


def average_views(
    logits: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, mirror: bool, shift: bool
) -> torch.Tensor:
    """Test-time augmentation: the logits of each photo averaged over views that show the same
    object — its mirror image (`mirror`), and copies moved one pixel up-left and down-right
    (`shift`, weighted a half together, as in Jordan 2024). "b c h w -> b classes" """

    def mirrored(views: torch.Tensor) -> torch.Tensor:
        return (logits(views) + logits(views.flip(3))) / 2 if mirror else logits(views)

    if not shift:
        return mirrored(x)
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    moved = (mirrored(padded[..., :height, :width]) + mirrored(padded[..., 2:, 2:])) / 2
    return (mirrored(x) + moved) / 2


class ScaleFreeNorm(nn.BatchNorm2d):
    """Batch norm whose scale is fixed at 1 (only the shift learns) and whose running statistics
    follow the last few batches (momentum 0.4): with few, large steps, statistics that lag
    behind the weights would misjudge them at test time."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


def identity_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3×3 convolution whose first `c_in` filters start as the identity (the rest random): the
    block starts by passing its input on, as a residual block would, without the extra path."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:c_in])
    return conv


class FastCNN(ViewAveraged):
    """The fastest known small CNN for CIFAR-10 (airbench94, Jordan 2024; after Page 2018 and
    hlb-CIFAR10): a whitened stem, then three groups of (conv, pool, norm, GELU, conv, norm, GELU)
    with identity-initialised convolutions and scale-free norms, global max pooling, and logits
    scaled down by 9 so that the high LR it trains at does not make them confident too early.

        b c h w → whiten → b 8c h−1 w−1 → group 1 → b w1 h/2 w/2 → group 2 → b w2 h/4 w/4
                → group 3 → b w3 h/8 w/8 → global max → b w3 → linear / 9 → b classes
    """

    def __init__(
        self,
        *,
        in_shape: tuple[int, int, int],
        num_classes: int,
        images: torch.Tensor,
        widths: tuple[int, ...] = (64, 256, 256),
        flip_average: bool = True,
        shift_average: bool = True,
        **_: object,
    ):
        super().__init__()
        stem = Whitening(images=images)
        layers: list[nn.Module] = [stem, nn.GELU()]
        channels = stem.out_channels
        for out in widths:
            layers += [
                identity_conv(channels, out),
                nn.MaxPool2d(2),
                ScaleFreeNorm(out),
                nn.GELU(),
                identity_conv(out, out),
                ScaleFreeNorm(out),
                nn.GELU(),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classify = nn.Linear(channels, num_classes, bias=False)
        self.flip_average, self.shift_average = flip_average, shift_average

    def logits(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        return self.classify(self.pool(self.features(x)).flatten(1)) / 9


MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": LinearClassifier,
    "mlp": MLP,
    "cnn": SmallCNN,
    "resnet": ObjectsCNN,
    "fast": FastCNN,
}


def build_model(
    name: str, *, images: torch.Tensor, num_classes: int, **hyperparameters: object
) -> nn.Sequential:
    """`Standardize` (statistics from `images`, the training split) followed by MODELS[name]."""
    standardize = Standardize.of(images)
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
