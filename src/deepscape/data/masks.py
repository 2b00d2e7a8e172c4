"""Datasets with a class for every pixel: images "n c h w" in [0, 1], masks "n h w" of indices.

fashion-scenes     built offline from real data: Fashion-MNIST items pasted onto scikit-image's
                   photographed textures (brick, grass, gravel), so every mask is exact
isbi-membrane      the ISBI 2012 electron-microscopy stack of the U-Net paper (data_dir=)
mask-folder        any images/ + masks/ folder pair (data_dir=), classes.txt optional
oxford-iiit-pet    Oxford-IIIT Pet's trimaps (pet, background, border), downloaded by
                   torchvision when online
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepscape.data import SPLIT_SEED, DataUnavailable, Splits, TensorSplit, get_dataset, register

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def mask_splits(
    name: str,
    source: str,
    parts: dict[str, tuple[np.ndarray, np.ndarray]],
    classes: list[str],
) -> Splits:
    """Splits from (images "n h w" or "n h w c" uint8 or floats in [0, 1], masks "n h w")."""

    def split(images: np.ndarray, masks: np.ndarray) -> TensorSplit:
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        x = x / 255 if images.dtype == np.uint8 else x
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return TensorSplit(x.contiguous(), torch.as_tensor(masks, dtype=torch.long))

    return Splits(
        name=name,
        train=split(*parts["train"]),
        validation=split(*parts["validation"]),
        test=split(*parts["test"]),
        classes=classes,
        modality="segmentation",
        source=source,
    )


# -- built scenes: real items on real textures ----------------------------------------------------
SCENE_SIDE = 64
SCENE_COUNTS = {"train": 4000, "validation": 500, "test": 1000}
# Fashion-MNIST's ten classes grouped by kind: a shirt and a T-shirt differ by a collar that a
# 28-pixel image barely shows, and the lesson is the pixels' outline, not that confusion
KINDS = {"top": (0, 2, 3, 4, 6), "trouser": (1,), "footwear": (5, 7, 9), "bag": (8,)}
TEXTURES = ("brick", "grass", "gravel")
TEXTURE_ROWS = {"train": (0, 320), "validation": (320, 512), "test": (320, 512)}  # unseen rows
INK = 0.1  # an item's pixel brighter than this belongs to the item


def build_scenes(
    items: torch.Tensor,
    labels: torch.Tensor,
    textures: list[np.ndarray],
    count: int,
    *,
    seed: int,
    side: int = SCENE_SIDE,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` scenes "n side side" with their masks: a random crop of a random texture, its
    contrast drawn at random, and 1–3 items of random kinds (from `items` "n 1 28 28" with their
    Fashion-MNIST `labels`) pasted at random positions and scales (1–1.5×), side by side: an
    item hidden behind another would leave too little of its shape to tell its kind (one that
    finds no free place is left out)."""
    rng = np.random.default_rng(seed)
    kind_of = np.zeros(10, dtype=np.int64)
    for k, fashion_classes in enumerate(KINDS.values(), start=1):
        kind_of[list(fashion_classes)] = k
    # every kind equally often: drawn from the items, a top (five of Fashion-MNIST's classes)
    # would come five times as often as a bag, and a net may learn to call a bag a top
    of_kind = [np.flatnonzero(kind_of[labels.numpy()] == k) for k in range(1, len(KINDS) + 1)]
    of_kind = [found for found in of_kind if len(found)]  # a few items may lack a kind
    scenes = np.empty((count, side, side), dtype=np.float32)
    masks = np.zeros((count, side, side), dtype=np.int64)
    for n in range(count):
        texture = textures[rng.integers(len(textures))]
        top, left = (rng.integers(0, extent - side + 1) for extent in texture.shape)
        crop = texture[top : top + side, left : left + side]
        low, high = sorted(rng.uniform(0.0, 1.0, size=2))
        scenes[n] = low + (high - low) * crop  # a dim or bright, flat or contrasty background
        taken = np.zeros((side, side), dtype=bool)
        for kind in rng.integers(len(of_kind), size=rng.integers(1, 4)):
            i = rng.choice(of_kind[kind])
            size = round(28 * rng.uniform(1.0, 1.5))
            for _ in range(20):
                y, x = rng.integers(0, side - size + 1, size=2)
                if not taken[y : y + size, x : x + size].any():
                    break
            else:
                continue
            taken[y : y + size, x : x + size] = True
            item = F.interpolate(items[i][None], size=(size, size), mode="bilinear",
                                 align_corners=False)[0, 0].numpy()  # fmt: skip
            where = item > INK
            scenes[n, y : y + size, x : x + size][where] = item[where]
            masks[n, y : y + size, x : x + size][where] = kind_of[int(labels[i])]
    return scenes, masks


def texture_pages() -> dict[str, np.ndarray]:
    import skimage.data

    return {name: getattr(skimage.data, name)().astype(np.float32) / 255 for name in TEXTURES}


