"""vision/201/advanced-transfer — how to move a pretrained network, how much of it, and when.

vision/101/transfer fitted a linear probe, then moved every weight at a tenth of the head's LR
(LP-FT). Here the same offline ImageNet backbones (EfficientNet-Lite0 by default, or
torchvision's MobileNetV2) are moved four ways, every arm starting from the same probe and given
the same labels, steps, crops and test images:

- finetune: every weight, the backbone at `backbone_lr` × the head's LR (vision/101's recipe).
- llrd: discriminative learning rates. The network is cut into layer groups (the stem, each
  stage of blocks, the last 1×1 convolution, the classifier); each group learns at
  `layer_decay` × the rate of the group above it. Low layers hold general edges and textures,
  high ones ImageNet's own categories: the lower, the less they should move.
- gradual: ULMFiT (Howard & Ruder 2018): llrd's rates, and the groups unfrozen one at a time from
  the top, all of them by `unfreeze_by` of the steps (the Trainer's `on_step` hook sets
  requires_grad; a frozen group costs no backward pass).
- lora: peft's LoRA on every 1×1 convolution: the pretrained weights stay frozen and each layer
  learns a low-rank correction B·A beside them (rank `lora_rank`), with the new head. A few
  percent of the parameters learn, and the optimizer's state and the gradients shrink with them;
  the activations that backward needs do not (the measured step memory shows how much is left).
  The adapters learn at `lora_lr` = 5 × the head's LR, 50 × what finetune moves the backbone
  by: B starts at zero and has 200 steps to grow. At the head's own LR, LoRA stayed 2.2 points
  under full fine-tuning on CIFAR-10 (0.7 on Fashion-MNIST, 0.8 on the digits); at 5× it came
  within 0.1 point on CIFAR-10 and passed it on the other two (docs/benchmarks.md, "LoRA's
  learning rate").

A batch norm normalises with statistics it measured on ImageNet. On another domain its inputs
have other means and variances. AdaBN (Li et al. 2016) measures them again on the target's
training images, without their labels, before anything is learnt (bn_statistics=target): the
probe reads the features through the new statistics, and the fine-tuned arms start from them.

How far the domain is from ImageNet decides what is worth doing: CIFAR-10's photos (near), the
clothes of Fashion-MNIST (grey, centred: further), and 8×8 handwritten digits (nothing like a
photo). method=compare runs every arm (the methods in `methods`, and those in `adabn_methods`
again with AdaBN) at every size in `sizes`, and draws accuracy by method beside accuracy against
the share of parameters trained; each arm also records its trainable parameters, the peak memory
of one training step (PyTorch's profiler: deepscape.costs.training_step_memory) and its time.
benchmarks/vision_201_advanced_transfer.py runs the three domains at 100 and 1,000 labels and
writes the table to docs/benchmarks.md.

Single arms measured while the lab was written (Fashion-MNIST, 1,000 labels, 100 steps instead
of 200, the same 1,000 test images, 1 thread on 2 cores shared with other work; the benchmark's
table is the reference): full fine-tuning 80.5 %, llrd 82.3 %, gradual 81.5 % (57 s of training
against 72 s: frozen groups need no backward pass), LoRA at rank 4 80.1 % with 3.1 % of the
parameters trained. One training step of a batch of 32 peaked at 466 MB fine-tuning everything
and at 422 MB with LoRA: gradients and AdamW's moments fell from 38.7 MB to 1.2 MB, while the
activations kept for backward, most of the step, stayed. AdaBN lowered the linear probe, from
81.0 % to 73.6 % (2,000 test images) and on the digits from 95.8 % to 79.7 % (1,000 labels, all
360 test images). A likely reason: ImageNet's statistics keep quiet the channels a grey,
centred image barely excites; re-measured, every channel is scaled to unit variance, the nearly
silent ones too. AdaBN was made for a classifier trained on the source and tested on the target;
here the head is learnt on the target's own features, and the arms show whether it still pays.

    deepscape run vision/201/advanced-transfer                     # Fashion-MNIST, every arm
    deepscape run vision/201/advanced-transfer dataset=digits sizes=100,1000
    deepscape run vision/201/advanced-transfer dataset=cifar10 data_dir=cifar10-images
    deepscape run vision/201/advanced-transfer method=lora lora_rank=8    # one arm
    deepscape run vision/201/advanced-transfer method=probe bn_statistics=target   # AdaBN
    deepscape run vision/201/advanced-transfer backbone=mobilenet_v2 methods=finetune,lora
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from safetensors.torch import save_model

from deepscape.config import ConfigError, TrainConfig, closest, option
from deepscape.data import Splits, get_dataset
from deepscape.data.augment import RandomAffine, photo_augmentation
from deepscape.labs.vision import l101_transfer
from deepscape.labs.vision.l101_transfer import labelled_splits, linear_probe
from deepscape.labs.vision.l201_advanced_transfer_figures import comparison_figure
from deepscape.labs.vision.l201_advanced_transfer_methods import (
    MOBILENET,
    MobileNetV2Backbone,
    adapt_batch_norm,
    add_lora,
    layer_decay_scales,
    layer_groups,
    step_memory,
    trainable_share,
    unfreezing,
)
from deepscape.learning_curve import gain_at, parse_sizes
from deepscape.models.pretrained import PretrainedClassifier
from deepscape.runs import Run
from deepscape.sweep import inherited, stage
from deepscape.tasks import Classification, classify, inputs_only
from deepscape.train import Trainer

LAB = "vision/201/advanced-transfer"
ARMS = ("probe", "finetune", "llrd", "gradual", "lora")
# the comparison's own options: every other option is inherited by its arms
OWN = {"method", "methods", "adabn_methods", "labelled", "sizes", "jobs", "seed", "bn_statistics"}


@dataclass
class Config(TrainConfig):
    # the domain
    dataset: Literal["fashion-mnist", "cifar10", "digits"] = option(
        "fashion-mnist", "target domain: clothes (offline), photos (data_dir=), 8×8 digits"
    )
    data_dir: str | None = option(None, "local copy: IDX files, or train/<class>/ test/<class>/")
    sizes: str = option("1000", "labelled images of every arm of method=compare (e.g. 100,1000)")
    labelled: int = option(1000, "labelled training images of a single arm (0: all)")
    validation_images: int = option(250, "validation images every arm is watched on")
    test_images: int = option(0, "test images every arm is judged on (0: the whole test split)")
    # what to run
    method: Literal["compare", "probe", "finetune", "llrd", "gradual", "lora"] = option(
        "compare", "compare: the arms below at every size; else one arm at `labelled` images"
    )
    methods: str = option("probe,finetune,llrd,gradual,lora", "the arms of method=compare")
    adabn_methods: str = option("probe,finetune", "arms compare runs again with AdaBN ('': none)")
    bn_statistics: Literal["imagenet", "target"] = option(
        "imagenet", "batch norms' statistics: ImageNet's, or re-measured on the target (AdaBN)"
    )
    adapt_images: int = option(2000, "unlabelled training images AdaBN measures (0: all)")
    backbone: str = option("tf_efficientnet_lite0", "timm model on ImageNet-1k, or mobilenet_v2")
    image_size: int = option(96, "pixels the backbone sees (trained at 224; 96 is ~5× cheaper)")
    # the methods' knobs
    backbone_lr: float = option(0.1, "finetune: the backbone's LR as a share of the head's")
    layer_decay: float = option(0.7, "llrd, gradual: a group's LR as a share of the next one up")
    unfreeze_by: float = option(0.5, "gradual: share of the steps after which every group trains")
    lora_rank: int = option(4, "lora: rank of each 1×1 convolution's update")
    lora_alpha: float = option(8.0, "lora: the update is scaled by lora_alpha / lora_rank")
    lora_lr: float = option(5.0, "lora: the adapters' LR as a share of the head's")
    steps: int = option(200, "optimisation steps of every arm (epochs follow from the labels)")
    jobs: int = option(1, "arms at a time, each in its own process")
    figures: bool = option(True, "draw the comparison figure")
    # training (overriding TrainConfig's defaults for this lab)
    epochs: int = option(0, "passes over the labelled images (0: as many as `steps` need)")
    batch_size: int = option(32, "examples per optimisation step")
    lr: float = option(1e-3, "peak learning rate of the head (AdamW)")
    weight_decay: float = option(0.05, "decoupled weight decay")
    label_smoothing: float = option(0.1, "cross-entropy label smoothing")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = option(
        "auto", "bf16 where the hardware has it, else fp32"
    )


def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    if config.method == "compare":
        return compare(config, run)
    return one_arm(config, run)


def check(config: Config) -> None:
    """Bad knobs fail before any data is read, in one line that names the fix."""
    if config.lora_rank < 1:
        raise ConfigError(f"lora_rank={config.lora_rank}: LoRA needs a rank ≥ 1 (try lora_rank=4)")
    if not 0 < config.layer_decay <= 1:
        raise ConfigError(f"layer_decay={config.layer_decay:g}: give a share in (0, 1], e.g. 0.7")
    if not 0 <= config.unfreeze_by <= 1:
        raise ConfigError(f"unfreeze_by={config.unfreeze_by:g}: give a share of steps in [0, 1]")
    if config.adapt_images < 0:
        raise ConfigError(f"adapt_images={config.adapt_images}: give 0 (all) or more images")
    parse_methods(config.methods, "methods")
    parse_methods(config.adabn_methods, "adabn_methods", empty_ok=True)


def parse_methods(text: str, key: str, *, empty_ok: bool = False) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names and not empty_ok:
        raise ConfigError(f"{key}='{text}': name at least one of {', '.join(ARMS)}")
    for name in names:
        if name not in ARMS:
            hint = closest(name, ARMS) or f" (methods: {', '.join(ARMS)})"
            raise ConfigError(f"{key}: unknown method '{name}'{hint}")
    return names


# -- the lesson: every arm on one domain ----------------------------------------------------------
def compare(config: Config, run: Run) -> dict[str, Any]:
    data = get_dataset(config.dataset, config.data_dir)  # a domain without its data stops here
    sizes = parse_sizes(config.sizes, len(data.train), unit="images")
    labelled = f"labelled={','.join(str(n) for n in sizes)}"
    base = inherited(config, OWN)
    methods = parse_methods(config.methods, "methods")
    arms = stage(run, "arms", LAB, Config, [*base, f"method={','.join(methods)}", labelled,
                 "bn_statistics=imagenet"], jobs=config.jobs)  # fmt: skip
    if adabn := parse_methods(config.adabn_methods, "adabn_methods", empty_ok=True):
        arms += stage(run, "adabn", LAB, Config, [*base, f"method={','.join(adabn)}", labelled,
                      "bn_statistics=target"], jobs=config.jobs)  # fmt: skip
    results: dict[str, dict[int, dict[str, float]]] = {}  # arm -> labelled images -> metrics
    for arm in arms:
        if arm.status == "finished":
            name = arm_name(arm.config["method"], arm.config["bn_statistics"])
            results.setdefault(name, {})[arm.summary["data"]["train"]] = arm.summary["metrics"]
    run.update_summary(arms=results)
    if config.figures and results:
        comparison_figure(run, results, title=f"{config.backbone} on {data.name}")
    return comparison_metrics(results)


def arm_name(method: str, statistics: str) -> str:
    return f"{method}_adabn" if statistics == "target" else method


def comparison_metrics(results: dict[str, dict[int, dict[str, float]]]) -> dict[str, Any]:
    """Every arm's test accuracy (`lora_1000`), trainable share and step memory, AdaBN's gain,
    and LoRA's gap to full fine-tuning at the most labels up to 1,000 that both have."""
    metrics: dict[str, Any] = {}
    for name, by_size in results.items():
        for n, arm in by_size.items():
            metrics[f"{name}_{n}"] = arm["test_accuracy"]
        largest = by_size[max(by_size)]
        metrics[f"{name}_trainable_share"] = largest["trainable_share"]
        if "step_peak_mb" in largest:
            metrics[f"{name}_step_peak_mb"] = largest["step_peak_mb"]
    for name, by_size in results.items():
        if name.endswith("_adabn") and (plain := results.get(name.removesuffix("_adabn"))):
            for n in by_size.keys() & plain.keys():
                gain = by_size[n]["test_accuracy"] - plain[n]["test_accuracy"]
                metrics[f"adabn_gain_{name.removesuffix('_adabn')}_{n}"] = gain
    accuracy = {name: {n: arm["test_accuracy"] for n, arm in by_size.items()}
                for name, by_size in results.items()}  # fmt: skip
    if gap := gain_at(accuracy.get("finetune", {}), accuracy.get("lora", {}), most=1000):
        metrics["lora_gap_to_full_finetune"] = gap["gain"]
        metrics["compared_at"] = gap["compared_at"]
    return metrics


