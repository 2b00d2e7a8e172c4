"""vision/201/model-as-maths, part 1: layers as maths, forward and backward written out.

Each layer is two functions: `forward(inputs…) -> (output, saved)` keeps what its backward will
need, and `backward(grad_output, saved) -> grads of the inputs` applies the chain rule by hand.
Only matrix multiplications and elementwise operations — a convolution too: im2col (`unfold`)
lays every receptive field out as a column, and one matmul with the filters does the rest; its
backward folds the columns' gradients back onto the image (`fold`, im2col's adjoint).

    linear      y = x Wᵀ + b          ∂x = g W        ∂W = gᵀ x        ∂b = Σ g
    relu        y = x ⊙ [x > 0]       ∂x = g ⊙ [x > 0]
    softmax-CE  L = −mean log pₜ      ∂z = (softmax(z) − onehot(t)) / n
    conv        y = W_flat · im2col(x) + b
                ∂W = Σ g · im2col(x)ᵀ   ∂x = fold(W_flatᵀ · g)   ∂b = Σ g

`HandCNN` chains them into a small CNN whose `backward` walks the layers in reverse — the whole
of backpropagation — and `checked(layer)` wraps a layer as an autograd Function so that
`torch.autograd.gradcheck` can compare the hand-written gradients with finite differences.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


# -- the layers -----------------------------------------------------------------------------------
def linear_forward(x: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Any]:
    """ "b i" → "b o" """
    return x @ weight.T + bias, (x, weight)


def linear_backward(grad: Tensor, saved: Any) -> tuple[Tensor, Tensor, Tensor]:
    x, weight = saved
    return grad @ weight, grad.T @ x, grad.sum(0)


def relu_forward(x: Tensor) -> tuple[Tensor, Any]:
    mask = x > 0
    return x * mask, mask


def relu_backward(grad: Tensor, mask: Tensor) -> tuple[Tensor]:
    return (grad * mask,)


def cross_entropy_forward(logits: Tensor, targets: Tensor) -> tuple[Tensor, Any]:
    """Mean −log softmax(logits)[target], the max subtracted first so that exp cannot overflow."""
    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_probs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
    onehot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    return -(log_probs * onehot).sum() / len(logits), (log_probs.exp(), onehot)


def cross_entropy_backward(grad: Tensor, saved: Any) -> tuple[Tensor, None]:
    probs, onehot = saved
    return grad * (probs - onehot) / len(probs), None


def conv_forward(
    x: Tensor, weight: Tensor, bias: Tensor, *, stride: int = 1, padding: int = 0
) -> tuple[Tensor, Any]:
    """ "b c h w" → "b o h' w'": im2col, then one matmul with the filters "o (c kh kw)"."""
    out_channels, _, kernel, _ = weight.shape
    height = (x.shape[2] + 2 * padding - kernel) // stride + 1
    width = (x.shape[3] + 2 * padding - kernel) // stride + 1
    columns = F.unfold(x, kernel, padding=padding, stride=stride)  # "b (c kh kw) (h' w')"
    out = weight.reshape(out_channels, -1) @ columns + bias[:, None]  # "b o (h' w')"
    out = rearrange(out, "b o (h w) -> b o h w", h=height, w=width)
    return out, (columns, weight, x.shape[2:], stride, padding)


def conv_backward(grad: Tensor, saved: Any) -> tuple[Tensor, Tensor, Tensor]:
    columns, weight, size, stride, padding = saved
    out_channels, _, kernel, _ = weight.shape
    grad = rearrange(grad, "b o h w -> b o (h w)")
    grad_weight = torch.einsum("bol,bkl->ok", grad, columns).reshape(weight.shape)
    grad_columns = weight.reshape(out_channels, -1).T @ grad  # "b (c kh kw) (h' w')"
    grad_x = F.fold(grad_columns, size, kernel, padding=padding, stride=stride)
    return grad_x, grad_weight, grad.sum((0, 2))


@dataclass(frozen=True)
class Layer:
    """A layer's two halves, under one name (what the gradient check reports)."""

    name: str
    forward: Callable[..., tuple[Tensor, Any]]
    backward: Callable[..., tuple[Tensor | None, ...]]


LAYERS = {
    "linear": Layer("linear", linear_forward, linear_backward),
    "relu": Layer("relu", relu_forward, relu_backward),
    "softmax-cross-entropy": Layer(
        "softmax-cross-entropy", cross_entropy_forward, cross_entropy_backward
    ),
    "conv (im2col)": Layer("conv (im2col)", conv_forward, conv_backward),
}


def checked(layer: Layer, **options: Any) -> Callable[..., Tensor]:
    """`layer` as an autograd Function whose backward is the hand-written one: what gradcheck
    compares with finite differences."""

    class Checked(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *inputs: Tensor) -> Tensor:
            out, ctx.saved = layer.forward(*inputs, **options)
            return out

        @staticmethod
        def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
            return layer.backward(grad, ctx.saved)

    return Checked.apply


