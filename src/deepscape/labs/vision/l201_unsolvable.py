"""vision/201/unsolvable — what the models of this level cannot do, each failure measured.

A test accuracy says how a model does on more images like its training images. Four experiments
show what it does not say, each with a number and a figure (figures/*.png):

adversarial   FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018), written out in
              l201_unsolvable_attacks.py: every pixel moved by at most ε, in the direction that
              raises the loss. Accuracy against ε for the digits lab's CNN (trained on mnist-5k),
              objects10's CNN (Fashion-MNIST) and two ImageNet models (EfficientNet-Lite0 and
              MobileNetV2, offline weights) on scikit-image's photos, which a targeted PGD also
              turns into toasters. An ε of 1/255 is one grey level of an 8-bit pixel: invisible.
memorisation  random labels (Zhang et al. 2017, "rethinking generalisation"): the same network
              trained on the same images with their labels replaced by noise reaches 100 %
              training accuracy while its accuracy on held-out images stays at chance (10 %).
              A fitted training set proves nothing; held-out accuracy is what shows whether
              the labels carry signal. label_noises between 0 and 1 gives the curve between.
shift         the same digits in other hands: MNIST, scikit-learn's 8×8 digits and digits
              rendered from 22 fonts, all framed as MNIST's (l201_unsolvable_data.py), a CNN
              trained on each and tested on all three (a 3×3 table); then MNIST's test digits
              rotated, noised, blurred and faded, accuracy against severity.
spurious      coloured MNIST: in training a digit's ink has its label's colour 95 % of the time,
              in test a random one. The CNN reads the colour, the easier cue; the same CNN on
              grey digits (the digits lab's model) reads the shape.

Every model is trained by earlier labs' code: the digits and objects10 models are runs of those
labs, and this lab's own runs (part=train) train the digits lab's model, with its recipe, on the
images built here. `part=` runs one experiment alone; `--resume` reuses the runs already made.

The defaults, measured on 1 thread beside other jobs (6.5 minutes in all): the digits CNN, 96.8 %
clean, keeps 10 % under FGSM and 0 % under PGD at ε = 0.3, and drops to 16 % under PGD at ε = 0.05;
objects10's (81 % clean) falls to 0 % at ε = 0.1. Of the 6 photos EfficientNet-Lite0 names 5
right, 1 after PGD at ε = 4/255 (the cat stays a cat), and targeted PGD makes all 6 toasters,
as it does for MobileNetV2. Random labels: training accuracy 100 % after 25 epochs (true
labels: 9), test accuracy 10.2 % (true labels: 91.1 %). Across styles the MNIST CNN (96.1 %)
reads the fonts at 72 % and scikit-learn's digits at 46 %; the fonts' CNN, 100 % on fonts it
never saw, reads MNIST at 64 %. The MNIST CNN falls to chance under noise of σ = 0.2 (11 %),
to 19 % at 90° and 22 % at half contrast. Coloured MNIST: 95 % in training, 12 % on randomly
coloured test digits, the colour's digit named for 97 % of them; on grey digits 97 % and 96 %.

    deepscape run vision/201/unsolvable                                  # all four
    deepscape run vision/201/unsolvable part=memorisation                # random labels, 1 min
    deepscape run vision/201/unsolvable part=memorisation label_noises=0,0.2,0.4,0.6,0.8,1
    deepscape run vision/201/unsolvable part=memorisation dataset=cifar10 \\
        data_dir=cifar10-images
    deepscape run vision/201/unsolvable part=memorisation memorise_model=cnn memorise_width=32 \\
        memorise_epochs=100 memorise_lr=3e-3 label_noises=1    # a CNN too: 100 %, 8 %, 5 min
    deepscape run vision/201/unsolvable part=adversarial attack_models=efficientnet-lite0
    deepscape run vision/201/unsolvable part=shift rotations=0,30,60,90,180
    deepscape run vision/201/unsolvable part=spurious colour_agreement=1
    deepscape run vision/201/unsolvable part=train dataset=font-digits  # one of its models
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from deepscape import distributed
from deepscape.config import ConfigError, TrainConfig, closest, format_value, option
from deepscape.data import DataUnavailable, Splits, TensorSplit, get_dataset
from deepscape.data.augment import RandomAffine
from deepscape.inside import InspectError, Trained, load_trained, load_weights
from deepscape.labs.vision import l101_digits, l101_objects10
from deepscape.labs.vision import l201_unsolvable_data as built
from deepscape.labs.vision import l201_unsolvable_figures as drawn
from deepscape.labs.vision.l201_unsolvable_attacks import (
    Curve,
    PhotoCurve,
    accuracy_curve,
    photo_curve,
)
from deepscape.runs import Run
from deepscape.sweep import inherited, stage
from deepscape.tasks import Classification, classify, inputs_only
from deepscape.train import Trainer

LAB = "vision/201/unsolvable"
DIGITS, OBJECTS10 = "vision/101/digits", "vision/101/objects10"
PARTS = ("adversarial", "memorisation", "shift", "spurious")
FITTED = 0.99  # training accuracy at which a training set counts as fitted
PHOTO_MODELS = ("efficientnet-lite0", "mobilenet-v2")
BUILT = ("digits-28", "font-digits", "coloured-mnist")  # made here, not in the data registry


@dataclass
class Config(TrainConfig):
    part: Literal["all", "adversarial", "memorisation", "shift", "spurious", "train"] = option(
        "all", "the experiment to run (train: one model on `dataset`, as the others train them)"
    )
    # the digits lab's CNN and recipe, for every digits model here (overriding TrainConfig's)
    model: Literal["linear", "mlp", "cnn"] = option("cnn", "the rung of the digits lab's ladder")
    width: int = option(16, "hidden units (mlp) or channels of the first stage (cnn)")
    depth: int = option(2, "hidden layers (mlp) or stages of two convolutions (cnn)")
    dropout: float = option(0.1, "dropout before the classifier")
    augment: bool = option(True, "random small rotations, zooms and shifts of training images")
    epochs: int = option(6, "passes over the training split")
    batch_size: int = option(32, "examples per optimisation step")
    lr: float = option(3e-3, "peak learning rate")
    weight_decay: float = option(5e-4, "decoupled weight decay")
    label_smoothing: float = option(0.1, "cross-entropy label smoothing")
    # part=train: one model
    dataset: Literal[
        "mnist-5k", "mnist", "digits", "fashion-mnist", "cifar10", "digits-28", "font-digits",
        "coloured-mnist",
    ] = option("mnist-5k", "the images memorised (part=train: learnt; the last three are built "
                           "here)")  # fmt: skip
    data_dir: str | None = option(None, "local copy of `dataset` (mnist, cifar10)")
    train_images: int = option(0, "learn from this many training images, stratified (0: all)")
    label_noise: float = option(0.0, "share of training labels replaced by random classes")
    # adversarial
    attack_models: tuple[
        Literal["digits", "objects10", "efficientnet-lite0", "mobilenet-v2"], ...
    ] = option(("digits", "objects10", *PHOTO_MODELS), "the models attacked")
    epsilons: tuple[float, ...] = option(
        (0.0, 0.02, 0.05, 0.1, 0.2, 0.3), "ε for the digits and objects10 models (pixels in [0, 1])"
    )
    photo_epsilons: tuple[float, ...] = option(
        (0.0, 0.25, 0.5, 1.0, 2.0, 4.0), "ε for the ImageNet models, in 1/255 of the pixel range"
    )
    pgd_steps: int = option(10, "steps of PGD (each of 2.5 ε / steps)")
    attack_images: int = option(500, "test images attacked (stratified)")
    photo_target: str = option("toaster", "the ImageNet class targeted PGD turns the photos into")
    objects_fraction: float = option(0.1, "share of Fashion-MNIST's training split objects10 uses")
    objects_width: int = option(16, "channels of the first stage of objects10's CNN")
    # memorisation
    memorise_images: int = option(1000, "training images whose labels are memorised")
    label_noises: tuple[float, ...] = option(
        (0.0, 1.0), "shares of labels replaced by noise, a model each (0: true, 1: all random)"
    )
    memorise_model: Literal["linear", "mlp", "cnn"] = option("mlp", "the model that memorises")
    memorise_width: int = option(512, "its hidden units (mlp) or first channels (cnn)")
    memorise_epochs: int = option(60, "its passes over the images (no augmentation, no decay)")
    memorise_lr: float = option(1e-3, "its peak learning rate")
    # distribution shift
    font_variants: int = option(20, "renderings of each digit in each of the 22 fonts")
    rotations: tuple[float, ...] = option(
        (0.0, 15.0, 30.0, 45.0, 60.0, 90.0, 135.0, 180.0), "rotations of the test digits (degrees)"
    )
    noise_levels: tuple[float, ...] = option(
        (0.0, 0.1, 0.2, 0.3, 0.5, 0.8), "standard deviations of Gaussian noise added"
    )
    blur_levels: tuple[float, ...] = option(
        (0.0, 0.5, 1.0, 1.5, 2.0, 3.0), "standard deviations of Gaussian blur (pixels)"
    )
    contrast_levels: tuple[float, ...] = option(
        (1.0, 0.5, 0.3, 0.2, 0.1, 0.05), "contrast kept (1: the original)"
    )
    # spurious correlation
    colour_agreement: float = option(0.95, "share of training digits whose colour is the label's")
    figures: bool = option(True, "draw the figures")


def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    if config.part == "train":
        return train_one(config, run)
    parts = PARTS if config.part == "all" else (config.part,)
    # one digits model for the attacks, the shift and coloured MNIST's grey baseline
    using_digits = {"shift", "spurious"}
    if "digits" in config.attack_models:
        using_digits.add("adversarial")
    digits = digits_model(config, run) if using_digits & set(parts) else None
    metrics: dict[str, Any] = {}
    if "adversarial" in parts:
        metrics |= adversarial(config, run, digits)
    if "memorisation" in parts:
        metrics |= memorisation(config, run)
    if "shift" in parts:
        metrics |= shift(config, run, digits)
    if "spurious" in parts:
        metrics |= spurious(config, run, digits)
    return metrics


def check(config: Config) -> None:
    """Bad options, each refused in one line before anything trains."""
    for name in ("epsilons", "photo_epsilons"):
        values = list(getattr(config, name))
        if not values or min(values) < 0 or values != sorted(values):
            raise ConfigError(f"{name}={format_value(values)}: give ε ≥ 0 in ascending order, "
                              f"for example {name}=0,0.1,0.3")  # fmt: skip
    if max(config.epsilons) > 1:
        raise ConfigError(f"epsilons={format_value(config.epsilons)}: pixels lie in [0, 1], so "
                          "ε > 1 changes nothing more; photo_epsilons counts in 1/255")  # fmt: skip
    shares = {"label_noise": (config.label_noise,), "label_noises": config.label_noises,
              "colour_agreement": (config.colour_agreement,)}  # fmt: skip
    for name, values in shares.items():
        if not values or not all(0 <= v <= 1 for v in values):
            raise ConfigError(f"{name}={format_value(getattr(config, name))}: a share, between 0 "
                              "and 1")  # fmt: skip
    if min(config.pgd_steps, config.attack_images, config.memorise_images) < 1:
        raise ConfigError("pgd_steps, attack_images and memorise_images must be at least 1")
    if not 0 < config.objects_fraction <= 1:
        raise ConfigError(f"objects_fraction={config.objects_fraction:g}: a share in (0, 1]")
    if config.part in ("all", "adversarial") and set(config.attack_models) & set(PHOTO_MODELS):
        from deepscape.models.pretrained import imagenet_classes  # timm: only when it is needed

        names = imagenet_classes()
        if config.photo_target not in names:
            raise ConfigError(f"photo_target={config.photo_target!r} is not an ImageNet class"
                              f"{closest(config.photo_target, names)}")  # fmt: skip


# -- the models: earlier labs' code, on their images and on the images built here --------------
def recipe(config: Config) -> dict[str, Any]:
    """The options of the digits lab this run sets: its model and training recipe, so that
    every digits model here is trained the same way, whoever trains it."""
    shared = {f.name for f in dataclasses.fields(l101_digits.Config)}
    shared &= {f.name for f in dataclasses.fields(Config)}
    shared -= {"dataset", "data_dir", "figures", "seed"}
    return {name: getattr(config, name) for name in sorted(shared)}


def digits_model(config: Config, run: Run) -> Trained:
    """The digits lab's CNN on mnist-5k, trained as a run of that lab, and loaded as
    `load_trained` would, with the images from this lab's cache."""
    items = [f"{k}={format_value(v)}" for k, v in recipe(config).items()]
    (trained,) = stage(run, "digits", DIGITS, l101_digits.Config,
                       [*items, "dataset=mnist-5k", "figures=false"])  # fmt: skip
    digits = finished(trained).config_as(l101_digits.Config)
    data = built.dataset(digits.dataset, digits.data_dir)
    model = l101_digits.model_for(digits, data)
    load_weights(trained, model)
    return Trained(trained, model.eval(), data)


