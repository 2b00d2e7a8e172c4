"""vision/201/diffusion's judge: vision/101/digits' CNN, its accuracy on the samples and an FID
on its penultimate features, with the floors real digits reach."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from deepscape import metrics as registry
from deepscape.config import ConfigError
from deepscape.data import Splits
from deepscape.inside import load_trained
from deepscape.labs.vision import l101_digits
from deepscape.runs import Run, RunNotFound, RunStore
from deepscape.sweep import stage

if TYPE_CHECKING:
    from deepscape.labs.vision.l201_diffusion import Config

DIGITS = "vision/101/digits"
# vision/101/digits' recipe for MNIST (its docstring), in fp32: no augmentation, which could
# teach the judge to accept what a sampler smudged
BATCH = 128
RECIPE = ["model=cnn", "width=16", "depth=3", f"batch_size={BATCH}", "augment=false",
          "label_smoothing=0", "dropout=0", "lr=5e-3", "figures=false"]  # fmt: skip
DIGIT_IMAGES = ("mnist", "mnist-5k")  # 28×28, as the samples are


class PenultimateFeatures(nn.Module):
    """The judge's features just before its classifier (the global average of its last stage):
    what FID compares here in place of Inception's. `num_features` tells torchmetrics their size
    without a trial image."""

    def __init__(self, model: nn.Sequential):
        super().__init__()
        self.standardize, self.cnn = model[0], model[1]
        self.num_features = self.cnn.classify.in_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # "b 1 28 28" in [0, 1] → "b d"
        return self.cnn.pool(self.cnn.features(self.standardize(images))).flatten(1)


@dataclass
class Judge:
    run_id: str
    model: nn.Module
    test_accuracy: float

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, *, batch: int = 500) -> torch.Tensor:
        return torch.cat([self.model(x).argmax(1) for x in images.split(batch)])

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """The share of `images` the judge calls the class they were asked to be."""
        return float((self.predict(images) == labels).float().mean())

    @torch.inference_mode()
    def fid(self, real: torch.Tensor) -> Any:
        """torchmetrics' FID on the judge's features, holding the statistics of `real`."""
        metric = registry.get("fid").make(feature=PenultimateFeatures(self.model),
                                          reset_real_features=False)  # fmt: skip
        for x in real.split(500):
            metric.update(x, real=True)
        return metric

    @torch.inference_mode()
    def fid_of(self, metric: Any, images: torch.Tensor) -> float:
        metric.reset()  # forgets the generated images only
        for x in images.split(500):
            metric.update(x, real=False)
        return float(metric.compute())


def judge_for(config: Config, run: Run, train_images: int) -> Judge:
    """`config.judge`'s trained CNN, or a digits CNN trained now on the same digits as a run of its
    own (named in this run's summary, so that a resumed run reuses it)."""
    if config.judge:
        try:
            source = RunStore(run.dir.parent).get(config.judge)
        except RunNotFound:
            raise ConfigError(f"judge={config.judge}: no such run; list trained ones with "
                              f"`deepscape runs --lab {DIGITS}`, or leave judge empty to train "
                              "one") from None  # fmt: skip
        check_judge(source)
    else:
        # the digits lab counts in epochs: as many as make about `judge_steps` steps of 128
        epochs = max(1, round(config.judge_steps * BATCH / train_images))
        items = [f"dataset={config.dataset}", *RECIPE, f"epochs={epochs}",
                 f"threads={config.threads}", f"device={config.device}",
                 f"precision={config.precision}"]  # fmt: skip
        if config.data_dir:
            items.append(f"data_dir={config.data_dir}")
        (source,) = stage(run, "judge", DIGITS, l101_digits.Config, items)
        if source.status != "finished":
            raise RuntimeError(f"training the judge failed: see run {source.id}")
    return load_judge(source)


def load_judge(source: Run) -> Judge:
    trained = load_trained(source)
    return Judge(source.id, trained.model, source.summary["metrics"]["test_accuracy"])


def check_judge(source: Run) -> None:
    """A judge must be a finished digits CNN that saw 28×28 digits, as the samples are."""
    config = source.config
    if source.summary["lab"] != DIGITS:
        raise ConfigError(f"judge={source.id} is a run of {source.summary['lab']}: pick a "
                          f"{DIGITS} run")  # fmt: skip
    if config.get("dataset") not in DIGIT_IMAGES or config.get("model") != "cnn":
        raise ConfigError(f"judge={source.id} is a {config.get('model')} on "
                          f"{config.get('dataset')}: the judge must be a cnn that learnt 28×28 "
                          "digits (dataset=mnist or mnist-5k)")  # fmt: skip
    if source.status != "finished":
        raise ConfigError(f"judge={source.id} is {source.status}, not finished: pick a finished "
                          "run")  # fmt: skip


def real_floors(judge: Judge, data: Splits, samples: int) -> dict[str, float]:
    """FID between real digits: the test split's two halves, and `samples` training digits (as
    many as a sampler's images) against the test split, what a perfect sampler would score."""
    test, train = shuffled(data.test.inputs), shuffled(data.train.inputs)
    half = len(test) // 2
    halves = judge.fid_of(judge.fid(test[:half]), test[half:])
    same_size = judge.fid_of(judge.fid(data.test.inputs), train[:samples])
    return {"halves": halves, "same_size": same_size}


def shuffled(images: torch.Tensor) -> torch.Tensor:
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))]
