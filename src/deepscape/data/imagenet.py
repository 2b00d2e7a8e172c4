"""Photos from files: an `imagenet-folder` to evaluate on, or any image file or folder to classify.

An imagenet-folder holds images of the 1000 ImageNet-1k classes named by WordNet id, in either
layout (or both):

    class per folder    n01440764/ILSVRC2012_val_00000293.JPEG
    flat, id first      n01440764_tench.JPEG, n01440764_123.jpg

The label is the index of the WordNet id in `imagenet_wnids()`. 50,000 validation photos do not
fit in memory as tensors, so images are decoded one at a time, when a batch needs them. Nothing
here stops on a bad file: an unknown WordNet id, a truncated JPEG, a text file named .jpg are
each reported with the reason, and skipped.

Offline, scikit-image's bundled photos (`skimage_photos`) stand in, with the classes that name
each one right.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from deepscape.data import DataUnavailable
from deepscape.models.pretrained import imagenet_wnids

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
WNID = re.compile(r"n\d{8}")
MAX_PIXELS = 40_000_000  # refused before decoding: a decompression bomb, or a 6300² scan

Skipped = list[tuple[Path, str]]  # (file, why it was skipped)
# scikit-image's bundled photos (offline) and the ImageNet classes that would name each right,
# chosen from what the photo shows before looking at any model's answer.
SKIMAGE_PHOTOS = (
    ("chelsea", ("tabby", "tiger cat", "Egyptian cat")),  # a tabby cat
    ("coffee", ("espresso", "cup", "coffee mug")),
    ("rocket", ("missile", "projectile", "space shuttle")),  # a Falcon 9 on its launch pad
    ("stereo_motorcycle", ("moped", "motor scooter")),  # no plain "motorcycle" among the 1000
    ("camera", ("tripod", "reflex camera")),  # greyscale: a cameraman at his tripod
    ("clock", ("wall clock", "analog clock")),  # greyscale, and blurred by a moving camera
    ("astronaut", ()),  # none of the 1000 is right
)


class UnreadableImage(ValueError):
    """A file that is not an image PIL can decode; the message says why."""


def decode(path: Path) -> torch.Tensor:
    """An image file as "c h w" floats in [0, 1], RGB, upright (phones store the rotation in
    EXIF). Raises UnreadableImage."""
    try:
        if path.stat().st_size == 0:
            raise UnreadableImage("an empty file")
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise UnreadableImage(f"{image.width}×{image.height} pixels, over the limit")
            image.load()  # decode now: a truncated file fails here, not later
            upright = ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        reason = "not an image PIL can read" if isinstance(error, UnidentifiedImageError) else ""
        raise UnreadableImage(reason or f"{type(error).__name__}: {error}") from None
    return torch.from_numpy(np.asarray(upright).copy()).permute(2, 0, 1).float() / 255


def fit_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """ "c h w" -> "c size size": the shorter side resized to `size`, the centre square kept —
    the part a centre-cropping model looks at, so batches can hold photos of any shape."""
    resized = F.resize(image, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    return F.center_crop(resized, [size, size]).clamp(0, 1)


def skimage_photos(size: int) -> list[tuple[str, torch.Tensor, tuple[str, ...]]]:
    """scikit-image's photos as "3 size size" squares (`fit_square`), each with the ImageNet-1k
    classes that name it right (none for the astronaut: no class fits)."""
    import skimage.data  # only here: the rest of the module has no use for it

    photos = []
    for name, expected in SKIMAGE_PHOTOS:
        pixels = getattr(skimage.data, name)()
        pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # stereo: the left view
        image = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255)
        image = image.permute(2, 0, 1) if image.ndim == 3 else image.expand(3, -1, -1)
        photos.append((name, fit_square(image, size), expected))
    return photos


class ImageFiles(Dataset):
    """Image files with labels (-1: unknown), decoded when indexed; `size` makes every image a
    square of that side (`fit_square`), None keeps it whole.

    Indexing gives (image, label, problem). A file that cannot be read gives a blank image, label
    -1 and the reason as `problem` ("" for a good image), so one bad file among 50,000 never stops
    an evaluation; `batches` reports and drops it.
    """

    def __init__(self, samples: Sequence[tuple[Path, int]], *, size: int | None):
        self.samples = list(samples)
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        path, label = self.samples[index]
        try:
            image = decode(path)
        except UnreadableImage as error:
            side = self.size or 1
            return torch.zeros(3, side, side), -1, str(error)
        return (fit_square(image, self.size) if self.size else image), label, ""


def imagenet_folder(root: str | Path, *, size: int) -> tuple[ImageFiles, Skipped]:
    """The labelled images of an imagenet-folder (either layout) as squares of side `size`, and
    the files skipped for their names. Raises DataUnavailable when there is nothing to evaluate."""
    root = Path(root)
    if not root.is_dir():
        raise DataUnavailable(f"imagenet_dir={root} is not a folder")
    labels = {wnid: index for index, wnid in enumerate(imagenet_wnids())}
    samples: list[tuple[Path, int]] = []
    skipped: Skipped = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            files = [f for f in sorted(entry.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
            if entry.name in labels:
                samples += [(f, labels[entry.name]) for f in files]
            elif files:  # one line for the folder, not one per image in it
                count = f"{len(files)} image{'s' * (len(files) > 1)}"
                skipped.append((entry, f"{count} in a folder not named by an ImageNet-1k class"))
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            found = WNID.match(entry.name)
            if found and found.group() in labels:
                samples.append((entry, labels[found.group()]))
            elif found:
                skipped.append((entry, f"'{found.group()}' is not an ImageNet-1k class"))
            else:
                skipped.append((entry, "the name does not start with a WordNet id (n01440764_…)"))
    if not samples:
        raise DataUnavailable(
            f"no images named by ImageNet-1k WordNet id in {root} ({len(skipped)} skipped): use "
            "class folders n01440764/… or files named n01440764_….JPEG"
        )
    return ImageFiles(samples, size=size), skipped


def image_paths(path: str | Path) -> list[Path]:
    """An image file, or every image file in a folder and its subfolders (by suffix), sorted.
    Raises DataUnavailable when there is none."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataUnavailable(f"{path} is neither an image file nor a folder")
    found = [
        p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not found:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DataUnavailable(f"no image files in {path} (looked for {suffixes})")
    return found


def read_images(
    path: str | Path, *, size: int | None = None
) -> tuple[list[tuple[Path, torch.Tensor]], Skipped]:
    """Every readable image of a file or folder, in memory (whole, or squares of side `size`),
    and the unreadable ones with the reason. For a few photos: a big folder goes through
    `ImageFiles` and `batches` instead."""
    images = ImageFiles([(p, -1) for p in image_paths(path)], size=size)
    read, skipped = [], []
    for (file, _), (image, _, problem) in zip(images.samples, images, strict=True):
        if problem:
            skipped.append((file, problem))
        else:
            read.append((file, image))
    return read, skipped


class Batch(NamedTuple):
    images: torch.Tensor  # "b c s s", the readable images of the batch
    labels: torch.Tensor  # "b"
    indices: torch.Tensor  # "b": their positions in the dataset
    skipped: Skipped  # the batch's unreadable files


def batches(
    images: ImageFiles,
    *,
    batch_size: int,
    workers: int = 0,
    show_progress: bool = True,
    description: str = "images",
) -> Iterator[Batch]:
    """The readable images in order, `batch_size` at a time, decoded by `workers` processes
    (0: in this one), with a progress bar on stderr."""
    if images.size is None:
        raise ValueError("batches need images of one size: make ImageFiles with size=")
    loader = DataLoader(images, batch_size=batch_size, num_workers=workers, shuffle=False)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
    ) as progress:
        task = progress.add_task(description, total=len(images))
        start = 0
        for pixels, labels, problems in loader:
            indices = torch.arange(start, start + len(labels))
            good = torch.tensor([not problem for problem in problems])
            skipped = [
                (images.samples[int(i)][0], problem)
                for i, problem in zip(indices, problems, strict=True)
                if problem
            ]
            yield Batch(pixels[good], labels[good], indices[good], skipped)
            start += len(labels)
            progress.update(task, advance=len(labels))