# -- one arm: one method at one number of labels --------------------------------------------------
def one_arm(config: Config, run: Run) -> dict[str, Any]:
    data = labelled_splits(config)
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes})
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    epochs = config.epochs or max(1, math.ceil(config.steps / steps_per_epoch))
    task = Classification(
        len(data.classes), label_smoothing=config.label_smoothing, augment=augmentation(config)
    )
    # the probe keeps features by the backbone's name: adapted statistics make another backbone
    features_of = config.backbone + ("-adabn" if config.bn_statistics == "target" else "")
    trainer = Trainer(
        dataclasses.replace(config, epochs=epochs, backbone=features_of), run, task=task
    )
    run.update_summary(precision=trainer.precision)
    model = model_for(config, data).to(trainer.accelerator.device)
    if config.bn_statistics == "target":  # AdaBN, before the probe reads a single feature
        images = unlabelled(config)
        norms = adapt_batch_norm(model, images, device=trainer.accelerator.device)
        run.update_summary(adabn={"norms": norms, "images": len(images)})

    # every arm starts from the same linear probe on the (frozen) backbone's features: LP-FT
    probe = linear_probe(model, data, run, trainer)
    model.backbone.get_classifier().load_state_dict(probe.head.state_dict())
    if config.method == "probe":
        model.requires_grad_(False)
        model.backbone.get_classifier().requires_grad_(True)  # what the probe learnt
        save_model(model, str(run.weights_path))
        return {"test_accuracy": probe.test_accuracy, "test_loss": probe.test_loss,
                "l2": probe.l2, **trainable_share(model)}  # fmt: skip

    scales, on_step = lr_plan(config, model, total_steps=epochs * steps_per_epoch)
    batch = (data.train.inputs[: config.batch_size], data.train.targets[: config.batch_size])
    device = trainer.accelerator.device.type
    memory = step_memory(model, task, batch, trainer.config, lr_scales=scales, device=device)
    shares = trainable_share(model)  # before gradual unfreezing freezes anything
    model = trainer.fit(model, data.train, data.validation, lr_scales=scales, on_step=on_step)
    test = classify(trainer, model, data.test)
    evaluations = run.history("epoch") or run.history("eval")
    return {
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        **shares,
        "step_peak_mb": memory.peak / 2**20,
        "step_gradients_mb": memory.gradients / 2**20,
        "step_optimizer_state_mb": memory.optimizer_state / 2**20,
        "train_seconds": evaluations[-1]["seconds"],
    }


