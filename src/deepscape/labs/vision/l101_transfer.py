"""vision/101/transfer — reuse what a model learned on ImageNet.

The lesson learns 10 kinds of objects from a few labelled images, three ways. A CNN from scratch
(vision/101/objects10's). A linear probe: a timm backbone whose weights learnt ImageNet's 1.3
million photos, frozen, behind its own preprocessing (the size, mean and std it was trained with
travel with the model), and a linear classifier learnt on its features alone. And that backbone
fine-tuned: starting from the probe's classifier, then everything unfrozen, the backbone at a
lower LR so that the first steps do not wreck what it knows (LP-FT, Kumar et al. 2022).

Each arm gets the same optimisation steps, validation and test images, and the trained ones the
same crops and mirror images, at 100, 500, 1,000 and 2,000 labels: what pretraining is worth is
a function of how many labels you have, and the accuracy-vs-labels figure shows it. On the
CIFAR-10 copy: from scratch 41 %, probe 68 %, fine-tuned 72 % at 1,000 labels (+31 points); the
whole curve takes ~19 minutes on 2 CPU cores. Offline, the default is Fashion-MNIST with
EfficientNet-Lite0; any timm model comes from the hub.

    deepscape run vision/101/transfer                                   # Fashion-MNIST, offline
    deepscape run vision/101/transfer dataset=cifar10 data_dir=cifar10-images
    deepscape run vision/101/transfer method=finetune labelled=500      # one arm, one size
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from safetensors.torch import save_model
from torch import nn

from deepscape.cache import cache_key, cached
from deepscape.config import TrainConfig, option
from deepscape.data import Splits, TensorSplit, get_dataset
from deepscape.data.augment import photo_augmentation
from deepscape.labs.vision import l101_objects10
from deepscape.learning_curve import (
    curve_figure,
    curve_metrics,
    gain_at,
    parse_sizes,
    run_points,
)
from deepscape.loop import track
from deepscape.models.pretrained import PretrainedClassifier, load_backbone
from deepscape.probe import Probe, fit_probe
from deepscape.runs import Run
from deepscape.tasks import Classification, classify, inputs_only
from deepscape.train import Trainer

TRANSFER = "vision/101/transfer"


@dataclass
class Config(TrainConfig):
    # data
    dataset: Literal["fashion-mnist", "cifar10"] = option("fashion-mnist", "which 10 objects")
    data_dir: str | None = option(None, "local copy: IDX files, or train/<class>/ test/<class>/")
    sizes: str = option("100,500,1000,2000", "labelled images along the curve (0 or all: all)")
    validation_images: int = option(250, "validation images every arm is watched on")
    test_images: int = option(0, "test images every arm is judged on (0: the whole test split)")
    # what to run
    method: Literal["curve", "scratch", "probe", "finetune"] = option(
        "curve", "curve: all three arms at every size; else one arm at `labelled` images"
    )
    labelled: int = option(1000, "labelled training images of a single arm (0: all)")
    backbone: str = option("tf_efficientnet_lite0", "timm model pretrained on ImageNet-1k")
    image_size: int = option(96, "pixels the backbone sees (trained at 224; 96 is ~5× cheaper)")
    backbone_lr: float = option(0.1, "the backbone's LR as a share of the head's (fine-tuning)")
    steps: int = option(200, "optimisation steps of every arm (epochs follow from the labels)")
    jobs: int = option(1, "arms at a time, each in its own process")
    # training (overriding TrainConfig's defaults for this lab)
    epochs: int = option(0, "passes over the labelled images (0: as many as `steps` need)")
    batch_size: int = option(32, "examples per optimisation step")
    lr: float = option(1e-3, "peak learning rate (AdamW; scratch: SGD at 0.05)")
    weight_decay: float = option(0.05, "decoupled weight decay")
    label_smoothing: float = option(0.1, "cross-entropy label smoothing")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = option(
        "auto", "bf16 where the hardware has it, else fp32"
    )


def run(config: Config, run: Run) -> dict[str, Any]:
    if config.method == "curve":
        return learning_curve(config, run)
    return one_arm(config, run)


# -- the lesson: three arms along the number of labels --------------------------------------------
def learning_curve(config: Config, run: Run) -> dict[str, Any]:
    data = get_dataset(config.dataset, config.data_dir)
    sizes = parse_sizes(config.sizes, len(data.train), unit="images")
    # every arm inherits this run's options (a sweep runs seed 0: the arms compare)
    curve = run_points(run, TRANSFER, config, sizes, jobs=config.jobs)
    labels = {
        "scratch": "CNN from scratch (objects10's)",
        "probe": f"linear probe on frozen {config.backbone}",
        "finetune": f"{config.backbone} fine-tuned from the probe",
    }
    title = f"What pretraining is worth on {data.name}: accuracy vs labels"
    curve_figure(run, curve, labels, title=title, unit="images")
    metrics: dict[str, Any] = curve_metrics(curve)
    if gain := gain_at(curve["finetune"], curve["scratch"], most=1000):
        metrics["finetune_gain_at_1000"] = gain["gain"]
        metrics["compared_at"] = gain["compared_at"]
    return metrics


# -- one arm: one method at one number of labels --------------------------------------------------
def one_arm(config: Config, run: Run) -> dict[str, Any]:
    data = labelled_splits(config)
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes})
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    epochs = config.epochs or max(1, math.ceil(config.steps / steps_per_epoch))
    if config.method == "scratch":  # objects10's recipe: SGD with Nesterov momentum
        config = dataclasses.replace(config, optimizer="sgd", lr=0.05, weight_decay=5e-4)
    # both trained arms see the same random crops and mirror images of the labelled images
    augment = inputs_only(photo_augmentation("crop-flip"))
    task = Classification(
        len(data.classes), label_smoothing=config.label_smoothing, augment=augment
    )
    trainer = Trainer(dataclasses.replace(config, epochs=epochs), run, task=task)
    run.update_summary(precision=trainer.precision)
    model = model_for(config, data)
    fit = functools.partial(trainer.fit, train=data.train, validation=data.validation)

    if config.method == "scratch":  # objects10's CNN, on the same labels, steps and test images
        model = fit(model)
    else:
        # the probe: a linear classifier on frozen features; fine-tuning starts from it (LP-FT)
        probe = linear_probe(model, data, run, trainer)
        model.backbone.get_classifier().load_state_dict(probe.head.state_dict())
        if config.method == "probe":
            save_model(model, str(run.weights_path))
            return {"test_accuracy": probe.test_accuracy, "test_loss": probe.test_loss,
                    "l2": probe.l2}  # fmt: skip
        # unfreeze everything: the head at the full LR, the backbone at `backbone_lr` of it
        scales = {"backbone.": config.backbone_lr, "backbone.classifier.": 1.0}
        model = fit(model, lr_scales=scales)
    test = classify(trainer, model, data.test)
    return {"test_accuracy": test.accuracy, "test_loss": test.loss}


def labelled_splits(config: Config) -> Splits:
    """The dataset with `labelled` training images (stratified: the same images for every arm),
    and fixed stratified subsets of validation and test (an arm evaluates its model on
    validation every epoch: with few labels, that is most of its work)."""
    data = get_dataset(config.dataset, config.data_dir)
    return dataclasses.replace(
        data,
        train=data.train.stratified(config.labelled),
        validation=data.validation.stratified(config.validation_images),
        test=data.test.stratified(config.test_images),
    )


def model_for(config: Config, data: Splits) -> nn.Module:
    """The arm's model: objects10's CNN, or the pretrained backbone with a fresh head behind its
    own preprocessing (serve and inspect rebuild a run's model with this)."""
    if config.method == "scratch":
        return l101_objects10.model_for(l101_objects10.Config(dataset=config.dataset), data)
    backbone = load_backbone(config.backbone, num_classes=len(data.classes))
    # crop_pct=1: a 28×28 or 32×32 image is all object, ImageNet's centre crop would cut it
    return PretrainedClassifier(
        backbone=backbone, image_size=config.image_size, crop_pct=1.0, frozen_statistics=True
    )


def linear_probe(model: PretrainedClassifier, data: Splits, run: Run, trainer: Trainer) -> Probe:
    """A linear classifier on the frozen backbone's features: multinomial logistic regression by
    L-BFGS, its L2 strength chosen on the validation images. Validation and test features are
    the same for every arm and size, so they are computed once and kept in the run store."""
    config: Config = trainer.config  # type: ignore[assignment]

    def split_features(name: str, split: TensorSplit) -> torch.Tensor:
        key = cache_key(f"{config.backbone}-{config.image_size}px", data.name, name, len(split))
        compute = functools.partial(features, model, split.inputs, trainer, what=f"{name} features")
        return cached(run, "features", key, compute)

    train_x = features(model, data.train.inputs, trainer, what="train features")
    return fit_probe(
        (train_x, data.train.targets),
        (split_features("validation", data.validation), data.validation.targets),
        (split_features("test", data.test), data.test.targets),
    )


@torch.no_grad()  # not inference_mode: the probe's regression takes gradients through these
def features(
    model: PretrainedClassifier, images: torch.Tensor, trainer: Trainer, *, what: str
) -> torch.Tensor:
    """The backbone's pooled features of `images` ("n c h w -> n d"), in the trainer's precision
    and on its device."""
    # placed, not prepared: Accelerate would mark the model as prepared, and the Trainer's own
    # prepare would then leave it unwrapped, its gradients never averaged across processes
    device, batches = trainer.accelerator.device, range(0, len(images), 256)
    model = model.eval().to(device)
    out = []
    for start in track(
        batches, description=what, transient=True, disable=not trainer.show_progress
    ):
        with trainer.accelerator.autocast():
            pooled = model.features(images[start : start + 256].to(device))
        out.append(pooled.float().cpu())
    return torch.cat(out)
