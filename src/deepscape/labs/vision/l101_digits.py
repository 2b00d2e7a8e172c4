"""vision/101/digits — your first trained network: handwritten digits.

The lesson, in the order of the code. Fixed train, validation and test splits of real
handwritten digits. A model f(x, W) turns pixels into one score per class, W learnt: from the
bottom of the ladder (softmax regression) through an MLP to a small CNN. Cross-entropy and
gradient descent, W ← W − lr · ∇loss one batch at a time, watched on the validation split; the
test split is touched once, at the end. Then read what happened: the error curves, the learning
rate over the run, the gradient norm and the size of each layer's update, the confusion matrix
and the mistakes. Normalisation, augmentation and the schedule are what take the CNN past a
classical model.

The embedded digits (1,797 images of 8×8 pixels) train in seconds; mnist-5k and full MNIST are
one option away. On full MNIST the last recipe below reaches ~99.4 % in ~20 s of training on 2
cores: a narrower CNN with a third stage, bf16, and no augmentation, which a 2-epoch schedule
cannot use.

    deepscape run vision/101/digits                     # the CNN on embedded digits
    deepscape run vision/101/digits model=linear        # the bottom of the ladder
    deepscape run vision/101/digits dataset=mnist data_dir=path/to/mnist width=16 depth=3 \
        precision=bf16 batch_size=128 augment=false label_smoothing=0 dropout=0 lr=5e-3 epochs=2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from deepscape import figures
from deepscape.config import TrainConfig, option
from deepscape.data import Splits, get_dataset
from deepscape.data.augment import RandomAffine
from deepscape.models.vision import build_model
from deepscape.runs import Run
from deepscape.tasks import Classification, Evaluation, classify, inputs_only
from deepscape.train import Trainer


@dataclass
class Config(TrainConfig):
    # data
    dataset: Literal["digits", "mnist-5k", "mnist"] = option("digits", "which digits to learn")
    data_dir: str | None = option(None, "folder with the MNIST IDX files (dataset=mnist)")
    train_fraction: float = option(1.0, "share of the training split to learn from (0–1]")
    augment: bool = option(True, "random small rotations, zooms and shifts of training images")
    # model: f(x, W)
    model: Literal["linear", "mlp", "cnn"] = option("cnn", "the rung of the model ladder")
    width: int = option(32, "hidden units (mlp) or channels of the first stage (cnn)")
    depth: int = option(2, "hidden layers (mlp) or stages of two convolutions (cnn)")
    dropout: float = option(0.1, "dropout before the classifier")
    # training (overriding TrainConfig's defaults for this lab)
    epochs: int = option(40, "passes over the training split")
    batch_size: int = option(32, "examples per optimisation step")
    lr: float = option(3e-3, "peak learning rate")
    weight_decay: float = option(5e-4, "decoupled weight decay")
    label_smoothing: float = option(0.1, "cross-entropy label smoothing")
    figures: bool = option(True, "draw the standard figures (a sweep of many runs may skip them)")


def model_for(config: Config, data: Splits) -> nn.Module:
    """The model a run with `config` trains (labs that study digits runs rebuild it with this)."""
    return build_model(
        config.model,
        images=data.train.inputs,
        num_classes=len(data.classes),
        width=config.width,
        depth=config.depth,
        dropout=config.dropout,
    )


def run(config: Config, run: Run) -> dict[str, float]:
    # 1. Data: fixed train / validation / test splits of real handwritten digits.
    data = get_dataset(config.dataset, config.data_dir).with_train_fraction(config.train_fraction)
    run.update_summary(data={"name": data.name, "source": data.source, **data.sizes})

    # 2. The model f(x, W): one rung of the ladder, with the training pixels' mean and std inside.
    model = model_for(config, data)

    # 3. Training: gradient descent on the loss, watched on the validation split.
    augment = RandomAffine(degrees=10, shift=0.1, scale=0.1) if config.augment else None
    task = Classification(
        len(data.classes), label_smoothing=config.label_smoothing, augment=inputs_only(augment)
    )
    trainer = Trainer(config, run, task=task)
    model = trainer.fit(model, data.train, data.validation)

    # 4. The test split, touched once, at the end.
    test = classify(trainer, model, data.test)

    # 5. What happened: error curves, learning rate, gradients & updates, mistakes.
    if config.figures:
        draw_figures(run, config, data, test)

    return {
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "val_accuracy": run.evaluations()[-1]["val_accuracy"],  # the last evaluation, as recorded
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def draw_figures(run: Run, config: Config, data: Splits, test: Evaluation) -> None:
    figures.training_curves(run, title=f"{config.model} on {data.name}: training curves")
    figures.optimization(run, title=f"{config.model} on {data.name}: LR, gradients, updates")
    figures.confusion_matrix(run, test.targets, test.predictions, data.classes)
    figures.prediction_grid(run, data.test.inputs, test.targets, test.probabilities, data.classes)
