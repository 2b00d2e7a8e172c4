"""Looking inside a trained vision model: its filters, its feature maps, and gradient maps.

Works on any finished vision run in the run store: the run's lab rebuilds the architecture
(`model_for(config, data)`), the weights come from the run's safetensors file, and the run's own
dataset supplies the images. The attributions are captum's, the maintained implementations:

    saliency               |∂ score / ∂ pixel|                        (Simonyan et al. 2014)
    smoothgrad             saliency averaged over noisy copies         (Smilkov et al. 2017)
    integrated_gradients   gradients along the path from black         (Sundararajan et al. 2017)
    gradcam                last conv layer's maps weighted by their gradients, upsampled
                                                                       (Selvaraju et al. 2017)

Every map is returned shaped "b h w", like the input images, as an importance (≥ 0) per pixel.
The sanity check of Adebayo et al. (2018) compares the maps of the trained model with those of the
same architecture with random weights: a map that barely changes explains the input, not the model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import (
    IntegratedGradients,
    LayerActivation,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)
from safetensors import SafetensorError
from safetensors.torch import load_model
from torch import nn
from torchmetrics.functional import spearman_corrcoef

from deepscape import landscape
from deepscape.config import ConfigError, closest
from deepscape.data import Splits, get_dataset
from deepscape.runs import Run

METHODS = ("saliency", "smoothgrad", "integrated_gradients", "gradcam")
METHOD_TITLES = {
    "saliency": "Saliency",
    "smoothgrad": "SmoothGrad",
    "integrated_gradients": "Integrated Gradients",
    "gradcam": "Grad-CAM",
}


class InspectError(ConfigError):
    """The run or the request cannot be inspected; the message says why and what to do."""


@dataclass
class Trained:
    """A finished vision run's model, in eval mode on the CPU, with the data it was trained on."""

    run: Run
    model: nn.Module
    data: Splits

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """ "c h w" of the images the model takes."""
        return tuple(self.data.test.inputs.shape[1:])  # type: ignore[return-value]

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """ "b c h w" pixels in [0, 1] -> "b classes" probabilities."""
        return torch.cat([self.model(batch).softmax(1) for batch in images.split(1024)])


def load_trained(run: Run) -> Trained:
    """The trained model of `run`, or an InspectError saying why it has none."""
    lab_id = run.summary["lab"]
    try:
        module = landscape.load().lab(lab_id).module()
    except LookupError as error:
        raise InspectError(
            f"run {run.id} is of lab {lab_id}, which cannot be loaded: {error}"
        ) from None
    if hasattr(module, "trained_for"):  # a lab whose model and images are not `model_for`'s
        return module.trained_for(run)
    if not hasattr(module, "model_for"):
        raise InspectError(
            f"run {run.id} is a run of {lab_id}, which has no vision model of its own to inspect: "
            "pick a run that trained one, e.g. from `deepscape runs --lab vision/101/digits`"
        )
    if not run.weights_path.is_file():
        raise no_weights(run)
    config = run.config_as(module.Config)
    data = get_dataset(config.dataset, config.data_dir)
    if data.modality != "image":
        raise InspectError(f"run {run.id} learnt {data.modality}, not images: nothing to draw")
    model = module.model_for(config, data)
    load_weights(run, model)
    return Trained(run, model.float().eval(), data)


def language_model_of(run: Run) -> Any | None:
    """The trained language model of `run` (its lab's `language_model_for`: a model that
    completes text), or None when its lab trains none."""
    try:
        module = landscape.load().lab(run.summary["lab"]).module()
    except LookupError:
        return None
    if not hasattr(module, "language_model_for"):
        return None
    return module.language_model_for(run)


def no_weights(run: Run) -> InspectError:
    lab_id = run.summary["lab"]
    return InspectError(
        f"run {run.id} has no weights ({run.status}): finish it with "
        f"`deepscape run {lab_id} --resume {run.id}`, or pick a finished run"
    )


def load_weights(run: Run, model: nn.Module) -> None:
    """The run's safetensors weights into `model` (rebuilt by the run's lab), or an InspectError
    that says what to do."""
    if not run.weights_path.is_file():
        raise no_weights(run)
    try:
        load_model(model, run.weights_path)
    except (SafetensorError, RuntimeError, OSError) as error:
        raise InspectError(
            f"the weights of run {run.id} are corrupt or do not fit its model ({error}): "
            f"train it again with `deepscape run {run.summary['lab']}`"
        ) from None


