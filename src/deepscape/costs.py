"""What a model costs, measured: parameters, FLOPs of a forward pass, and latency.

Every lab that compares models (architectures, attention, compression, model-as-maths) reports
these three from the model in hand, in the same run — never from a paper's table. FLOPs are
counted by PyTorch's own `FlopCounterMode` (a multiply-add is 2 FLOPs, as in the papers that quote
GFLOPs; elementwise ops are not counted, so norms and activations are free by this measure).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "TrainingMemory",
    "flops_by_module",
    "forward_flops",
    "interleaved_latency_ms",
    "latency_ms",
    "matmul_peak_flops",
    "parameters",
    "training_step_memory",
]


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
    """Median milliseconds of `model(inputs)` over `runs` calls in eval mode without autograd
    (inference: no graph is recorded), after one untimed call (the first allocates memory and
    picks kernels)."""
    was_training = model.training
    model.eval()
    args = _inputs(inputs)
    try:
        return interleaved_latency_ms({"model": lambda: model(*args)}, runs=runs, rounds=1)["model"]
    finally:
        model.train(was_training)


def interleaved_latency_ms(
    calls: dict[str, Callable[[], object]], *, runs: int = 100, rounds: int = 10
) -> dict[str, float]:
    """Median milliseconds of each of `calls` (name → a call taking no arguments, a model on its
    input), timed in turns: `rounds` rounds, each calling every one `runs // rounds` times after
    one untimed call. Models that are compared with each other are then measured under the same
    conditions — a machine that speeds up or slows down during the measurement (clocks, caches,
    other work) moves them all alike, not the one that happened to be timed then."""
    per_round = max(1, runs // rounds)
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, call in calls.items():
                call()
                for _ in range(per_round):
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(spent) for name, spent in times.items()}


# -- memory ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingMemory:
    """Bytes one training step holds, by kind, as the profiler's memory records classify them."""

    parameters: int
    gradients: int  # of the parameters, after backward
    optimizer_state: int  # momentum, Adam's moments, step counts
    activations: int  # what the forward pass leaves for backward, when backward starts
    peak: int  # everything live at the step's fullest moment (temporaries included)


def _memory_rows(run: Callable[[], Any], device: str) -> tuple[Any, list[list[int]], list[Any]]:
    """Run `run` under the profiler with memory records: (its result, the timeline's rows of
    live bytes by category, the categories of the columns)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Category, MemoryProfileTimeline

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device != "cpu" else [])
    with profile(
        activities=activities, record_shapes=True, profile_memory=True, with_stack=True
    ) as prof:
        result = run()
    # private API, the one PyTorch's own memory-timeline export reads: a first unused column,
    # then one per category in this order
    order = [Category.PARAMETER, Category.OPTIMIZER_STATE, Category.INPUT, Category.TEMPORARY,
             Category.ACTIVATION, Category.GRADIENT, Category.AUTOGRAD_DETAIL, None]  # fmt: skip
    _, rows = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(device)
    return result, rows, [None, *order]


def training_step_memory(
    forward: Callable[[], Any], update: Callable[[Any], object], *, device: str = "cpu"
) -> TrainingMemory:
    """Measure one training step from the profiler's memory records: `forward()` (its result is
    passed to `update`, which runs backward and the optimizer step, from gradients set to None).
    Activations are the bytes the forward pass leaves alive; parameters, gradients and optimizer
    state are the profiler's own classification of the update's tensors. (On a GPU,
    `torch.cuda.max_memory_allocated` gives the peak alone; the profiler also says what it is.)"""
    from torch.profiler._memory_profiler import Category

    outputs, rows, _ = _memory_rows(forward, device)
    activations = sum(rows[-1]) - sum(rows[0])
    _, rows, columns = _memory_rows(lambda: update(outputs), device)

    def kind(row: list[int], category: Category) -> int:
        return row[columns.index(category)]

    return TrainingMemory(
        parameters=max(kind(row, Category.PARAMETER) for row in rows),
        gradients=kind(rows[-1], Category.GRADIENT),
        optimizer_state=max(kind(row, Category.OPTIMIZER_STATE) for row in rows),
        activations=activations,
        peak=max(sum(row) for row in rows),
    )


def matmul_peak_flops(
    *, dtype: torch.dtype = torch.float32, size: int = 2048, runs: int = 5
) -> float:
    """This machine's measured matrix-multiplication speed, FLOP/s: the median of `runs` square
    `size` × `size` products (2·size³ FLOPs each) through `F.linear`, the kernel a model's
    layers call (in bf16 far faster than `a @ b` on some CPUs): a model's throughput ceiling."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    F.linear(a, b)  # warm-up: threads, kernels
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        F.linear(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)