def gradcheck_all(seed: int = 0) -> dict[str, bool]:
    """Every layer's hand-written gradients against finite differences, in float64."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)

    x = rand(4, 5)
    x_relu = (x.detach() + 0.1 * torch.sign(x.detach())).requires_grad_()  # away from the kink
    targets = torch.randint(0, 5, (4,), generator=generator)
    cases = {
        "linear": ((x, rand(3, 5), rand(3)), {}),
        "relu": ((x_relu,), {}),
        "softmax-cross-entropy": ((x, targets), {}),
        "conv (im2col)": (
            (rand(1, 2, 5, 5), rand(3, 2, 3, 3), rand(3)),
            {"stride": 2, "padding": 1},
        ),
    }
    return {
        name: torch.autograd.gradcheck(checked(LAYERS[name], **options), inputs)
        for name, (inputs, options) in cases.items()
    }


# -- a CNN of those layers, trained with its own backward -----------------------------------------
class HandCNN:
    """conv 3×3 (pad 1) → ReLU → conv 3×3 stride 2 (pad 1) → ReLU → flatten → linear, on
    "b 1 h w" images; parameters are plain tensors, the update is W ← W − lr·∂W."""

    def __init__(self, *, in_shape: tuple[int, int, int], num_classes: int, width: int, seed: int):
        channels, height, width_px = in_shape
        generator = torch.Generator().manual_seed(seed)

        def init(*shape: int, fan_in: int) -> Tensor:  # Kaiming-uniform, as nn.Conv2d/Linear
            bound = 1 / math.sqrt(fan_in)
            return (torch.rand(*shape, generator=generator) * 2 - 1) * bound

        flat = 2 * width * math.ceil(height / 2) * math.ceil(width_px / 2)
        self.params = {
            "conv1.weight": init(width, channels, 3, 3, fan_in=channels * 9),
            "conv1.bias": init(width, fan_in=channels * 9),
            "conv2.weight": init(2 * width, width, 3, 3, fan_in=width * 9),
            "conv2.bias": init(2 * width, fan_in=width * 9),
            "linear.weight": init(num_classes, flat, fan_in=flat),
            "linear.bias": init(num_classes, fan_in=flat),
        }

    def forward(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, list[Any]]:
        """(loss, logits, what each layer saved for backward)."""
        p, tape = self.params, []
        h, saved = conv_forward(images, p["conv1.weight"], p["conv1.bias"], padding=1)
        tape.append(saved)
        h, saved = relu_forward(h)
        tape.append(saved)
        h, saved = conv_forward(h, p["conv2.weight"], p["conv2.bias"], stride=2, padding=1)
        tape.append(saved)
        h, saved = relu_forward(h)
        tape.append((saved, h.shape))
        logits, saved = linear_forward(h.flatten(1), p["linear.weight"], p["linear.bias"])
        tape.append(saved)
        loss, saved = cross_entropy_forward(logits, targets)
        tape.append(saved)
        return loss, logits, tape

    def backward(self, tape: list[Any]) -> dict[str, Tensor]:
        """The chain rule, layer by layer from the loss back to the image."""
        conv1, relu1, conv2, (relu2, shape), linear, loss = tape
        grad, _ = cross_entropy_backward(torch.tensor(1.0), loss)
        grad, g_lw, g_lb = linear_backward(grad, linear)
        (grad,) = relu_backward(grad.reshape(shape), relu2)
        grad, g_c2w, g_c2b = conv_backward(grad, conv2)
        (grad,) = relu_backward(grad, relu1)
        _, g_c1w, g_c1b = conv_backward(grad, conv1)
        return {"conv1.weight": g_c1w, "conv1.bias": g_c1b, "conv2.weight": g_c2w,
                "conv2.bias": g_c2b, "linear.weight": g_lw, "linear.bias": g_lb}  # fmt: skip

    @torch.no_grad()
    def step(self, images: Tensor, targets: Tensor, *, lr: float) -> float:
        loss, _, tape = self.forward(images, targets)
        for name, grad in self.backward(tape).items():
            self.params[name] -= lr * grad
        return float(loss)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        return self.forward(images, torch.zeros(len(images), dtype=torch.long))[1].argmax(1)

    def as_module(self) -> torch.nn.Module:
        """The same network as PyTorch layers with these weights: the autograd reference."""
        width = self.params["conv1.weight"].shape[0]
        channels = self.params["conv1.weight"].shape[1]
        flat, classes = self.params["linear.weight"].shape[1], self.params["linear.weight"].shape[0]
        module = torch.nn.Sequential(
            torch.nn.Conv2d(channels, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.Flatten(),
            torch.nn.Linear(flat, classes),
        )
        names = dict(zip(["conv1", "conv2", "linear"], [0, 2, 5], strict=True))
        with torch.no_grad():
            for name, value in self.params.items():
                layer, kind = name.split(".")
                getattr(module[names[layer]], kind).copy_(value)
        return module