def own_runs(config: Config, run: Run, name: str, items: list[str], *, count: int) -> list[Run]:
    """`count` runs of this lab with part=train, one for each value of the list in `items` (a
    sweep), the rest of this run's options passed on."""
    own = {"part", "figures", "seed", "dataset", "data_dir", "train_images", "label_noise",
           *[item.partition("=")[0] for item in items]}  # fmt: skip
    runs = stage(run, name, LAB, Config, [*inherited(config, own), "part=train", "figures=false",
                                          *items])  # fmt: skip
    if len(runs) < count:  # a run refused at the start (bad data) leaves nothing behind
        raise RuntimeError(
            f"{count - len(runs)} of the {name} runs could not start: run "
            f"`deepscape run {LAB} part=train` with {' '.join(items)} to see why"
        )
    return [finished(r) for r in runs]


def finished(run: Run) -> Run:
    if run.status != "finished":
        error = run.summary.get("error", "see `deepscape runs`")
        raise RuntimeError(f"run {run.id} of {run.summary['lab']} did not finish: {error}")
    return run


def images_for(config: Config) -> Splits:
    """`dataset`'s splits: the registry's, or one built here."""
    if config.dataset == "digits-28":
        data = built.digits_28()
    elif config.dataset == "font-digits":
        data = built.font_digits(config.font_variants)
    elif config.dataset == "coloured-mnist":
        data = built.coloured_mnist(config.colour_agreement).splits
    else:
        data = built.dataset(config.dataset, config.data_dir)
    if config.train_images:
        data = dataclasses.replace(data, train=data.train.stratified(config.train_images))
    return data


