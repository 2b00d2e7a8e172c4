"""vision/201/model-as-maths, part 2: a training step's memory and arithmetic, predicted.

Memory, in bytes, for a model of N parameters stored in fp32:
    parameters        4N
    gradients         4N                      (one per parameter, in the parameter's dtype)
    optimizer state   SGD 0 · momentum 4N · AdamW 8N (two moments) + a step count per tensor
    activations       what the forward pass leaves for backward, layer by layer:
        linear, conv      its input                  (under bf16 autocast: a bf16 copy of the
                                                      input and of the weight)
        ReLU              its output                 batch norm: its input
        max-pool          its input + int64 indices  dropout: a one-byte mask
        RMSNorm           its input, x/rms(x), 1/rms(x)
        attention         q, k, v, the output, a log-sum-exp per head and query
        SwiGLU            gate‖up, SiLU(gate)
        the loss          logits and their log-softmax
      A tensor two layers keep (a ReLU's output is the next conv's input) counts once.
FLOPs of a forward pass: 2 per multiply-add — linear 2·in·out per row, conv 2·(c_in/groups)·k²
per output value, attention 4·t²·d_head per head (QKᵀ, then the weights times V); a training
step costs about 3× the forward (backward computes two products per forward one).

`predict_memory` and `predict_flops` walk a real forward pass with module hooks and read only
shapes and dtypes; `deepscape.costs` measures the same from the profiler and FlopCounterMode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from deepscape.models import gpt

OPTIMIZER_COPIES = {"sgd": 0, "momentum": 1, "adamw": 2}  # fp32 tensors kept per parameter


@dataclass(frozen=True)
class MemoryBudget:
    parameters: int
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _key(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


class _Ledger:
    """Saved tensors, a storage counted once however many layers keep it."""

    def __init__(self, existing: list[Tensor]):
        self.seen = {_key(t) for t in existing}  # the batch and the weights are not activations
        self.bytes = 0

    def keep(self, t: Tensor) -> None:
        if _key(t) not in self.seen:
            self.seen.add(_key(t))
            self.bytes += _nbytes(t)

    def new(self, numel: int, dtype: torch.dtype) -> None:
        self.bytes += numel * torch.empty((), dtype=dtype).element_size()


def _matmul_layer(ledger: _Ledger, module: nn.Module, x: Tensor, low: torch.dtype | None) -> None:
    if low is None or x.dtype == low:
        ledger.keep(x)
    else:  # autocast casts input and weight to the low precision, and backward needs both
        ledger.new(x.numel(), low)
    if low is not None:
        for p in module.parameters(recurse=False):
            ledger.new(p.numel(), low)


def _attention(
    ledger: _Ledger, module: gpt.CausalSelfAttention, x: Tensor, dtype: torch.dtype
) -> None:
    b, t, _ = x.shape
    heads, kv, d = module.n_head, module.n_kv_head, module.head_dim
    ledger.new(b * t * (heads + 2 * kv) * d, dtype)  # q‖k‖v (v is a view of it, kept whole)
    ledger.new(b * t * (heads + kv) * d, dtype)  # q, k after RoPE, as attention keeps them
    ledger.new(b * heads * t, torch.float32)  # the log-sum-exp of each query's scores
    # the output is the projection's input, counted there


def _swiglu(ledger: _Ledger, module: gpt.MLP, x: Tensor, dtype: torch.dtype) -> None:
    b, t, _ = x.shape
    hidden = module.c_proj.in_features
    ledger.new(b * t * 2 * hidden, dtype)  # gate‖up (up is a view of it)
    ledger.new(b * t * hidden, dtype)  # SiLU(gate); SiLU(gate)·up is the projection's input


def predict_memory(
    model: nn.Module,
    forward: Callable[[], Any],
    *,
    optimizer: str,
    batch: list[Tensor],
    low: torch.dtype | None = None,
) -> MemoryBudget:
    """The memory of one training step of `model`, predicted from its parameter count and the
    shapes of one forward pass (`forward()` returns (loss, logits), run under autocast to `low`
    when given)."""
    params = list({id(p): p for p in model.parameters()}.values())
    n_bytes = sum(_nbytes(p) for p in params)
    state = OPTIMIZER_COPIES[optimizer] * n_bytes + (4 * len(params) if optimizer == "adamw" else 0)
    ledger = _Ledger([*batch, *params, *(b for b in model.buffers())])

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        x = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
        if x is None or not torch.is_grad_enabled():
            return
        out_dtype = output.dtype if isinstance(output, Tensor) else x.dtype
        if isinstance(module, nn.Linear | nn.Conv2d):
            _matmul_layer(ledger, module, x, low)
        elif isinstance(module, nn.ReLU):
            ledger.keep(output)
        elif isinstance(module, nn.BatchNorm2d) and module.training:
            ledger.keep(x)
            ledger.new(2 * module.num_features, torch.float32)  # batch mean and 1/std
        elif isinstance(module, nn.MaxPool2d):
            ledger.keep(x)
            ledger.new(output.numel(), torch.int64)
        elif isinstance(module, nn.Dropout) and module.training and module.p > 0:
            ledger.new(output.numel(), torch.bool)
        elif isinstance(module, nn.RMSNorm):
            ledger.keep(x)
            ledger.new(x.numel(), x.dtype)  # x / rms(x), which the scale's gradient needs
            ledger.new(x.numel() // x.shape[-1], torch.float32)
        elif isinstance(module, gpt.CausalSelfAttention):
            _attention(ledger, module, x, low or x.dtype)
        elif isinstance(module, gpt.MLP) and module.gated:
            _swiglu(ledger, module, x, low or out_dtype)

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.autocast("cpu", dtype=low or torch.bfloat16, enabled=low is not None):
            loss, logits = forward()
    finally:
        for handle in handles:
            handle.remove()
    ledger.keep(logits)
    ledger.new(logits.numel(), torch.float32)  # log-softmax, in fp32 under autocast too
    ledger.keep(loss)
    return MemoryBudget(n_bytes, n_bytes, state, ledger.bytes)


def predict_flops(model: nn.Module, inputs: Tensor) -> int:
    """FLOPs of one forward pass of `model` (in its current mode) by formula, layer by layer."""
    total = 0

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features
        elif isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2 * output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, gpt.CausalSelfAttention):
            b, t, _ = args[0].shape
            total += 4 * b * module.n_head * t * t * module.head_dim

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():  # in the model's own mode: eval may average views, train not
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total
