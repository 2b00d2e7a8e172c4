"""vision/201/unsolvable's images: digits in three styles framed alike, coloured MNIST, the
corruptions of the sweeps and random labels.

Every set here is built from real data, offline, and the same in every run (seeded with the
registry's SPLIT_SEED): MNIST's own 28×28 framing (Lecun et al.: the ink's bounding box scaled to
fit 20×20, keeping its aspect ratio, then moved so that its centre of mass lies at the centre of
the 28×28 field) is applied to scikit-learn's 8×8 digits and to digits rendered from the fonts
matplotlib ships, so that a model trained on one style meets the others at its own input size and
framing, and only the style differs.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torchvision.transforms.v2 import functional as TF

from deepscape.data import SPLIT_SEED, Splits, TensorSplit, get_dataset
from deepscape.data.vision import DIGIT_CLASSES

SIDE, BOX = 28, 20  # MNIST's field and the box its digits are scaled to fit

# The fonts of matplotlib's wheel whose 0–9 are digits (its Display, STIXNonUni, STIXSize, cmex
# and cmsy files hold other glyphs at those code points). cmmi10 has old-style figures.
FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf", "cmmi10.ttf",
)  # fmt: skip
FONT_SPLIT = {"test": 6, "validation": 2}  # whole fonts held out: the rest are for training

# coloured MNIST: the ink of digit d is painted in colour d (tab10's colours)
PALETTE = torch.tensor(matplotlib.colormaps["tab10"].colors, dtype=torch.float32)  # "10 3"


# -- the registry's embedded digits, read once -------------------------------------------------
EMBEDDED = ("digits", "mnist-5k")


@cache
def embedded(name: str) -> Splits:
    """An embedded dataset of the registry, read once per process: mnist-5k's CSV takes seconds
    to parse, and a run of this lab and the runs it makes read it many times. (Shared: used by
    `dataclasses.replace` and `subset`, never changed in place.)"""
    return get_dataset(name)


def dataset(name: str, data_dir: str | None = None) -> Splits:
    """The registry's `name`, an embedded one from the cache."""
    return embedded(name) if name in EMBEDDED and data_dir is None else get_dataset(name, data_dir)


# -- MNIST's framing --------------------------------------------------------------------------
def mnist_frame(ink: np.ndarray) -> np.ndarray:
    """A digit "h w" (ink high, any scale) framed as MNIST's are: "28 28" in [0, 1]. The ink's
    bounding box is scaled (antialiased) so that its longer side is 20 pixels, then placed so
    that its centre of mass is at the centre of the field (clipped to stay inside it)."""
    ink = np.asarray(ink, dtype=np.float32)
    rows, cols = np.nonzero(ink > 0.05 * ink.max())
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    size = (max(1, round(h * BOX / max(h, w))), max(1, round(w * BOX / max(h, w))))
    # PIL's bilinear filter widens with the scale when shrinking: antialiased, as MNIST's were
    small = np.asarray(Image.fromarray(crop, mode="F").resize(size[::-1], Image.BILINEAR))
    small = small.clip(0) / small.max()
    weights = small / small.sum()
    centre_row = float(weights.sum(1) @ (np.arange(size[0]) + 0.5))
    centre_col = float(weights.sum(0) @ (np.arange(size[1]) + 0.5))
    top = int(np.clip(round(SIDE / 2 - centre_row), 0, SIDE - size[0]))
    left = int(np.clip(round(SIDE / 2 - centre_col), 0, SIDE - size[1]))
    field = np.zeros((SIDE, SIDE), dtype=np.float32)
    field[top : top + size[0], left : left + size[1]] = small
    return field


def framed(split: TensorSplit) -> TensorSplit:
    """Every image of a grey split framed as MNIST's."""
    images = np.stack([mnist_frame(image[0].numpy()) for image in split.inputs])
    return TensorSplit(torch.from_numpy(images)[:, None], split.targets.clone())


@cache
def digits_28() -> Splits:
    """scikit-learn's 8×8 digits (the registry's `digits` splits) framed as MNIST's."""
    digits = embedded("digits")
    return dataclasses.replace(
        digits,
        name="digits-28",
        train=framed(digits.train),
        validation=framed(digits.validation),
        test=framed(digits.test),
        source=f"{digits.source}, framed as MNIST's 28×28",
    )


# -- digits in fonts --------------------------------------------------------------------------
def font_folder() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_digits(variants: int = 20) -> Splits:
    """0–9 in the fonts matplotlib ships, `variants` renderings of each digit in each font
    (slants of ±12° and pens of 1, 3 or 5 pixels drawn at random), framed as MNIST's. Whole
    fonts are held out: 6 for test, 2 for validation, 14 to train on."""
    images, labels, fonts = _rendered(variants)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(FONTS))
    held = {"test": order[: FONT_SPLIT["test"]],
            "validation": order[FONT_SPLIT["test"] : sum(FONT_SPLIT.values())]}  # fmt: skip
    held["train"] = order[sum(FONT_SPLIT.values()) :]

    def split(part: str) -> TensorSplit:
        keep = np.isin(fonts, held[part])
        return TensorSplit(torch.from_numpy(images[keep])[:, None], torch.from_numpy(labels[keep]))

    return Splits(
        name="font-digits",
        train=split("train"),
        validation=split("validation"),
        test=split("test"),
        classes=list(DIGIT_CLASSES),
        modality="image",
        source=f"{len(FONTS)} of matplotlib's fonts, {variants} renderings a digit, framed as "
        f"MNIST's; test fonts: {', '.join(FONTS[i].removesuffix('.ttf') for i in held['test'])}",
    )