def train_one(config: Config, run: Run) -> dict[str, Any]:
    """part=train: the digits lab's model, trained with its recipe on `dataset`, with
    `label_noise` of the training labels replaced by random classes (validation and test keep
    the true ones, so the validation curve is the held-out accuracy)."""
    data = images_for(config)
    true_labels = data.train.targets
    if config.label_noise:
        noisy = built.noisy_labels(true_labels, config.label_noise, len(data.classes), config.seed)
        data = dataclasses.replace(data, train=TensorSplit(data.train.inputs, noisy))
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes})
    digits = l101_digits.Config(**recipe(config))
    model = l101_digits.model_for(digits, data)
    # the digits lab's augmentation
    augment = RandomAffine(degrees=10, shift=0.1, scale=0.1) if digits.augment else None
    task = Classification(len(data.classes), label_smoothing=digits.label_smoothing,
                          augment=inputs_only(augment))  # fmt: skip
    trainer = Trainer(digits, run, task=task)
    model = trainer.fit(model, data.train, data.validation)

    test = classify(trainer, model, data.test)
    fitted = classify(trainer, model, data.train)  # against the labels it was given
    evaluations = run.evaluations()
    first_fit = next((e["epoch"] + 1 for e in evaluations if e["train_accuracy"] >= FITTED), None)
    metrics: dict[str, Any] = {
        "test_accuracy": test.accuracy,
        "train_accuracy": fitted.accuracy,
        "train_accuracy_true_labels": float((fitted.predictions == true_labels).float().mean()),
        "val_accuracy": evaluations[-1]["val_accuracy"],
        "epochs_to_fit": first_fit,
        "train_seconds": evaluations[-1]["seconds"],
    }
    if config.dataset == "coloured-mnist":
        coloured = built.coloured_mnist(config.colour_agreement)
        agreeing = classify(trainer, model, coloured.agreeing_test)
        metrics["test_accuracy_colours_agree"] = agreeing.accuracy
        metrics["colour_follow_rate"] = float((test.predictions == coloured.test_colours)
                                              .float().mean())  # fmt: skip
    return metrics