# -- layers ---------------------------------------------------------------------------------------
def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """The convolutions, by their PyTorch names, from input to output."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def map_layers(model: nn.Module) -> list[str]:
    """Layers whose outputs are worth looking at as maps: each convolution's block (convolution,
    normalisation, activation — the maps the next layer reads), else the bare convolutions."""
    blocks = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Sequential) and len(m) > 1 and isinstance(m[0], nn.Conv2d)
    ]
    return blocks or list(conv_layers(model))


def layer(model: nn.Module, name: str) -> nn.Module:
    """The module named `name`, or an InspectError listing the convolutions one can choose."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        convs = ", ".join(conv_layers(model)) or "none"
        raise InspectError(
            f"no layer '{name}' in this model{closest(name, modules)}; its convolutions: {convs}"
        )
    return modules[name]


def first_layer_filters(model: nn.Module, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """The first learnt layer's weights as images, "n c h w": 3×3 kernels of a CNN, or for a
    linear model or MLP, each unit's weight per pixel (a template the size of the input)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().clone()
        if isinstance(module, nn.Linear):
            return module.weight.detach().reshape(-1, *input_shape).clone()
    raise InspectError("this model has no convolution or linear layer to show")


def feature_maps(model: nn.Module, image: torch.Tensor, name: str) -> torch.Tensor:
    """What layer `name` outputs for one image "c h w": "channels h w"."""
    activation = LayerActivation(model, layer(model, name)).attribute(image.unsqueeze(0))
    if activation.ndim != 4:
        raise InspectError(f"layer '{name}' outputs a vector, not maps: pick a convolution")
    return activation[0].detach()


# -- gradient maps --------------------------------------------------------------------------------
def gradient_maps(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, method: str
) -> torch.Tensor:
    """How much each pixel of each image ("b c h w") matters to the score of its target class,
    by `method` (one of METHODS): "b h w", ≥ 0."""
    inputs = images.detach().clone().requires_grad_()
    targets = targets.tolist()
    if method == "saliency":
        attribution = Saliency(model).attribute(inputs, target=targets, abs=True)
    elif method == "smoothgrad":
        noise = 0.15 * float(images.max() - images.min())  # 15 % of the pixel range, as published
        attribution = NoiseTunnel(Saliency(model)).attribute(
            inputs, nt_type="smoothgrad", nt_samples=32, stdevs=noise, target=targets, abs=True
        )
    elif method == "integrated_gradients":
        baseline = torch.zeros_like(inputs)  # black: "no ink"
        attribution = (
            IntegratedGradients(model)
            .attribute(inputs, baselines=baseline, target=targets, n_steps=32)
            .abs()
        )
    elif method == "gradcam":
        convs = conv_layers(model)
        if not convs:
            raise InspectError("Grad-CAM needs a convolution, and this model has none")
        last = list(convs.values())[-1]
        coarse = LayerGradCam(model, last).attribute(inputs, target=targets, relu_attributions=True)
        attribution = LayerAttribution.interpolate(coarse, images.shape[-2:], "bilinear")
    else:
        raise InspectError(
            f"unknown method '{method}'{closest(method, METHODS)}; methods: {', '.join(METHODS)}"
        )
    return attribution.detach().sum(1)  # "b c h w -> b h w": channels add up


# -- mistakes and the sanity check ----------------------------------------------------------------
def confident_mistakes(probabilities: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Indices of the wrong predictions, the most confident first."""
    confidence, predicted = probabilities.max(1)
    wrong = (predicted != targets).nonzero().flatten()
    return wrong[confidence[wrong].argsort(descending=True)]


def randomized_copy(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """The same architecture with every learnt weight re-drawn from its initialisation (batch-norm
    statistics reset too); the input normalisation, a property of the data, is kept."""
    randomized = copy.deepcopy(model)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    for module in randomized.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    torch.random.set_rng_state(generator_state)
    return randomized.eval()


def rank_similarity(maps: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between two sets of maps, one value per image: "b h w" -> "b".
    1: the same pixels matter in the same order; 0: unrelated."""
    a, b = (
        maps.flatten(1).T.double(),
        other.flatten(1).T.double(),
    )  # "(h w) b": one column per image
    return spearman_corrcoef(a, b).float().reshape(-1)
