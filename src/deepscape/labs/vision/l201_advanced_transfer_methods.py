"""The methods of vision/201/advanced-transfer, each a small function on a `PretrainedClassifier`:
layer groups and their learning rates (discriminative LRs), the unfreezing schedule, LoRA on the
1×1 convolutions (peft), AdaBN, MobileNetV2 behind timm's interface, and the measured memory of
one training step."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from deepscape import costs
from deepscape.config import ConfigError
from deepscape.models.pretrained import PretrainedClassifier, load_mobilenet_v2
from deepscape.optim import make_optimizer
from deepscape.tasks import Task

MOBILENET = "mobilenet_v2"
# MobileNetV2's 17 inverted residuals, by the stage (width and resolution) they belong to:
# torchvision's `features.1` … `features.17`; `features.0` is the stem, `features.18` the head
MOBILENET_STAGES = ((1,), (2, 3), (4, 5, 6), (7, 8, 9, 10), (11, 12, 13), (14, 15, 16), (17,))


# -- MobileNetV2 (torchvision's weights) behind timm's interface ----------------------------------
class MobileNetV2Backbone(nn.Module):
    """torchvision's pretrained MobileNetV2 with the methods `PretrainedClassifier` and the probe
    call on timm models (forward_features, forward_head, get_classifier), and a fresh classifier
    of `num_classes` (without the dropout in front of torchvision's)."""

    def __init__(self, num_classes: int):
        super().__init__()
        net = load_mobilenet_v2()
        self.features, self.pretrained_cfg = net.features, net.pretrained_cfg
        self.classifier = nn.Linear(net.classifier[-1].in_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # "b 3 s s -> b 1280 s/32 s/32"
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier


# -- layer groups: discriminative learning rates and gradual unfreezing ---------------------------
def layer_groups(model: PretrainedClassifier) -> list[list[str]]:
    """The model's parameters in groups from the input to the output, each a list of name
    prefixes: the stem, each stage of blocks, the last 1×1 convolution, the classifier. A stage
    is the natural unit: its blocks share a width and a resolution."""
    backbone = model.backbone
    if isinstance(backbone, MobileNetV2Backbone):
        stages = [[f"features.{i}." for i in stage] for stage in MOBILENET_STAGES]
        groups = [["features.0."], *stages, ["features.18."], ["classifier."]]
    elif hasattr(backbone, "blocks") and hasattr(backbone, "conv_stem"):  # timm's EfficientNets
        stages = [[f"blocks.{i}."] for i in range(len(backbone.blocks))]
        groups = [["conv_stem.", "bn1."], *stages, ["conv_head.", "bn2."], ["classifier."]]
    else:
        raise ConfigError(
            f"no layer groups for {type(backbone).__name__}: use backbone=tf_efficientnet_lite0 "
            f"or backbone={MOBILENET}, or method=finetune or lora"
        )
    groups = [[f"backbone.{prefix}" for prefix in group] for group in groups]
    names = [name for name, _ in model.named_parameters()]
    ungrouped = [n for n in names if not any(n.startswith(p) for g in groups for p in g)]
    if ungrouped:  # every parameter must learn at a known rate
        raise ValueError(f"parameters in no layer group: {ungrouped[:3]}")
    return groups


def layer_decay_scales(groups: list[list[str]], decay: float) -> dict[str, float]:
    """`Trainer.fit`'s lr_scales for layer-wise LR decay: the classifier at the full LR, each
    group below at `decay` × the LR of the group above it (ULMFiT's discriminative fine-tuning,
    BEiT's layer decay): the lower a layer, the more general what it knows, the less it moves."""
    return {
        prefix: decay**depth for depth, group in enumerate(reversed(groups)) for prefix in group
    }


def unfreezing(
    model: nn.Module, groups: list[list[str]], *, total_steps: int, unfreeze_by: float
) -> Callable[[int], None]:
    """ULMFiT's gradual unfreezing as `Trainer.fit`'s on_step: at first only the top group (the
    classifier) trains; then one more group from the top every `every` steps, so that all train
    from `unfreeze_by` of the steps on. A function of the step alone, so a resumed run freezes
    exactly what the uninterrupted one did."""
    every = max(1, math.floor(unfreeze_by * total_steps / max(1, len(groups) - 1)))
    # by name, looked up at each step: sharding (shard=true) replaces the parameters themselves
    by_group = [
        [name for name, _ in model.named_parameters() if any(name.startswith(x) for x in group)]
        for group in reversed(groups)  # top first
    ]

    def on_step(step: int) -> None:
        unfrozen = min(len(by_group), 1 + step // every)
        parameters = dict(model.named_parameters())
        for depth, names in enumerate(by_group):
            for name in names:
                parameters[name].requires_grad_(depth < unfrozen)

    return on_step


# -- LoRA on the 1×1 convolutions (peft) ----------------------------------------------------------
def pointwise_convolutions(model: nn.Module) -> list[str]:
    """Names of the 1×1 convolutions that mix channels (not the depthwise ones): in an
    inverted-residual network they hold most of the weights."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
    ]


def add_lora(model: PretrainedClassifier, *, rank: int, alpha: float) -> PretrainedClassifier:
    """LoRA (Hu et al. 2021) on every 1×1 convolution: W·x + (alpha/rank)·B·A·x, with A a 1×1
    convolution down to `rank` channels and B one back up, B starting at zero (so the model
    computes exactly what it did). W is frozen; only A, B and the classifier learn."""
    if rank < 1:
        raise ConfigError(f"lora_rank={rank}: a LoRA update needs rank ≥ 1 (try lora_rank=4)")
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=pointwise_convolutions(model)
    )
    model = inject_adapter_in_model(config, model)  # in place: adapters only are trainable
    model.backbone.get_classifier().requires_grad_(True)  # the new task's head learns too
    return model


def trainable_share(model: nn.Module) -> dict[str, float]:
    """Trainable parameters, and their share of the model's own parameters without adapters
    (what full fine-tuning trains)."""
    trainable = costs.parameters(model, trainable_only=True)
    base = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)
    return {"trainable_parameters": trainable, "trainable_share": trainable / base}


# -- AdaBN: batch-norm statistics of the target domain --------------------------------------------
@torch.no_grad()
def adapt_batch_norm(
    model: nn.Module, images: torch.Tensor, *, batch_size: int = 256, device: Any = "cpu"
) -> int:
    """AdaBN (Li et al. 2016): every batch norm's running mean and variance re-estimated on
    `images` of the target domain (no labels): the average of the batches' statistics, each
    batch weighted alike (momentum None). Weights, and the norms' scales and shifts, stay as they
    are. Returns the number of norms adapted."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average, not an exponential one
        norm.train()  # normalise with the batch's statistics and record them
    try:
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size].to(device))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
    return len(norms)


# -- memory of one training step, measured ---------------------------------------------------------
def step_memory(
    model: nn.Module,
    task: Task,
    batch: tuple[torch.Tensor, torch.Tensor],
    config: Any,
    *,
    lr_scales: dict[str, float] | None = None,
    device: str = "cpu",
) -> costs.TrainingMemory:
    """The bytes one AdamW step of a copy of `model` holds on `batch` (the trainable parameters
    as they are), from PyTorch's profiler: deepscape.costs.training_step_memory."""
    model = copy.deepcopy(model).train()
    optimizer = make_optimizer(model, config, lr_scales)

    def update(outputs: tuple[torch.Tensor, torch.Tensor]) -> None:
        outputs[0].backward()
        optimizer.step()

    return costs.training_step_memory(lambda: task.loss(model, batch), update, device=device)