def trained_for(run: Run) -> Trained:
    """The model of a part=train run with the images it learnt (`deepscape inspect`)."""
    config = run.config_as(Config)
    if config.part != "train":
        raise InspectError(f"run {run.id} measured models trained in runs of their own: inspect "
                           f"one of them (`deepscape runs --lab {LAB}`, part=train)")  # fmt: skip
    data = images_for(config)
    model = l101_digits.model_for(l101_digits.Config(**recipe(config)), data)
    load_weights(run, model)
    return Trained(run, model.float().eval(), data)


# -- 1. adversarial examples --------------------------------------------------------------------
def adversarial(config: Config, run: Run, digits: Trained | None) -> dict[str, Any]:
    curves: dict[str, Curve] = {}
    skipped: dict[str, str] = {}
    metrics: dict[str, Any] = {}
    if digits is not None:
        curves["digits"] = attack_trained(config, digits)
    if "objects10" in config.attack_models:
        try:
            get_dataset("fashion-mnist")  # before training: say why it cannot be had
            curves["objects10"] = attack_trained(config, objects10_model(config, run))
        except DataUnavailable as error:
            skipped["objects10"] = str(error)
    for name, curve in curves.items():
        for attack, values in curve.accuracy.items():
            metrics[f"{name}_{attack}_accuracy"] = values[-1]
        metrics[f"{name}_clean_accuracy"] = curve.accuracy["pgd"][0]
    photos = {}
    for name in [m for m in config.attack_models if m in PHOTO_MODELS]:
        try:
            photos[name] = attack_photos(config, name)
        except DataUnavailable as error:  # PretrainedUnavailable: no weights offline
            skipped[name] = str(error)
    for name, curve in photos.items():
        for attack, values in curve.named_right.items():
            metrics[f"{name}_{attack}_named_right"] = values[-1]
        metrics[f"{name}_clean_named_right"] = curve.named_right["pgd"][0]
        metrics[f"{name}_targeted_success"] = curve.target_reached
    run.update_summary(adversarial={
        "epsilons": list(config.epsilons), "photo_epsilons_255": list(config.photo_epsilons),
        "accuracy": {name: curve.accuracy for name, curve in curves.items()},
        "photos_named_right": {name: curve.named_right for name, curve in photos.items()},
        "photos_changed": {name: curve.changed for name, curve in photos.items()},
        "skipped": skipped})  # fmt: skip
    if config.figures and (curves or photos):
        drawn.adversarial(run, curves, photos, pgd_steps=config.pgd_steps)
    return metrics


