"""vision/201/segmentation — a class for every pixel: the U-Net, Dice, and intersection over union.

Classification gives an image one label; segmentation gives every pixel one. The U-Net
(Ronneberger et al. 2015), written out below, is an encoder that halves the image and doubles its
channels level after level — what is in the picture — and a decoder that doubles it back with
transposed convolutions, each level concatenated with the encoder's output of the same size
through a skip connection — where exactly it is. A 1×1 convolution at the end gives every pixel
its class scores, and the loss is the cross-entropy of every pixel.

The background fills most pixels, so a net that calls everything background already scores a
high pixel accuracy. Two things keep it honest: the soft Dice loss (Milletari et al. 2016; in
the core's `tasks.Segmentation`), which weighs every class the same however few its pixels, and
the metrics, from torchmetrics through the registry: IoU = |predicted ∩ true| / |predicted ∪
true| per class, mean IoU (mIoU) over the classes, and Dice = 2|P ∩ T| / (|P| + |T|).
Augmentation must move the mask with its image (`data.augment.PairedFlips`, `PairedCrop`).

The default data is built from real data, offline: Fashion-MNIST items (grouped into top,
trouser, footwear, bag) pasted onto scikit-image's photographed brick, grass and gravel at random
places, scales and contrasts, so every mask is exact — a built scene, not a photograph. The
U-Net paper's own data is the ISBI 2012 electron-microscopy stack (30 images of 512², membranes
against cell interiors; images 24–29 held out for test). Beside the net, the classical answer on
the same split: Otsu's threshold and a morphological clean-up, each chosen on the training
images — no learning, and where it fails is the lesson.

`encoder=efficientnet-lite0` puts timm's ImageNet-pretrained EfficientNet-Lite0
(`features_only`: its outputs at 1/2 … 1/32 of the image) in the encoder's place, and keeps the
U-Net's decoder. `deepscape serve RUN` shows an uploaded image with its predicted mask.

Measured alone on 2 cores (docs/benchmarks.md): the default, a U-Net 12 channels wide over 4
levels for 16 epochs, reached a test mIoU of 0.866 in 9.5 minutes of training (IoU: background
0.99, top 0.81, trouser 0.83, footwear 0.90, bag 0.81); on EfficientNet-Lite0's features, 0.854
in 11.7. The threshold found the items with an IoU of 0.23 against the net's 0.96: finding the
items is easy, telling their kinds apart is what takes the epochs. 16 channels for 12 epochs
gave 0.834 (beside other jobs). Before every kind came equally often, a bag (one Fashion-MNIST
class against a top's five) reached an IoU of 0.39 and was mostly called a top. On the ISBI
membranes, 600 steps of four 256² crops (4.7 minutes) gave a membrane IoU of 0.677 against the
threshold's 0.454, and 92.3 % of the pixels right.

    deepscape run vision/201/segmentation                      # built scenes, U-Net from scratch
    deepscape run vision/201/segmentation encoder=efficientnet-lite0
    deepscape run vision/201/segmentation dataset=isbi-membrane data_dir=isbi-membrane \\
        crop=256 batch_size=4 max_steps=600 eval_every=100
    deepscape run vision/201/segmentation dataset=mask-folder data_dir=FOLDER   # images/, masks/
    deepscape serve RUN
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchmetrics.functional.classification import multiclass_jaccard_index
from torchvision.transforms import v2

from deepscape import figures
from deepscape.config import ConfigError, TrainConfig, option
from deepscape.costs import parameters
from deepscape.data import Splits, TensorSplit, get_dataset
from deepscape.data.augment import PairedCrop, PairedFlips
from deepscape.inside import load_weights
from deepscape.labs.vision import l201_segmentation_figures as drawn
from deepscape.labs.vision.l201_segmentation_baseline import (
    OtsuBaseline,
    binary_iou,
    per_image_iou,
    rare_class,
)
from deepscape.models.vision import Standardize
from deepscape.runs import Run
from deepscape.serve import BadImage
from deepscape.serve_image import array_to_pil, image_page
from deepscape.tasks import Segmentation
from deepscape.train import Trainer


@dataclass
class Config(TrainConfig):
    # data
    dataset: Literal["fashion-scenes", "isbi-membrane", "mask-folder", "oxford-iiit-pet"] = option(
        "fashion-scenes", "built scenes (offline), the ISBI stack, your folder, or Oxford pets"
    )
    data_dir: str | None = option(None, "local copy (isbi-membrane, mask-folder: required)")
    train_images: int = option(0, "learn from the first this many training images (0: all)")
    crop: int = option(0, "train on random crops of this side (0: whole images)")
    # the U-Net
    encoder: Literal["scratch", "efficientnet-lite0"] = option(
        "scratch", "the U-Net's own encoder, or ImageNet-pretrained EfficientNet-Lite0 (timm)"
    )
    width: int = option(12, "channels of the first level (each level below doubles them)")
    levels: int = option(4, "times the encoder halves the image (scratch encoder)")
    encoder_lr_scale: float = option(0.1, "the pretrained encoder's LR, relative to the decoder's")
    dice_weight: float = option(1.0, "loss = pixel cross-entropy + this × soft Dice loss")
    baseline: bool = option(True, "measure Otsu's threshold + morphology on the same split")
    # training (overriding TrainConfig's defaults for this lab)
    epochs: int = option(16, "passes over the training images")
    batch_size: int = option(32, "images per optimisation step")
    lr: float = option(3e-3, "peak learning rate (AdamW)")
    weight_decay: float = option(1e-4, "decoupled weight decay")
    schedule: Literal["constant", "cosine", "onecycle"] = option(
        "onecycle", "learning-rate schedule over the whole run"
    )
    figures: bool = option(True, "draw the figures")


# -- 1. the U-Net, written out ------------------------------------------------------------------
def double_conv(channels_in: int, channels_out: int) -> nn.Sequential:
    """Two 3×3 convolutions, each followed by batch norm and ReLU: one level of the U-Net. The
    paper's convolutions were unpadded (its output smaller than its input); padded ones keep
    the mask the size of the image."""
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Down: a level, then 2×2 max-pooling, `levels` times; up: a 2×2 transposed convolution
    (doubling the side, halving the channels), the skip concatenated, a level. An image whose
    side is not a multiple of 2^levels is padded (reflected) and the mask cropped back."""

    def __init__(self, *, in_channels: int, num_classes: int, width: int = 16, levels: int = 4):
        super().__init__()
        widths = [width * 2**i for i in range(levels + 1)]
        self.multiple = 2**levels
        self.down = nn.ModuleList(
            [double_conv(in_channels, widths[0])]
            + [double_conv(widths[i], widths[i + 1]) for i in range(levels)]
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(levels))
        )
        self.merge = nn.ModuleList(
            double_conv(2 * widths[i], widths[i]) for i in reversed(range(levels))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w" -> "b classes h w"
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        skips = []
        for i, level in enumerate(self.down):
            x = level(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()  # the bottom of the U: no skip of its own
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)[..., :h, :w]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    bottom, right = -h % multiple, -w % multiple
    if not (bottom or right):
        return x
    mode = "reflect" if bottom < h and right < w else "replicate"
    return F.pad(x, (0, right, 0, bottom), mode=mode)


class PretrainedUNet(nn.Module):
    """EfficientNet-Lite0's ImageNet features (timm `features_only`, at 1/2 … 1/32) as the
    encoder; the decoder upsamples (bilinear) and merges each skip with a level as above, the
    last level at full size taking the image itself as its skip. Grey images are repeated into
    the three channels the encoder was trained on."""

    def __init__(self, *, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        import timm

        from deepscape.models.pretrained import DEFAULT_MODEL, load_backbone

        backbone = load_backbone(DEFAULT_MODEL)
        self.encoder = timm.create_model(DEFAULT_MODEL, features_only=True, pretrained=False)
        missing = self.encoder.load_state_dict(backbone.state_dict(), strict=False).missing_keys
        if missing:
            raise RuntimeError(f"the pretrained weights lack {missing[:3]}…")
        config = backbone.pretrained_cfg
        self.register_buffer("mean", torch.tensor(config["mean"]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config["std"]).reshape(1, 3, 1, 1))
        self.in_channels = in_channels
        skips = [3, *self.encoder.feature_info.channels()]  # the image, then 1/2 … 1/32
        self.merge = nn.ModuleList()
        below = skips[-1]
        for i in reversed(range(len(skips) - 1)):
            out = max(width, skips[i]) if i else width
            self.merge.append(double_conv(below + skips[i], out))
            below = out
        self.head = nn.Conv2d(width, num_classes, 1)
        self.multiple = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        skips = [x, *self.encoder(x)]
        y = skips.pop()
        for merge in self.merge:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = merge(torch.cat([skip, y], dim=1))
        return self.head(y)[..., :h, :w]


def model_for(config: Config, data: Splits) -> nn.Module:
    channels, classes = data.train.inputs.shape[1], len(data.classes)
    if config.encoder == "efficientnet-lite0":
        return PretrainedUNet(in_channels=channels, num_classes=classes, width=config.width)
    unet = UNet(in_channels=channels, num_classes=classes, width=config.width, levels=config.levels)
    return nn.Sequential(Standardize.of(data.train.inputs), unet)


# -- 2. the lesson ------------------------------------------------------------------------------
def run(config: Config, run: Run) -> dict[str, Any]:
    data = load(config)
    run.update_summary(data={"name": data.name, "source": data.source, "classes": data.classes,
                             **data.sizes})  # fmt: skip
    model = model_for(config, data)
    run.update_summary(costs={"parameters": parameters(model)})

    square = data.train.inputs.shape[-1] == data.train.inputs.shape[-2]
    moves = [PairedFlips(vertical=config.dataset != "oxford-iiit-pet", turns=square)]
    if config.crop:
        moves.insert(0, PairedCrop(config.crop))
    task = Segmentation(len(data.classes), dice_weight=config.dice_weight,
                        augment=v2.Compose(moves))  # fmt: skip
    trainer = Trainer(config, run, task=task)
    scales = {"encoder.": config.encoder_lr_scale} if config.encoder != "scratch" else None
    model = trainer.fit(model, data.train, data.validation, lr_scales=scales)

    # the test split: the registry's metrics streamed, then every mask for the figures
    test = trainer.evaluate(model, data.test)
    predicted = predict_masks(model, data.test)
    truth = data.test.targets
    per_class = multiclass_jaccard_index(predicted, truth, len(data.classes), average="none")
    iou = {name: float(v) for name, v in zip(data.classes, per_class, strict=True)}
    objects = rare_class(data.train.targets)
    found = torch.isin(predicted, torch.tensor(objects))
    metrics: dict[str, Any] = {
        **{f"test_{k}": v for k, v in test.items()},
        **{f"test_iou_{name}": v for name, v in iou.items()},
        "test_object_iou": binary_iou(found, torch.isin(truth, torch.tensor(objects))),
        "train_seconds": run.evaluations()[-1]["seconds"],
    }
    baseline_iou = None
    if config.baseline:
        metrics.update(classical(run, data, objects))
        metrics["object_iou_lead"] = metrics["test_object_iou"] - metrics["baseline_object_iou"]
        if len(data.classes) == 2:  # object and background are the two classes: comparable
            named, other = data.classes[objects[0]], data.classes[1 - objects[0]]
            baseline_iou = {named: metrics["baseline_object_iou"],
                            other: metrics["baseline_background_iou"]}  # fmt: skip
    if config.figures:
        title = f"U-Net ({config.encoder}) on {data.name}"
        figures.training_curves(run, title=f"{title}: training curves")
        images_iou = per_image_iou(predicted, truth, len(data.classes))
        drawn.worst_first(run, data.test.inputs, truth, predicted, images_iou, data.classes)
        drawn.iou_per_class(run, iou, data.classes, baseline_iou)
    return metrics


def load(config: Config) -> Splits:
    data = get_dataset(config.dataset, config.data_dir)
    if 0 < config.train_images < len(data.train):
        data = dataclasses.replace(data, train=data.train.subset(range(config.train_images)))
    side = min(data.train.inputs.shape[-2:])
    if config.crop and config.crop > side:
        raise ConfigError(
            f"crop={config.crop} is larger than the {side}-pixel images of {data.name}: give "
            f"crop={side} or less (0: whole images)"
        )
    return data


@torch.inference_mode()
def predict_masks(model: nn.Module, split: TensorSplit, *, batch: int = 16) -> torch.Tensor:
    """ "n h w": each test pixel's likeliest class."""
    model.eval()
    return torch.cat([model(x).argmax(1) for x in split.inputs.split(batch)])


def classical(run: Run, data: Splits, objects: list[int]) -> dict[str, float]:
    """Otsu's threshold + morphology on the test split, tuned on training images."""
    baseline = OtsuBaseline(data.train, objects)
    found = baseline.predict(data.test.inputs)
    truth = baseline.binary(data.test.targets)
    run.update_summary(baseline=baseline.describe())
    return {
        "baseline_object_iou": binary_iou(found, truth),
        "baseline_background_iou": binary_iou(~found, ~truth),
        "baseline_pixel_accuracy": float((found == truth).mean()),
    }


# -- 3. serving: an uploaded image with its mask -------------------------------------------------
def page_for(run: Run) -> gr.Blocks:
    config = run.config_as(Config)
    miou = run.summary.get("metrics", {}).get("test_miou")
    shown = f"test mIoU {miou:.2%}" if miou is not None else "not finished"
    respond, classes = masker(run)
    intro = (f"A U-Net ({config.encoder}) trained on {config.dataset} ({shown}); classes: "
             f"{', '.join(classes)}. Upload an image to see its mask.")  # fmt: skip
    return image_page(run, intro=intro, shown=["your image", "predicted mask", "overlay"],
                      respond=respond)  # fmt: skip


def masker(run: Run) -> tuple[Callable[[Image.Image], tuple[list[Image.Image], str]], list[str]]:
    """What the page does to an uploaded image (its mask, in colour and over the image), and
    the class names; BadImage for an image too small to mask."""
    config = run.config_as(Config)
    data = get_dataset(config.dataset, config.data_dir)
    model = model_for(config, data)
    load_weights(run, model)
    model.eval()
    channels, side = data.train.inputs.shape[1], max(data.train.inputs.shape[-2:])
    colours = drawn.class_colours(len(data.classes))
    palette = np.array([colours(c)[:3] for c in range(len(data.classes))])

    def respond(image: Image.Image) -> tuple[list[Image.Image], str]:
        if min(image.size) < 16:
            raise BadImage(f"the image is {image.width}×{image.height}: send one at least 16 "
                           "pixels a side")  # fmt: skip
        if max(image.size) > 4 * side:  # the model learnt objects at its training scale
            image = image.copy()
            image.thumbnail((4 * side, 4 * side))
        mode = "L" if channels == 1 else "RGB"
        pixels = torch.as_tensor(np.asarray(image.convert(mode), dtype=np.float32) / 255)
        x = pixels[None, None] if channels == 1 else pixels.permute(2, 0, 1)[None]
        with torch.inference_mode():
            mask = model(x).argmax(1)[0].numpy()
        grey = np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255
        blend = 0.5 * grey + 0.5 * palette[mask]
        shares = np.bincount(mask.ravel(), minlength=len(data.classes)) / mask.size
        said = " · ".join(f"{name} {share:.0%}" for name, share in
                          zip(data.classes, shares, strict=True))  # fmt: skip
        return [image.convert("RGB"), array_to_pil(palette[mask]), array_to_pil(blend)], said

    return respond, data.classes
