"""vision/201/super-resolution, the ladder's models: bicubic, SRCNN, ESPCN and a small EDSR.

Each takes a low-resolution batch "b 3 h w" in [0, 1] and returns "b 3 (h·s) (w·s)". What differs
is where the upscaling happens: SRCNN works on the bicubic enlargement (every convolution pays for
all s² output pixels), ESPCN and EDSR work at the low resolution and only their last convolution
makes the s² pixels of each input pixel, which `nn.PixelShuffle` lays out side by side.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from deepscape.config import ConfigError

METHODS = ("srcnn", "espcn", "edsr")  # the rungs that learn, from the oldest


def bicubic(images: Tensor, scale: int) -> Tensor:
    """Bicubic resizing by `scale` (>1: up, <1: down) with PyTorch's antialiased kernel: a = −0.5,
    widened when shrinking, as PIL's BICUBIC and MATLAB's imresize do (PIL's within 0.1 grey
    level on average)."""
    height, width = images.shape[-2:]
    size = (round(height * scale), round(width * scale))
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)


class Bicubic(nn.Module):
    """The baseline: no parameters, the same enlargement every photo editor makes."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, low: Tensor) -> Tensor:
        return bicubic(low, self.scale)


class Upscaler(nn.Module):
    """A learned model on the bicubic enlargement: with `residual` it adds its output to bicubic's
    (VDSR's global skip, Kim et al. 2016), so that it learns only the detail bicubic misses —
    far less to learn in a few minutes than the whole image. Inputs are centred on 0."""

    def __init__(self, scale: int, residual: bool):
        super().__init__()
        self.scale, self.residual = scale, residual

    def detail(self, low: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, low: Tensor) -> Tensor:
        made = self.detail(low - 0.5)
        return made + bicubic(low, self.scale) if self.residual else made + 0.5


class SRCNN(Upscaler):
    """Dong et al. 2014 (9-1-5): patch extraction 9×9 → 64 maps, a 1×1 non-linear mapping to 32,
    reconstruction 5×5, all at the high resolution, on the bicubic enlargement."""

    def __init__(self, scale: int, *, residual: bool = True):
        super().__init__(scale, residual)
        self.body = nn.Sequential(
            nn.Conv2d(3, 64, 9, padding=4), nn.ReLU(),
            nn.Conv2d(64, 32, 1), nn.ReLU(),
            nn.Conv2d(32, 3, 5, padding=2),
        )  # fmt: skip

    def detail(self, low: Tensor) -> Tensor:
        return self.body(bicubic(low, self.scale))


class ESPCN(Upscaler):
    """Shi et al. 2016: 5×5 → 64, 3×3 → 32 (tanh), then 3×3 → 3·s² maps at the low resolution,
    which the sub-pixel convolution (pixel shuffle) rearranges into an image s times larger:
    channel (c, i, j) of input pixel (y, x) becomes output pixel (y·s + i, x·s + j) of colour c."""

    def __init__(self, scale: int, *, residual: bool = True):
        super().__init__(scale, residual)
        self.body = nn.Sequential(
            nn.Conv2d(3, 64, 5, padding=2), nn.Tanh(),
            nn.Conv2d(64, 32, 3, padding=1), nn.Tanh(),
            nn.Conv2d(32, 3 * scale**2, 3, padding=1),
            nn.PixelShuffle(scale),
        )  # fmt: skip

    def detail(self, low: Tensor) -> Tensor:
        return self.body(low)


class ResidualBlock(nn.Module):
    """EDSR's block: conv, ReLU, conv, added back — no batch norm (Lim et al. 2017 found it
    costs memory and hurts: it flattens the range of values a restoration must keep)."""

    def __init__(self, width: int, res_scale: float = 0.1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.res_scale = res_scale  # EDSR's: each block starts as a small change

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.body(x)


class EDSR(Upscaler):
    """A small EDSR (Lim et al. 2017): a 3×3 head, `blocks` residual blocks and a 3×3 convolution
    with a skip around them, then ESPCN's tail (one convolution to 3·s² maps, pixel shuffle), all
    but the shuffle at the low resolution. (EDSR's own tail makes width·s² maps and shuffles those:
    for ×3 at width 32, a layer as costly as the whole body.)"""

    def __init__(self, scale: int, *, width: int = 32, blocks: int = 4, residual: bool = True):
        super().__init__(scale, residual)
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(
            *(ResidualBlock(width) for _ in range(blocks)), nn.Conv2d(width, width, 3, padding=1)
        )
        self.tail = nn.Sequential(
            nn.Conv2d(width, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale)
        )

    def detail(self, low: Tensor) -> Tensor:
        features = self.head(low)
        return self.tail(features + self.body(features))


def build(method: str, scale: int, *, width: int, blocks: int, residual: bool) -> nn.Module:
    """The model of one rung."""
    if method == "bicubic":
        return Bicubic(scale)
    if method == "srcnn":
        return SRCNN(scale, residual=residual)
    if method == "espcn":
        return ESPCN(scale, residual=residual)
    if method == "edsr":
        return EDSR(scale, width=width, blocks=blocks, residual=residual)
    raise ConfigError(f"method={method!r} has no model: pick bicubic, {', '.join(METHODS)}")