def lr_plan(
    config: Config, model: PretrainedClassifier, *, total_steps: int
) -> tuple[dict[str, float] | None, Any]:
    """The arm's LR multipliers by parameter name (`Trainer.fit`'s lr_scales), and its on_step
    hook (gradual unfreezing), or None."""
    if config.method == "finetune":  # vision/101/transfer's: one rate for the whole backbone
        return {"backbone.": config.backbone_lr, "backbone.classifier.": 1.0}, None
    if config.method == "lora":  # the adapters; the frozen weights have no LR to scale
        return {"backbone.": config.lora_lr, "backbone.classifier.": 1.0}, None
    groups = layer_groups(model)
    scales = layer_decay_scales(groups, config.layer_decay)
    if config.method == "llrd":
        return scales, None
    return scales, unfreezing(
        model, groups, total_steps=total_steps, unfreeze_by=config.unfreeze_by
    )


def model_for(config: Config, data: Splits) -> PretrainedClassifier:
    """The arm's model: the pretrained backbone with a fresh head behind its own preprocessing
    (vision/101/transfer's), and LoRA's adapters for method=lora (serve and inspect rebuild a
    run's model with this)."""
    if config.backbone == MOBILENET:
        backbone = MobileNetV2Backbone(len(data.classes))
        model = PretrainedClassifier(
            backbone=backbone, image_size=config.image_size, crop_pct=1.0, frozen_statistics=True
        )
    else:
        model = l101_transfer.model_for(config, data)  # type: ignore[arg-type]
    if config.method == "lora":
        model = add_lora(model, rank=config.lora_rank, alpha=config.lora_alpha)
    return model


def augmentation(config: Config) -> Any:
    """The photos' random crops and mirror images; digits are not mirror images of digits, so
    they get small shifts, turns and zooms instead."""
    if config.dataset == "digits":
        return inputs_only(RandomAffine(degrees=10, shift=0.1, scale=0.1))
    return inputs_only(photo_augmentation("crop-flip"))


def unlabelled(config: Config) -> torch.Tensor:
    """`adapt_images` training images of the target domain, without their labels (a seeded
    random draw, the same for every arm)."""
    images = get_dataset(config.dataset, config.data_dir).train.inputs
    n = config.adapt_images or len(images)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order[:n]]
