"""What a model costs, measured: parameters, FLOPs of a forward pass, and latency.

Every lab that compares models (architectures, attention, compression, model-as-maths) reports
these three from the model in hand, in the same run — never from a paper's table. FLOPs are
counted by PyTorch's own `FlopCounterMode` (a multiply-add is 2 FLOPs, as in the papers that quote
GFLOPs; elementwise ops are not counted, so norms and activations are free by this measure).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["flops_by_module", "forward_flops", "latency_ms", "parameters"]


def parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """How many numbers the model learns (shared tensors counted once)."""
    seen = {id(p): p for p in model.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in seen.values())


def _inputs(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


@torch.no_grad()
def forward_flops(model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor]) -> int:
    """FLOPs of one forward pass of `model` on `inputs` (the whole batch), in eval mode."""
    return sum(flops_by_module(model, inputs, depth=0).values())


@torch.no_grad()
def flops_by_module(
    model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], *, depth: int = 1
) -> dict[str, int]:
    """FLOPs of one forward pass, per module down to `depth` levels of the module tree ("" is
    the whole model at depth 0): where a model spends its arithmetic."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, depth=depth + 1)  # the root is a level of its own
    try:
        with counter:
            model(*_inputs(inputs))
    finally:
        model.train(was_training)
    # keys are "Global" and module paths under the root's class name: "Net", "Net.stem.0", …
    by_module = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        _root, _, path = key.partition(".")
        if path.count(".") + 1 == depth if path else depth == 0:
            by_module[path] = int(sum(ops.values()))
    return by_module


@torch.inference_mode()
def latency_ms(
    model: nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], *, runs: int = 20
) -> float:
    """Median milliseconds of `model(inputs)` over `runs` calls in eval mode, after one untimed
    call (the first allocates memory and picks kernels)."""
    was_training = model.training
    model.eval()
    args = _inputs(inputs)
    try:
        model(*args)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(*args)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000 * statistics.median(times)