@register(
    "fashion-scenes",
    "built scenes: Fashion-MNIST items on scikit-image's photographed textures, exact masks",
)
def load_fashion_scenes(data_dir: Path | None = None) -> Splits:
    return _built_scenes(data_dir)


@functools.cache  # the same scenes every time: built once a process (a run, its page, a test)
def _built_scenes(data_dir: Path | None) -> Splits:
    fashion = get_dataset("fashion-mnist", data_dir)
    pages = texture_pages()
    parts = {}
    for seed, (split, count) in enumerate(SCENE_COUNTS.items()):
        lo, hi = TEXTURE_ROWS[split]
        source = getattr(fashion, split)
        parts[split] = build_scenes(source.inputs, source.targets,
                                    [page[lo:hi] for page in pages.values()], count,
                                    seed=SPLIT_SEED + seed)  # fmt: skip
    return mask_splits(
        "fashion-scenes",
        f"built: {fashion.name} ({fashion.source}) on scikit-image's {', '.join(TEXTURES)}",
        parts,
        ["background", *KINDS],
    )


# -- folders of images and masks -------------------------------------------------------------------
def read_pairs(
    images: Path, masks: Path, *, values: dict[int, int] | None = None, classes: int | None = None
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Every image in `images` with the mask of the same stem in `masks`: the images as uint8
    "h w" (grey) or "h w 3", the masks as class indices (`values` maps pixel values to classes).
    Raises DataUnavailable with the fix for a missing or misfit mask or a value out of range."""
    from PIL import Image

    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataUnavailable(f"no images in {images} (PNG, JPEG, TIFF…): put them there")
    found = {p.stem: p for p in masks.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pixels, labels, stems = [], [], []
    for path in files:
        if path.stem not in found:
            raise DataUnavailable(f"{path.name} has no mask in {masks}: add {path.stem}.png there")
        image = Image.open(path)
        grey = image.mode in ("L", "I;16", "1")
        picture = np.asarray(image.convert("L" if grey else "RGB"))
        mask = np.asarray(Image.open(found[path.stem]).convert("L")).astype(np.int64)
        if mask.shape != picture.shape[:2]:
            raise DataUnavailable(
                f"mask {found[path.stem].name} is {mask.shape[1]}×{mask.shape[0]} but "
                f"{path.name} is {picture.shape[1]}×{picture.shape[0]}: a mask must match its "
                "image pixel for pixel"
            )
        if values is not None:
            unknown = sorted(set(np.unique(mask).tolist()) - set(values))
            if unknown:
                raise DataUnavailable(
                    f"mask {found[path.stem].name} holds the value {unknown[0]}, which is none "
                    f"of {sorted(values)}: give each pixel one of those values"
                )
            mask = np.vectorize(values.__getitem__)(mask)
        if classes is not None and mask.max() >= classes:
            raise DataUnavailable(
                f"mask {found[path.stem].name} holds the class {mask.max()}, outside the "
                f"{classes} classes of classes.txt: give each pixel a class index 0…{classes - 1}"
            )
        pixels.append(picture)
        labels.append(mask)
        stems.append(path.stem)
    return pixels, labels, stems


def same_size(
    pixels: list[np.ndarray], labels: list[np.ndarray], side: int
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs stacked; images of several sizes are resized to side × side first (bilinear
    for the image, nearest for the mask, whose values are classes, not intensities)."""
    from PIL import Image

    if len({p.shape for p in pixels}) == 1:
        return np.stack(pixels), np.stack(labels)
    resized = [np.asarray(Image.fromarray(p).resize((side, side), Image.Resampling.BILINEAR))
               for p in pixels]  # fmt: skip
    masks = [np.asarray(Image.fromarray(m.astype(np.uint8)).resize(
        (side, side), Image.Resampling.NEAREST)) for m in labels]  # fmt: skip
    return np.stack(resized), np.stack(masks).astype(np.int64)


def shuffled_parts(
    images: np.ndarray, masks: np.ndarray, fractions: tuple[float, float] = (0.15, 0.15)
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A seeded split into train, validation and test (the same for every run)."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    n_val = max(1, round(fractions[0] * len(images)))
    n_test = max(1, round(fractions[1] * len(images)))
    if len(images) < n_val + n_test + 1:
        raise DataUnavailable(f"{len(images)} image(s) cannot make a train, validation and test "
                              "split: give at least 3")  # fmt: skip
    pick = {"validation": order[:n_val], "test": order[n_val : n_val + n_test],
            "train": order[n_val + n_test :]}  # fmt: skip
    return {name: (images[i], masks[i]) for name, i in pick.items()}


FOLDER_SIDE = 256  # images of several sizes are resized to this


@register(
    "mask-folder",
    "your own: data_dir= with images/ and masks/ (same file names; mask pixel = class index)",
)
def load_mask_folder(data_dir: Path | None = None) -> Splits:
    if data_dir is None or not (data_dir / "images").is_dir() or not (data_dir / "masks").is_dir():
        raise DataUnavailable(
            "mask-folder needs data_dir=FOLDER holding images/ and masks/ (a PNG mask of the same "
            "name per image, each pixel a class index; optional classes.txt, one name a line)"
        )
    names_file = data_dir / "classes.txt"
    names = names_file.read_text().split("\n") if names_file.is_file() else None
    names = [n.strip() for n in names if n.strip()] if names else None
    pixels, labels, _ = read_pairs(data_dir / "images", data_dir / "masks",
                                   classes=len(names) if names else None)  # fmt: skip
    images, masks = same_size(pixels, labels, FOLDER_SIDE)
    if names is None:
        found = np.unique(masks)
        if set(found.tolist()) == {0, 255}:  # a black-and-white mask: background and object
            masks = (masks == 255).astype(np.int64)
        elif found.max() > 32:
            raise DataUnavailable(
                f"the masks hold values up to {found.max()}: give each pixel a class index "
                "(0, 1, 2…), or black and white (0, 255) for two classes, and name the classes "
                "in classes.txt"
            )
        names = [f"class {c}" for c in range(int(masks.max()) + 1)]
    return mask_splits("mask-folder", f"folder {data_dir}", shuffled_parts(images, masks), names)


ISBI_SPLIT = {"train": range(0, 21), "validation": range(21, 24), "test": range(24, 30)}


@register(
    "isbi-membrane",
    "ISBI 2012 EM stack (the U-Net paper's), 30 × 512²: data_dir= with image/ and label/",
)
def load_isbi_membrane(data_dir: Path | None = None) -> Splits:
    if data_dir is None or not (data_dir / "image").is_dir():
        raise DataUnavailable(
            "isbi-membrane needs data_dir=FOLDER holding image/N.png and label/N.png, the ISBI "
            "2012 training stack (https://imagej.net/events/isbi-2012-segmentation-challenge)"
        )
    # the label images are white (255) inside cells, black (0) on membranes
    pixels, labels, stems = read_pairs(data_dir / "image", data_dir / "label",
                                       values={0: 0, 255: 1})  # fmt: skip
    by_number = {int(s): (p, m) for s, p, m in zip(stems, pixels, labels, strict=True)
                 if s.isdigit()}  # fmt: skip
    parts = {}
    for split, numbers in ISBI_SPLIT.items():
        missing = [n for n in numbers if n not in by_number]
        if missing:
            raise DataUnavailable(f"isbi-membrane: image/{missing[0]}.png is missing from "
                                  f"{data_dir}: the stack has 30 images, 0…29")  # fmt: skip
        images, masks = zip(*(by_number[n] for n in numbers), strict=True)
        parts[split] = (np.stack(images), np.stack(masks))
    return mask_splits("isbi-membrane", f"folder {data_dir}", parts, ["membrane", "cell"])


# -- Oxford-IIIT Pet: torchvision downloads it --------------------------------------------------
PET_SIDE = 128


@register(
    "oxford-iiit-pet",
    "Oxford-IIIT Pet trimaps at 128²: torchvision downloads it online, or data_dir= its folder",
)
def load_oxford_pet(data_dir: Path | None = None) -> Splits:
    from PIL import Image
    from torchvision.datasets import OxfordIIITPet

    from deepscape.models.pretrained import cache_dir

    root = data_dir or cache_dir() / "datasets"
    loaded = {}
    for split in ("trainval", "test"):
        try:
            loaded[split] = OxfordIIITPet(
                str(root), split=split, target_types="segmentation", download=data_dir is None
            )
        except (RuntimeError, OSError) as error:
            raise DataUnavailable(
                f"oxford-iiit-pet could not be read or downloaded ({type(error).__name__}): go "
                "online (torchvision fetches ~800 MB), or data_dir=FOLDER holding "
                "oxford-iiit-pet/images and oxford-iiit-pet/annotations"
            ) from None
    arrays = {}
    for split, data in loaded.items():
        images, masks = [], []
        for i in range(len(data)):  # each photo shrunk as it is read: 7,349 at full size take GBs
            image, trimap = data[i]
            images.append(np.asarray(image.convert("RGB").resize(
                (PET_SIDE, PET_SIDE), Image.Resampling.BILINEAR)))  # fmt: skip
            # trimap values: 1 pet, 2 background, 3 the uncertain border
            masks.append(np.asarray(trimap.resize((PET_SIDE, PET_SIDE), Image.Resampling.NEAREST),
                                    dtype=np.int64) - 1)  # fmt: skip
        arrays[split] = (np.stack(images), np.stack(masks))
    train_images, train_masks = arrays["trainval"]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(train_images))
    held = order[: len(order) // 10]
    kept = order[len(order) // 10 :]
    parts = {
        "train": (train_images[kept], train_masks[kept]),
        "validation": (train_images[held], train_masks[held]),
        "test": arrays["test"],
    }
    return mask_splits("oxford-iiit-pet", f"torchvision, {root}", parts,
                       ["pet", "background", "border"])  # fmt: skip
