"""vision/201/architectures — the ladder of image classifiers, and what each rung bought.

Five families, each trained here from scratch on the same images for the same number of epochs,
each with its own short recipe (optimizer, LR, batch size), and each weighed the same way in the
same run: parameters, FLOPs of one forward pass, CPU latency at batch 1 and 64, test accuracy.
- lenet: LeNet-5 (1998), written here: two 5×5 convolutions with average-pool subsampling, tanh,
  three fully connected layers. 60 thousand parameters.
- vgg: VGG's recipe — only 3×3 convolutions, pooling halves the image, channels grow — as the
  fastest known small CNN for CIFAR-10 (objects10's model=fast, airbench94).
- resnet: the CIFAR ResNet of He et al. (2016), 6n+2 layers, whose basic block is written here:
  y = relu(f(x) + x). The block learns a correction to its input, so depth costs nothing at the
  start, and the gradient reaches early layers through the additions unchanged.
- mobilenet: timm's MobileNetV2 — inverted residuals: a 1×1 convolution widens 6×, a depthwise
  3×3 filters each channel alone (9 multiply-adds per value instead of 9·C), a 1×1 narrows back.
  Its second stage keeps the resolution, so 32×32 images end at 2×2, not 1×1.
- vit: timm's VisionTransformer on 4×4 patches (64 tokens of a 32×32 image), 6 blocks of 192.
arch=ladder trains all five as runs of this lab, then tables them and draws accuracy against FLOPs
and against latency (figures/frontier.png), with two ImageNet models measured beside them at
their 224×224 input: torchvision's MobileNetV2 and EfficientNet-Lite0 (offline weights). They are
not trained on these images, so they stand as costs only, and their top-5 on scikit-learn's two
photos is recorded: the temple is a palace for both; the flower is a daisy for Lite0, while
MobileNetV2, shown the flower's heart by torchvision's centre crop, calls it a honeycomb (daisy
9th).

Measured here (docs/benchmarks.md, 2 cores): at 2 epochs a rung the vgg rung leads on both
datasets, 90.9 % on Fashion-MNIST and 75.9 % on CIFAR-10, where MobileNetV2 starts slowest (35.8 %,
30 % on its own training images). The map's target, 91 % on the CIFAR-10 copy within 15 minutes
of training, takes the vgg rung's speed run: airbench94's alternating flips and triangle LR
(alternate_flips=true schedule=triangle momentum=0.85), all 50,000 training images
(train_on_validation=true: the recipe's final run), test-time flips and shifts, 13 epochs:
90.94 % in 14.2 minutes of training (14 epochs: 91.17 % in 15.8), on an EPYC with AVX512-BF16
(bf16). The earlier recipe (random flips, one-cycle, 45,000 images) reached 90.31 % in 15.1
minutes at 15 epochs. Both halves of the target are in reach; in one run they have not yet been
met together.

arch=degradation repeats He et al.'s figure 1: the same net with and without its shortcuts, at
20 and 56 layers. Without shortcuts the deeper net fits its own training images worse — an
optimisation problem, not overfitting (figures/degradation.png, training error by epoch).

    deepscape run vision/201/architectures                        # the ladder, Fashion-MNIST
    deepscape run vision/201/architectures arch=resnet depth=56   # one rung
    deepscape run vision/201/architectures arch=ladder dataset=cifar10 data_dir=cifar10-images \
        epochs=2
    deepscape run vision/201/architectures arch=degradation train_fraction=0.1 epochs=4 \
        augment=none
    deepscape run vision/201/architectures arch=vgg dataset=cifar10 data_dir=cifar10-images \
        epochs=13 flip_average=true shift_average=true alternate_flips=true \
        schedule=triangle momentum=0.85 train_on_validation=true  # the best rung's speed run
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from deepscape import costs, figures
from deepscape.config import ConfigError, TrainConfig, closest, option
from deepscape.data import Splits, get_dataset
from deepscape.frontier import Point, frontier_figure
from deepscape.labs.vision import l101_objects10
from deepscape.models.pretrained import (
    PretrainedClassifier,
    PretrainedUnavailable,
    imagenet_classes,
    load_backbone,
    load_mobilenet_v2,
)
from deepscape.models.vision import Standardize, build_model
from deepscape.runs import Run
from deepscape.sweep import inherited, stage
from deepscape.tasks import classify
from deepscape.train import Trainer

LAB = "vision/201/architectures"
LADDER = ("lenet", "vgg", "resnet", "mobilenet", "vit")
ARCHS = (*LADDER, "plain")  # plain: the ResNet without its shortcuts
SPEED_RUN = {"optimizer": "sgd", "lr": 1.5, "weight_decay": 1.33e-3, "batch_size": 1024,
             "lookahead": True, "warmup": 0.23, "label_smoothing": 0.2}  # objects10's  # fmt: skip
RECIPES: dict[str, dict[str, Any]] = {  # what each family trains well with in a few epochs
    "lenet": {"optimizer": "adamw", "lr": 3e-3, "weight_decay": 5e-4, "batch_size": 128},
    "vgg": SPEED_RUN,
    "resnet": {"optimizer": "sgd", "lr": 0.2, "weight_decay": 5e-4, "batch_size": 256},
    "plain": {"optimizer": "sgd", "lr": 0.2, "weight_decay": 5e-4, "batch_size": 256},
    "mobilenet": {"optimizer": "sgd", "lr": 0.2, "weight_decay": 5e-4, "batch_size": 256},
    "vit": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "batch_size": 256},
}


@dataclass
class Config(TrainConfig):
    arch: str = option(
        "ladder",
        "lenet, vgg, resnet, mobilenet, vit, plain (resnet without shortcuts); ladder: the five, "
        "tabled; degradation: plain vs resnet at each of `depths`",
    )
    dataset: Literal["fashion-mnist", "cifar10"] = option("fashion-mnist", "which 10 objects")
    data_dir: str | None = option(None, "local copy: IDX files, or train/<class>/ test/<class>/")
    train_fraction: float = option(1.0, "share of the training split to learn from (0–1]")
    augment: Literal["none", "crop-flip", "strong"] = option(
        "crop-flip", "none; random crops and mirror images; strong = crop-flip + random erasing"
    )
    crop_padding: int = option(2, "pixels a random crop may shift an image each way")
    alternate_flips: bool = option(False, "mirror each image every other epoch, not at random")
    train_on_validation: bool = option(
        False, "train on the validation images too: a chosen recipe's final run"
    )
    # the rungs' sizes
    depth: int = option(20, "resnet / plain: weighted layers, 6n+2 (20, 32, 44, 56, 110)")
    width: int = option(16, "resnet / plain: channels of the first stage (then 2×, 4×)")
    depths: str = option("20,56", "degradation: the depths compared")
    widths: str = option("64-256-256", "vgg: channels of its three groups")
    patch_size: int = option(4, "vit: side of a patch, in pixels (must divide the image)")
    vit_dim: int = option(192, "vit: width of a token")
    vit_depth: int = option(6, "vit: transformer blocks")
    vit_heads: int = option(3, "vit: attention heads (must divide vit_dim)")
    flip_average: bool = option(False, "vgg: average each test image's logits with its mirror's")
    shift_average: bool = option(False, "vgg: also over copies moved by one pixel")
    # training: None takes the arch's recipe (RECIPES)
    epochs: int = option(2, "passes over the training split: the budget every rung gets")
    batch_size: int | None = option(None, "examples per step (default: the arch's recipe)")
    optimizer: Literal["sgd", "adamw"] | None = option(None, "sgd or adamw (default: recipe)")
    lr: float | None = option(None, "peak learning rate (default: the arch's recipe)")
    weight_decay: float | None = option(None, "decoupled weight decay (default: recipe)")
    warmup: float | None = option(None, "fraction of steps warming the LR up (default: 0.2)")
    label_smoothing: float | None = option(None, "cross-entropy label smoothing (default: 0.1)")
    lookahead: bool | None = option(None, "Lookahead weight averaging (default: vgg only)")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = option(
        "auto", "bf16 where the hardware has it (AVX512-BF16 or AMX CPUs, recent GPUs), else fp32"
    )
    figures: bool = option(True, "draw each run's figures")


def with_recipe(config: Config) -> Config:
    """`config` with every training option left at None taken from the arch's recipe."""
    recipe = {"warmup": 0.2, "label_smoothing": 0.1, "lookahead": False, **RECIPES[config.arch]}
    return dataclasses.replace(
        config, **{k: v for k, v in recipe.items() if getattr(config, k) is None}
    )