def objects10_model(config: Config, run: Run) -> Trained:
    """objects10's CNN (model=cnn) on part of Fashion-MNIST, trained as a run of that lab with
    its own recipe: a plain model (no averaging over mirror images inside it), validated on
    2,048 of the validation images."""
    items = ["dataset=fashion-mnist", "model=cnn", f"width={config.objects_width}",
             f"epochs={config.epochs}", f"train_fraction={config.objects_fraction:g}",
             "flip_average=false", "eval_batches=8", f"threads={config.threads}",
             f"device={config.device}", "figures=false"]  # fmt: skip
    (trained,) = stage(run, "objects10", OBJECTS10, l101_objects10.Config, items)
    return load_trained(finished(trained))


def attack_trained(config: Config, trained: Trained) -> Curve:
    test = trained.data.test.stratified(config.attack_images)
    return accuracy_curve(trained.model, test, list(config.epsilons), steps=config.pgd_steps,
                          classes=trained.classes)  # fmt: skip


def attack_photos(config: Config, name: str) -> PhotoCurve:
    from deepscape.data.imagenet import skimage_photos  # timm: only when it is needed
    from deepscape.models.pretrained import (
        PretrainedClassifier,
        imagenet_classes,
        load_backbone,
        load_mobilenet_v2,
    )

    backbone = load_backbone() if name == "efficientnet-lite0" else load_mobilenet_v2()
    model = PretrainedClassifier(backbone=backbone).eval()
    photos = [(image, wanted) for _, image, wanted in skimage_photos(model.scale_size) if wanted]
    images = torch.stack([image for image, _ in photos])
    names = imagenet_classes()
    return photo_curve(model, images, [wanted for _, wanted in photos],
                       [e / 255 for e in config.photo_epsilons], steps=config.pgd_steps,
                       target=names.index(config.photo_target), names=names)  # fmt: skip