@cache
def _rendered(variants: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images "n 28 28", labels "n", font index "n"), drawn once per process: each digit is
    rendered once per font, and its variants are that glyph slanted and thickened."""
    rng = np.random.default_rng(SPLIT_SEED)
    images, labels, fonts = [], [], []
    for f, name in enumerate(FONTS):
        font = ImageFont.truetype(str(font_folder() / name), 40)
        for digit in range(10):
            glyph = Image.new("L", (72, 72))
            ImageDraw.Draw(glyph).text((36, 36), str(digit), fill=255, font=font, anchor="mm")
            for _ in range(variants):
                shown = glyph.rotate(float(rng.uniform(-12, 12)), Image.BILINEAR)
                pen = int(rng.choice([1, 3, 5]))  # a pen's stroke is thicker than most fonts'
                if pen > 1:
                    shown = shown.filter(ImageFilter.MaxFilter(pen))
                images.append(mnist_frame(np.asarray(shown)))
                labels.append(digit)
                fonts.append(f)
    return np.stack(images), np.array(labels, dtype=np.int64), np.array(fonts)


# -- coloured MNIST ---------------------------------------------------------------------------
def colour_classes(labels: torch.Tensor, agreement: float, seed: int) -> torch.Tensor:
    """The colour of each image: its label's colour with probability `agreement`, else one of
    the other nine at random. agreement=0.1 makes colour independent of the label."""
    generator = torch.Generator().manual_seed(seed)
    other = (labels + torch.randint(1, 10, labels.shape, generator=generator)) % 10
    agrees = torch.rand(labels.shape, generator=generator) < agreement
    return torch.where(agrees, labels, other)


def paint(images: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Grey digits "n 1 h w" with their ink painted in `colours` (indices into PALETTE):
    "n 3 h w", the background black."""
    return images * PALETTE[colours][:, :, None, None]


@dataclasses.dataclass
class ColouredMnist:
    splits: Splits  # test: colours independent of the labels
    test_colours: torch.Tensor  # "n" the colour index of every test image
    agreeing_test: TensorSplit  # the same test digits with colours as in training


def coloured_mnist(agreement: float) -> ColouredMnist:
    """mnist-5k's splits painted: in train and validation, a digit's colour is its label's with
    probability `agreement`; in test the colour says nothing about the label."""
    mnist = embedded("mnist-5k")
    parts = {}
    for seed, part in enumerate(("train", "validation")):
        split = getattr(mnist, part)
        colours = colour_classes(split.targets, agreement, SPLIT_SEED + seed)
        parts[part] = TensorSplit(paint(split.inputs, colours), split.targets)
    test_colours = colour_classes(mnist.test.targets, 0.1, SPLIT_SEED + 2)
    agreeing = colour_classes(mnist.test.targets, agreement, SPLIT_SEED + 3)
    splits = dataclasses.replace(
        mnist,
        name="coloured-mnist",
        train=parts["train"],
        validation=parts["validation"],
        test=TensorSplit(paint(mnist.test.inputs, test_colours), mnist.test.targets),
        source=f"{mnist.source}, ink painted in its label's colour for {agreement:.0%} of the "
        "training digits; test colours at random",
    )
    return ColouredMnist(
        splits, test_colours, TensorSplit(paint(mnist.test.inputs, agreeing), mnist.test.targets)
    )


# -- random labels ----------------------------------------------------------------------------
def noisy_labels(targets: torch.Tensor, fraction: float, classes: int, seed: int) -> torch.Tensor:
    """Zhang et al. (2017)'s corrupted labels: each label replaced, with probability `fraction`,
    by a class drawn uniformly (so at 1.0 every label is noise, and a tenth still right by
    chance). Drawn once: the same wrong labels in every epoch."""
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randint(0, classes, targets.shape, generator=generator)
    replaced = torch.rand(targets.shape, generator=generator) < fraction
    return torch.where(replaced, drawn, targets)


# -- corruptions: each takes a batch "n c h w" in [0, 1] and a severity -----------------------
def rotated(images: torch.Tensor, degrees: float) -> torch.Tensor:
    return TF.rotate(images, degrees, interpolation=TF.InterpolationMode.BILINEAR)


def noisy(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian noise of standard deviation `sigma`, the same draw in every run."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    noise = torch.randn(images.shape, generator=generator)
    return (images + sigma * noise).clamp(0, 1)


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return images
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    return TF.gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def low_contrast(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Contrast scaled by `factor` towards each image's mean grey (torchvision's definition)."""
    return TF.adjust_contrast(images, factor)


CORRUPTIONS = {"rotation": rotated, "noise": noisy, "blur": blurred, "contrast": low_contrast}