# -- the rungs written here: LeNet-5 and the residual block ----------------------------------------
class LeNet5(nn.Module):
    """LeCun et al. (1998), tanh and average pooling as drawn then (the last layer is linear,
    not the paper's radial basis functions). A 28×28 image is padded to the 32×32 it was drawn for:

        b c 32 32 → conv 5×5 → b 6 28 28 → pool → b 6 14 14 → conv 5×5 → b 16 10 10 → pool
        → b 16 5 5 → 120 → 84 → classes
    """

    def __init__(self, *, in_channels: int, num_classes: int, size: int):
        super().__init__()
        pad = max(0, (32 - size) // 2)
        side = ((size + 2 * pad - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        )  # fmt: skip
        self.classify = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.Tanh(),
            nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        return self.classify(self.features(x))


class StridedProjection(nn.Conv2d):
    """A 1×1 convolution with a stride, computed as every s-th pixel, then the 1×1 convolution:
    the same maths and parameters. Why not the strided kernel itself: in PyTorch 2.14 on the CPU,
    its backward on a channels-last batch of 2 or 4 channels crashes the process (double free in
    oneDNN; 3, 6 or 8 channels run), so `width=4` could not train."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b c' h/s w/s"
        step_h, step_w = self.stride
        return F.conv2d(x[:, :, ::step_h, ::step_w], self.weight, self.bias)


class BasicBlock(nn.Module):
    """He et al.'s basic block: y = relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)). Where the
    block halves the image and widens the channels, the shortcut is a strided 1×1 convolution
    (their option B, as torchvision's); elsewhere it is x itself. shortcut=False is their plain
    net: the same layers with nothing added back."""

    def __init__(self, c_in: int, c_out: int, *, stride: int = 1, shortcut: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module | None = None
        if shortcut:
            same = stride == 1 and c_in == c_out
            self.shortcut = nn.Identity() if same else nn.Sequential(
                StridedProjection(c_in, c_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out),
            )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b c' h/s w/s"
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """The CIFAR ResNet (He et al. 2016, section 4.2): a 3×3 stem, three stages of n basic blocks
    at width, 2·width and 4·width channels (each new stage halves the image), global average
    pooling and a linear classifier: 6n + 2 weighted layers."""

    def __init__(
        self, *, in_channels: int, num_classes: int, depth: int, width: int, shortcuts: bool
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"depth={depth} is not 6n+2 layers: use 20, 32, 44, 56 or 110")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(),
        ]  # fmt: skip
        channels = width
        for level, out in enumerate((width, 2 * width, 4 * width)):
            for block in range((depth - 2) // 6):
                stride = 2 if level > 0 and block == 0 else 1
                layers.append(BasicBlock(channels, out, stride=stride, shortcut=shortcuts))
                channels = out
        self.features = nn.Sequential(*layers)
        self.classify = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        return self.classify(self.features(x).mean((2, 3)))


# -- the rungs timm defines, sized for small images -----------------------------------------------
def mobilenet_v2(*, in_channels: int, num_classes: int) -> nn.Module:
    model = timm.create_model("mobilenetv2_100", num_classes=num_classes, in_chans=in_channels)
    # Built for 224 photos, it shrinks them 32× (to 7×7); a 32×32 image would end at 1×1. Its
    # first shrinking stage keeps the resolution here (16×: 2×2 at the end). CIFAR versions also
    # keep the stem's, for 4×4: 4× the FLOPs, and on 2 CPU cores 3× the time of the VGG rung.
    model.blocks[1][0].conv_dw.stride = (1, 1)
    return model


def vit(config: Config, *, in_channels: int, num_classes: int, size: int) -> nn.Module:
    if size % config.patch_size:
        fits = [str(p) for p in range(2, size // 2 + 1) if size % p == 0]
        raise ConfigError(
            f"patch_size={config.patch_size} does not divide the {size}×{size} images: use one "
            f"of {', '.join(fits)}"
        )
    if config.vit_dim % config.vit_heads:
        raise ConfigError(f"vit_heads={config.vit_heads} does not divide vit_dim={config.vit_dim}")
    return VisionTransformer(
        img_size=size, patch_size=config.patch_size, in_chans=in_channels,
        num_classes=num_classes, embed_dim=config.vit_dim, depth=config.vit_depth,
        num_heads=config.vit_heads,
    )  # fmt: skip


def check_arch(arch: str, known: tuple[str, ...] = (*ARCHS, "ladder", "degradation")) -> None:
    if arch not in known:
        raise ConfigError(f"arch={arch!r} is not one of {', '.join(known)}{closest(arch, known)}")


def model_for(config: Config, data: Splits) -> nn.Module:
    """The model a run with `config` trains, taking raw pixels (standardised inside)."""
    check_arch(config.arch, ARCHS)
    images, classes = data.train.inputs, len(data.classes)
    if config.arch == "vgg":
        return build_model(
            "fast", images=images, num_classes=classes,
            widths=l101_objects10.parse_widths(config.widths),
            flip_average=config.flip_average, shift_average=config.shift_average,
        )  # fmt: skip
    channels, size = images.shape[1], images.shape[-1]
    if config.arch == "lenet":
        net = LeNet5(in_channels=channels, num_classes=classes, size=size)
    elif config.arch in ("resnet", "plain"):
        net = ResNet(in_channels=channels, num_classes=classes, depth=config.depth,
                     width=config.width, shortcuts=config.arch == "resnet")  # fmt: skip
    elif config.arch == "mobilenet":
        net = mobilenet_v2(in_channels=channels, num_classes=classes)
    else:
        net = vit(config, in_channels=channels, num_classes=classes, size=size)
    return nn.Sequential(Standardize.of(images), net)


def run(config: Config, run: Run) -> dict[str, float]:
    check_arch(config.arch)
    if config.arch == "ladder":
        return ladder(config, run)
    if config.arch == "degradation":
        return degradation(config, run)
    return one_rung(with_recipe(config), run)


# -- one rung: train it, weigh it -----------------------------------------------------------------
def one_rung(config: Config, run: Run) -> dict[str, float]:
    data = get_dataset(config.dataset, config.data_dir).with_train_fraction(config.train_fraction)
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes})
    model = model_for(config, data)

    task = l101_objects10.photo_task(len(data.classes), augment=config.augment,
                                     padding=config.crop_padding,
                                     label_smoothing=config.label_smoothing,
                                     alternate_flips=config.alternate_flips)  # fmt: skip
    train = l101_objects10.training_photos(
        data, alternate_flips=config.alternate_flips, train_on_validation=config.train_on_validation
    )
    trainer = Trainer(config, run, task=task)
    run.update_summary(precision=trainer.precision, recipe=RECIPES[config.arch],
                       trained_on=len(train))  # fmt: skip
    # the norms' shifts learn 64× faster in the vgg rung's recipe (objects10's speed run)
    faster = 64.0 if config.arch == "vgg" else 1.0
    scales = {name: faster for name in l101_objects10.norm_shifts(model)}
    model = trainer.fit(model, train, data.validation, lr_scales=scales)
    test = classify(trainer, model, data.test)
    if config.figures:
        figures.training_curves(run, title=f"{config.arch} on {data.name}")
        figures.confusion_matrix(run, test.targets, test.predictions, data.classes)

    # the costs of the model as trained, measured here and now
    images = data.test.inputs
    last = run.evaluations()[-1]
    return {
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "train_accuracy": last["train_accuracy"],
        "train_loss": last["train_loss"],
        "train_seconds": last["seconds"],
        "parameters": costs.parameters(model),
        "flops": costs.forward_flops(model, images[:1]),
        "latency_b1_ms": costs.latency_ms(model, images[:1]),
        "latency_b64_ms": costs.latency_ms(model, images[:64], runs=10),
    }


# -- the ladder: every rung at the same budget, one table, one frontier ---------------------------
def ladder_items(config: Config) -> list[str]:
    """The ladder's sweep: every rung, everything else as in `config`. `depths` (degradation's
    list) stays out: its comma would make it a second axis of the sweep, each rung run twice."""
    return [*inherited(config, {"arch", "depths", "seed"}), f"arch={','.join(LADDER)}"]


def ladder(config: Config, run: Run) -> dict[str, float]:
    rungs = stage(run, "ladder", LAB, Config, ladder_items(config))
    table = {r.config["arch"]: r.summary["metrics"] for r in rungs if r.status == "finished"}
    if not table:
        raise RuntimeError(f"every rung of the ladder failed: see {run.dir.parent}")
    references = imagenet_references()
    run.update_summary(table=table, pretrained=references, equal_budget=f"{config.epochs} epochs")
    points = [Point(arch, m["test_accuracy"], m["flops"], m["latency_b1_ms"])
              for arch, m in table.items()]  # fmt: skip
    note = "ImageNet models at 224×224: costs only"
    shown = [Point(name, None, r["flops"], r["latency_b1_ms"], note)
             for name, r in references.items()]  # fmt: skip
    dataset = rungs[0].summary["data"]["name"]
    frontier_figure(run, points, references=shown,
                    title=f"The ladder on {dataset}, {config.epochs} epochs each")  # fmt: skip
    best = max(table, key=lambda arch: table[arch]["test_accuracy"])
    return {
        "test_accuracy": table[best]["test_accuracy"],
        **{f"{arch}_test_accuracy": m["test_accuracy"] for arch, m in table.items()},
    }


PHOTOS = ("china.jpg", "flower.jpg")  # scikit-learn's two photos: a temple, a flower


def imagenet_references() -> dict[str, dict[str, Any]]:
    """The offline ImageNet classifiers' costs at their 224×224 input, and their top-5 on the
    two photos (an ImageNet model that is not installed is left out)."""
    from sklearn.datasets import load_sample_images

    found = {}
    photos = load_sample_images()
    names = imagenet_classes()
    for name, load in (("MobileNetV2", load_mobilenet_v2), ("EfficientNet-Lite0", load_backbone)):
        try:
            backbone = load()
        except PretrainedUnavailable:
            continue
        pixels = torch.rand(64, 3, 224, 224)
        classifier = PretrainedClassifier(backbone=backbone)
        top5 = {}
        for filename, photo in zip(photos.filenames, photos.images, strict=True):
            image = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)
            with torch.inference_mode():
                best = classifier(image[None])[0].topk(5).indices
            top5[filename.rsplit("/", 1)[-1]] = [names[i] for i in best]
        found[name] = {
            "parameters": costs.parameters(backbone),
            "flops": costs.forward_flops(backbone, pixels[:1]),
            "latency_b1_ms": costs.latency_ms(backbone, pixels[:1]),
            "latency_b64_ms": costs.latency_ms(backbone, pixels, runs=2),
            "top5": top5,
        }
    return found


# -- the degradation problem ----------------------------------------------------------------------
def degradation(config: Config, run: Run) -> dict[str, float]:
    depths = parse_depths(config.depths)
    items = [*inherited(config, {"arch", "depth", "depths", "seed"}), "arch=plain,resnet",
             f"depth={','.join(map(str, depths))}"]  # fmt: skip
    nets = [r for r in stage(run, "nets", LAB, Config, items) if r.status == "finished"]
    fig, (ax_loss, ax_error) = plt.subplots(1, 2, figsize=(12, 4.5))
    metrics = {}
    for net in sorted(nets, key=lambda r: (r.config["arch"], r.config["depth"])):
        arch, depth = net.config["arch"], net.config["depth"]
        label = f"{arch}-{depth}"
        style = {"ls": "-" if arch == "plain" else "--", "lw": 1 + depth / 40}
        steps, epochs = net.history("step"), net.history("epoch")
        per_epoch = len(steps) / len(epochs)
        window = min(10, len(steps))
        loss = np.convolve([s["loss"] for s in steps], np.ones(window) / window, mode="valid")
        ax_loss.plot((np.arange(len(loss)) + window) / per_epoch, loss, label=label, **style)
        error = [1 - e["train_accuracy"] for e in epochs]
        test = net.summary["metrics"]["test_accuracy"]
        ax_error.plot(range(1, len(epochs) + 1), error, marker="o",
                      label=f"{label} (test {test:.1%})", **style)  # fmt: skip
        metrics |= {f"{label}_train_error": error[-1], f"{label}_test_accuracy": test}
    ax_loss.set(xlabel="epoch", ylabel="training loss (mean of 10 steps)", yscale="log",
                title="Training loss")  # fmt: skip
    ax_error.set(xlabel="epoch", ylabel="training error (1 − accuracy on the batches trained on)",
                 yscale="log", title="Training error")  # fmt: skip
    for ax in (ax_loss, ax_error):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Without shortcuts the deeper net barely trains; with them the same depth does")
    figures.save(fig, run.figure_path("degradation"))
    return metrics


def parse_depths(text: str) -> list[int]:
    """ "20,56" → [20, 56]: each 6n+2."""
    try:
        depths = sorted({int(item) for item in text.split(",")})
    except ValueError:
        depths = []
    if not depths or any(d < 8 or (d - 2) % 6 for d in depths):
        raise ConfigError(f"depths={text!r} is not depths of 6n+2 layers, for example 20,56")
    return depths
