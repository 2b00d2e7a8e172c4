"""The second rung of the problem ladder: 10 kinds of objects.

`fashion-mnist` (28×28 grey photos of clothes) is the offline set: Debian's `dataset-fashion-mnist`
package installs its IDX files, found automatically. `cifar10` (32×32 colour photos) comes from the
Hugging Face hub, or from a local folder in the common class-per-folder layout. Both load into the
same `Splits` as the digits, so every lab, `inspect` and `serve` work on them unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deepscape.data import DataUnavailable, Splits, register
from deepscape.data.vision import from_hub, image_splits, read_idx_splits

FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_HUB_ID = "zalando-datasets/fashion_mnist"
CIFAR10_HUB_ID = "uoft-cs/cifar10"
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


@register(
    "fashion-mnist",
    "Fashion-MNIST, 60,000 + 10,000 28×28 clothes: data_dir= IDX files, Debian's package, the hub",
)
def load_fashion_mnist(data_dir: Path | None = None) -> Splits:
    folder = data_dir or (FASHION_DEBIAN_DIR if FASHION_DEBIAN_DIR.is_dir() else None)
    if folder is not None:
        arrays = read_idx_splits(folder, "the four Fashion-MNIST IDX files")
        source = f"IDX files in {folder}"
    else:
        arrays = from_hub(
            FASHION_HUB_ID,
            name="fashion-mnist",
            local=f"data_dir=FOLDER holding its four IDX files, or install them with "
            f"`apt-get install dataset-fashion-mnist` (Debian/Ubuntu, into {FASHION_DEBIAN_DIR})",
        )
        source = f"Hugging Face hub: {FASHION_HUB_ID}"
    return image_splits(
        "fashion-mnist",
        source,
        arrays["train"],
        arrays["test"],
        validation_fraction=5000 / 60000,
        scale=255.0,
        classes=FASHION_CLASSES,
    )


@register(
    "cifar10", "CIFAR-10, 50,000 + 10,000 32×32 colour photos: data_dir= folder, else the hub"
)
def load_cifar10(data_dir: Path | None = None) -> Splits:
    if data_dir is not None:
        train, test, classes = read_class_folders(data_dir)
        source = f"class-per-folder images in {data_dir}"
    else:
        arrays = from_hub(
            CIFAR10_HUB_ID,
            name="cifar10",
            local="data_dir=FOLDER with train/<class>/*.png|jpg and test/<class>/…, or go online",
            image_column="img",
        )
        # "n h w c" from the hub; the contract is "n c h w"
        train, test = ((x.transpose(0, 3, 1, 2), y) for x, y in (arrays["train"], arrays["test"]))
        classes, source = CIFAR10_CLASSES, f"Hugging Face hub: {CIFAR10_HUB_ID}"
    return image_splits(
        "cifar10",
        source,
        train,
        test,
        validation_fraction=5000 / 50000,
        scale=255.0,
        classes=classes,
    )


def read_class_folders(
    folder: Path,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """`folder/train/<class>/*` and `folder/test/<class>/*` as (images "n c h w" uint8, labels)
    pairs and the class names (the train folder's, sorted). A folder that holds exactly one such
    folder (as an unpacked archive often does) is looked into."""
    root = _split_root(folder)
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise DataUnavailable(f"{root / 'train'} has no class folders (train/<class>/*.png|jpg)")
    test_classes = sorted(d.name for d in (root / "test").iterdir() if d.is_dir())
    if test_classes != classes:
        raise DataUnavailable(
            f"{root}: test/ has classes {test_classes}, train/ has {classes}: they must match"
        )
    return _read_split(root / "train", classes), _read_split(root / "test", classes), classes


def _split_root(folder: Path) -> Path:
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return folder
    inner = [d for d in folder.iterdir() if d.is_dir()]
    if len(inner) == 1 and (inner[0] / "train").is_dir() and (inner[0] / "test").is_dir():
        return inner[0]
    raise DataUnavailable(
        f"{folder} should hold train/<class>/*.png|jpg and test/<class>/… (the class-per-folder "
        "layout; unpack an archive first)"
    )


def _read_split(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    images, labels, size = [], [], None
    for label, name in enumerate(classes):
        files = sorted(f for f in (folder / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for file in files:
            try:
                with Image.open(file) as opened:
                    image = opened.convert("RGB")
            except (OSError, UnidentifiedImageError) as error:
                raise DataUnavailable(
                    f"{file} is not a readable image ({error}): remove or replace it"
                ) from error
            size = size or image.size  # one size for the whole set: the first image's
            images.append(np.asarray(image if image.size == size else image.resize(size)))
            labels.append(label)
    if not images:
        raise DataUnavailable(f"{folder} has no images (.png, .jpg, .jpeg, .bmp, .webp)")
    return np.stack(images).transpose(0, 3, 1, 2), np.array(labels)