# -- 2. memorisation: random labels -------------------------------------------------------------
def memorisation(config: Config, run: Run) -> dict[str, Any]:
    if config.dataset not in BUILT and config.data_dir is None:
        built.dataset(config.dataset)  # offline without it: said here, in one line
    items = [f"dataset={config.dataset}", f"train_images={config.memorise_images}",
             f"label_noise={','.join(f'{p:g}' for p in config.label_noises)}",
             f"model={config.memorise_model}", f"width={config.memorise_width}",
             f"epochs={config.memorise_epochs}", f"lr={config.memorise_lr:g}",
             "augment=false", "dropout=0", "weight_decay=0", "label_smoothing=0"]  # fmt: skip
    if config.data_dir:
        items.append(f"data_dir={config.data_dir}")
    trained = own_runs(config, run, "memorisation", items, count=len(config.label_noises))
    by_noise = {r.config["label_noise"]: r for r in trained}
    metrics: dict[str, Any] = {}
    for noise, named in ((1.0, "random_label"), (0.0, "true_label")):
        if noise in by_noise:
            measured = by_noise[noise].summary["metrics"]
            for key in ("train_accuracy", "test_accuracy", "epochs_to_fit"):
                metrics[f"{named}_{key}"] = measured[key]
    for noise, noisy in by_noise.items():
        metrics[f"noise_{round(100 * noise)}_test_accuracy"] = noisy.summary["metrics"][
            "test_accuracy"
        ]
    if config.figures:
        drawn.memorisation(run, by_noise, title=f"{config.memorise_model} on "
                           f"{config.memorise_images:,} {config.dataset} images")  # fmt: skip
    return metrics


# -- 3. distribution shift ------------------------------------------------------------------------
def shift(config: Config, run: Run, mnist: Trained) -> dict[str, Any]:
    models = {"mnist": mnist.model}
    for trained in own_runs(config, run, "shift", ["dataset=digits-28,font-digits"], count=2):
        domain = {"digits-28": "digits-28", "font-digits": "fonts"}[trained.config["dataset"]]
        models[domain] = load_trained(trained).model
    tests = {"mnist": mnist.data.test, "digits-28": built.digits_28().test,
             "fonts": built.font_digits(config.font_variants).test}  # fmt: skip
    table = {trained: {tested: accuracy(model, split) for tested, split in tests.items()}
             for trained, model in models.items()}  # fmt: skip
    levels = {"rotation": config.rotations, "noise": config.noise_levels,
              "blur": config.blur_levels, "contrast": config.contrast_levels}  # fmt: skip
    sweeps = {
        name: [accuracy(mnist.model, TensorSplit(built.CORRUPTIONS[name](
            mnist.data.test.inputs, level), mnist.data.test.targets)) for level in values]
        for name, values in levels.items()
    }  # fmt: skip
    run.update_summary(shift={"table": table, "levels": {k: list(v) for k, v in levels.items()},
                              "accuracy": sweeps})  # fmt: skip
    metrics: dict[str, Any] = {
        f"{trained}_on_{tested}_accuracy": value
        for trained, row in table.items()
        for tested, value in row.items()
    }
    metrics |= {f"worst_{name}_accuracy": min(values) for name, values in sweeps.items()}
    if 90 in config.rotations:
        metrics["rotated_90_accuracy"] = sweeps["rotation"][config.rotations.index(90)]
    if config.figures:
        drawn.shift(run, table, tests, levels, sweeps, mnist.data.test.inputs[:1])
    return metrics


@torch.inference_mode()
def accuracy(model: nn.Module, split: TensorSplit, *, batch: int = 500) -> float:
    model.eval()
    right = sum(int((model(x).argmax(1) == y).sum())
                for x, y in zip(split.inputs.split(batch), split.targets.split(batch),
                                strict=True))  # fmt: skip
    return right / len(split)


# -- 4. spurious correlation: coloured MNIST ------------------------------------------------------
def spurious(config: Config, run: Run, grey: Trained) -> dict[str, Any]:
    (coloured,) = own_runs(config, run, "spurious", ["dataset=coloured-mnist",
                           f"colour_agreement={config.colour_agreement:g}"], count=1)  # fmt: skip
    measured = coloured.summary["metrics"]
    metrics = {
        "coloured_train_accuracy": measured["train_accuracy"],
        "coloured_test_accuracy": measured["test_accuracy"],
        "coloured_agreeing_test_accuracy": measured["test_accuracy_colours_agree"],
        "colour_follow_rate": measured["colour_follow_rate"],
        "grey_train_accuracy": accuracy(grey.model, grey.data.train),
        "grey_test_accuracy": accuracy(grey.model, grey.data.test),
    }
    metrics["coloured_gap"] = metrics["coloured_train_accuracy"] - metrics["coloured_test_accuracy"]
    metrics["grey_gap"] = metrics["grey_train_accuracy"] - metrics["grey_test_accuracy"]
    if config.figures:
        painted = built.coloured_mnist(config.colour_agreement).splits
        drawn.spurious(run, metrics, painted, agreement=config.colour_agreement)
    return metrics
