"""vision/101/transfer: a linear probe and fine-tuning of the offline EfficientNet-Lite0 on real
Fashion-MNIST photos, against objects10's CNN from scratch, on the same few labels."""

from __future__ import annotations

import os

import pytest
import torch

from deepscape.config import ConfigError
from deepscape.data.objects import FASHION_DEBIAN_DIR
from deepscape.inside import load_trained
from deepscape.lab import run_lab
from deepscape.labs.vision.l101_transfer import Config, labelled_splits
from deepscape.learning_curve import parse_sizes
from deepscape.runs import RunStore

TRANSFER = "vision/101/transfer"
SMALL = ["image_size=64", "validation_images=200", "test_images=500", "threads=2"]

# CI installs Debian's dataset-fashion-mnist: there a missing folder is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    not FASHION_DEBIAN_DIR.is_dir() and not os.environ.get("CI"),
    reason="needs Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist",
)


def weights_cache(tmp_path_factory) -> str:
    # the converted Lite0 weights: built once for the session, not in the user's home
    return str(tmp_path_factory.getbasetemp() / "weights-cache")


@pytest.fixture(autouse=True)
def cache_here(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DEEPSCAPE_CACHE", weights_cache(tmp_path_factory))


def test_every_arm_sees_the_same_labelled_validation_and_test_images():
    a = labelled_splits(Config(labelled=100, validation_images=200, test_images=500))
    b = labelled_splits(Config(labelled=100, validation_images=200, test_images=500))
    assert a.sizes == {"train": 100, "validation": 200, "test": 500}
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.test.inputs, b.test.inputs)
    assert torch.bincount(a.train.targets).tolist() == [10] * 10  # stratified
    more = labelled_splits(Config(labelled=1000, validation_images=200, test_images=500))
    assert len(more.train) == 1000 and torch.equal(more.test.targets, a.test.targets)


def test_sizes_are_checked_with_the_fix():
    assert parse_sizes("500,100,all", 55000, unit="images") == [100, 500, 55000]
    with pytest.raises(ConfigError, match="'lots' is not a number of images ≥ 10, or 0 or all"):
        parse_sizes("100,lots", 55000, unit="images")


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("probe"))
    items = ["method=probe", "labelled=100", *SMALL]
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: before `cache_here` runs
        patch.setenv("DEEPSCAPE_CACHE", weights_cache(tmp_path_factory))
        return run_lab(TRANSFER, items, store=store, show_progress=False)


def test_a_linear_probe_on_100_labels_reads_fashion(probe):
    summary = probe.summary
    assert summary["data"] == {**summary["data"], "train": 100, "test": 500}
    assert summary["metrics"]["test_accuracy"] >= 0.60  # chance is 10 %
    assert summary["metrics"]["l2"] in (1e-4, 1e-3, 1e-2)
    # validation and test features are kept for the next arm
    cached = sorted(p.name for p in (probe.dir.parent / "cache" / "features").iterdir())
    assert cached == [
        "tf_efficientnet_lite0-64px-fashion-mnist-test500.safetensors",
        "tf_efficientnet_lite0-64px-fashion-mnist-validation200.safetensors",
    ]


def test_a_probe_run_is_a_whole_model_that_inspect_and_serve_can_load(probe):
    trained = load_trained(probe)
    assert trained.input_shape == (1, 28, 28)
    images = trained.data.test.inputs[:50]
    with torch.inference_mode():
        predicted = trained.model.eval()(images).argmax(1)
    assert (predicted == trained.data.test.targets[:50]).float().mean() >= 0.5


def test_fine_tuning_starts_from_the_probe_and_learns(store):
    run = run_lab(
        TRANSFER,
        ["method=finetune", "labelled=100", "steps=30", *SMALL],
        store=store,
        show_progress=False,
    )
    metrics, epochs = run.summary["metrics"], run.history("epoch")
    assert len(epochs) == 8  # 30 steps of 32 from 100 images: 4 steps an epoch
    assert metrics["test_accuracy"] >= 0.60
    # the first step already stands on the probe's head: its loss is far below a fresh head's
    # ln 10 = 2.3, and training lowers it further
    first_step = run.history("step")[0]["loss"]
    assert first_step < 1.6 and epochs[-1]["train_loss"] < first_step


@pytest.mark.slow
def test_the_curve_runs_three_arms_per_size_and_draws_the_lesson(store):
    run = run_lab(TRANSFER, ["sizes=50,100", "steps=20", *SMALL], store=store, show_progress=False)
    metrics = run.summary["metrics"]
    assert {"scratch_50", "probe_50", "finetune_50", "scratch_100", "finetune_100"} <= set(metrics)
    assert metrics["compared_at"] == 100
    gain = metrics["finetune_100"] - metrics["scratch_100"]
    assert metrics["finetune_gain_at_1000"] == pytest.approx(gain)
    assert gain > 0  # with 100 labels, ImageNet's features beat 20 steps from scratch
    assert run.figure_path("transfer_curve").stat().st_size > 10_000
    arms = store.list(sweep=run.summary["sweeps"]["arms"])
    assert len(arms) == 6 and all(a.status == "finished" for a in arms)


def test_reading_features_leaves_the_model_for_the_trainer_to_wrap(store):
    # Accelerate skips a model it has prepared before: under a launcher, fine-tuning after the
    # probe trained unwrapped, each process on its own shard (measured: the two processes'
    # classifiers 0.02 apart after an epoch)
    from deepscape.labs.vision.l101_transfer import features
    from deepscape.models.pretrained import PretrainedClassifier, load_backbone
    from deepscape.tasks import Classification
    from deepscape.train import Trainer

    model = PretrainedClassifier(backbone=load_backbone(), frozen_statistics=True)
    run = store.create(TRANSFER, {})
    trainer = Trainer(Config(), run, task=Classification(10), progress=False)
    pooled = features(model, torch.rand(2, 3, 32, 32), trainer, what="features")
    assert pooled.shape[0] == 2 and not getattr(model, "_is_accelerate_prepared", False)


def test_frozen_statistics_keep_the_norms_in_eval_mode_while_the_rest_trains():
    from deepscape.models.pretrained import PretrainedClassifier, load_backbone

    model = PretrainedClassifier(backbone=load_backbone(), frozen_statistics=True).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 49 and not any(m.training for m in norms)
    assert model.training and model.backbone.classifier.training
    before = norms[0].running_mean.clone()
    model(torch.rand(4, 3, 32, 32))
    assert torch.equal(norms[0].running_mean, before)  # ImageNet's statistics, untouched
