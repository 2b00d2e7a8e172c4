"""vision/201/super-resolution, the data: photos, their low-resolution copies, random patches, and
the Y channel the published tables measure.

A pair is a ground-truth photo cropped to a multiple of the scale (MATLAB's `modcrop`) and its
low-resolution copy made by bicubic shrinking, rounded to 8 bits as a saved image would be: the
standard degradation, so that a model's numbers compare with the papers'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from deepscape.config import ConfigError
from deepscape.data import DataUnavailable, TensorSplit
from deepscape.data.masks import IMAGE_SUFFIXES
from deepscape.labs.vision.l201_super_resolution_models import bicubic


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        picture = getattr(skimage.data, name)()
        return picture[0] if isinstance(picture, tuple) else picture  # a stereo pair: the left

    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        return np.asarray(Image.open(cbook.get_sample_data(name, asfileobj=False)).convert("RGB"))

    return load


# real colour photos that come with scikit-image and matplotlib: no download
PHOTOS = {
    "astronaut": _skimage("astronaut"),
    "rocket": _skimage("rocket"),
    "motorcycle": _skimage("stereo_motorcycle"),
    "coffee": _skimage("coffee"),
    "chelsea": _skimage("chelsea"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
}
OFFLINE = {
    "train": ("astronaut", "rocket", "motorcycle"),
    "validation": ("coffee",),
    "photos": ("chelsea", "grace_hopper"),  # the test photos
}


@dataclass
class Pair:
    name: str
    low: Tensor  # "3 h w" in [0, 1], 8-bit values
    high: Tensor  # "3 (h·s) (w·s)"


def as_tensor(picture: np.ndarray) -> Tensor:
    """An 8-bit picture "h w 3" (or grey "h w") as floats "3 h w" in [0, 1]."""
    if picture.ndim == 2:
        picture = np.stack([picture] * 3, axis=-1)
    return torch.from_numpy(np.array(picture[..., :3])).permute(2, 0, 1).float() / 255


def degrade(name: str, truth: Tensor, scale: int) -> Pair:
    """The pair of a ground-truth photo "3 H W": cropped to a multiple of `scale`, shrunk by
    bicubic, rounded to 8 bits."""
    height, width = (side - side % scale for side in truth.shape[-2:])
    high = truth[:, :height, :width]
    low = bicubic(high[None], 1 / scale)[0]
    return Pair(name, (low.clamp(0, 1) * 255).round() / 255, high)


def read_folder(folder: Path) -> dict[str, Tensor]:
    """Every image of `folder` by file name (sorted), or DataUnavailable saying what to do."""
    if not folder.is_dir():
        raise DataUnavailable(f"no folder {folder}: point data_dir at a folder of image folders")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataUnavailable(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}: put photos there or "
            "point data_dir at a folder that has them"
        )
    return {p.stem: as_tensor(np.asarray(Image.open(p).convert("RGB"))) for p in files}


def offline_photos(names: Sequence[str]) -> dict[str, Tensor]:
    return {name: as_tensor(PHOTOS[name]()) for name in names}


def check_size(pairs: list[Pair], patch_size: int, scale: int) -> None:
    """A training or validation photo must hold one patch: say which one does not, and the fix."""
    for pair in pairs:
        height, width = pair.high.shape[-2:]
        if min(height, width) < patch_size:
            raise ConfigError(
                f"image {pair.name} is {width}×{height} pixels, smaller than a training patch of "
                f"patch_size={patch_size}: lower patch_size (a multiple of scale={scale}) or "
                "remove the image"
            )


# -- what is measured: the Y channel, the border cropped -----------------------------------------
def y_channel(rgb: Tensor) -> Tensor:
    """Luma "b 1 h w" of RGB "b 3 h w" in [0, 1], as MATLAB's rgb2ycbcr (ITU-R BT.601, studio
    range): Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255, from 16/255 to 235/255."""
    weights = rgb.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return (16 + (rgb * weights).sum(1, keepdim=True)) / 255


def measured(scale: int) -> Callable[[Tensor], Tensor]:
    """The view the published tables measure: the image rounded to 8 bits (as saved), its Y
    channel, `scale` pixels cut from every side (where a model sees beyond the image)."""

    def view(images: Tensor) -> Tensor:
        luma = y_channel((images.float() * 255).round() / 255)
        return luma[..., scale:-scale, scale:-scale]

    return view


# -- training patches, validation patches, whole test images -------------------------------------
class RandomPatches(Dataset):
    """`length` random patches an epoch: a photo at random, a random patch of it (`patch` pixels of
    the high resolution, aligned with its low-resolution copy), flipped and turned by one of the
    8 symmetries of a square (EDSR's augmentation). Drawn with torch's generator, which the
    trainer seeds from (seed, epoch): a resumed run draws what the first would have."""

    def __init__(self, pairs: list[Pair], *, scale: int, patch: int, length: int):
        self.pairs, self.scale, self.low_patch, self.length = pairs, scale, patch // scale, length

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        lows, highs = [], []
        s, p = self.scale, self.low_patch
        for _ in indices:
            pair = self.pairs[int(torch.randint(len(self.pairs), ()))]
            height, width = pair.low.shape[-2:]
            y, x = (int(torch.randint(side - p + 1, ())) for side in (height, width))
            low = pair.low[:, y : y + p, x : x + p]
            high = pair.high[:, y * s : (y + p) * s, x * s : (x + p) * s]
            turns, flip = (int(v) for v in torch.randint(4, (2,)))
            low, high = (torch.rot90(t, turns, dims=(1, 2)) for t in (low, high))
            if flip % 2:
                low, high = low.flip(2), high.flip(2)
            lows.append(low)
            highs.append(high)
        return torch.stack(lows), torch.stack(highs)


def grid_patches(pairs: list[Pair], *, scale: int, patch: int, most: int) -> TensorSplit:
    """Non-overlapping patches on a grid over every photo (at most `most`, spread evenly): the
    same validation patches at every evaluation."""
    lows, highs = [], []
    p = patch // scale
    for pair in pairs:
        rows, cols = (side // p for side in pair.low.shape[-2:])
        low = pair.low[:, : rows * p, : cols * p]
        high = pair.high[:, : rows * p * scale, : cols * p * scale]
        lows.append(rearrange(low, "c (r h) (q w) -> (r q) c h w", h=p, w=p))
        highs.append(rearrange(high, "c (r h) (q w) -> (r q) c h w", h=p * scale, w=p * scale))
    low, high = torch.cat(lows), torch.cat(highs)
    keep = torch.linspace(0, len(low) - 1, min(most, len(low))).round().long()
    return TensorSplit(low[keep], high[keep])


class WholeImages(Dataset):
    def __init__(self, pairs: list[Pair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.pairs[index].low, self.pairs[index].high


def one_at_a_time(pairs: list[Pair]) -> DataLoader:
    """Whole test images, one a batch: their sizes differ."""
    return DataLoader(
        WholeImages(pairs), batch_size=1, collate_fn=lambda items: tuple(t[None] for t in items[0])
    )
