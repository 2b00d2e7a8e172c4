"""vision/201/compression: pruning — weights set to zero (unstructured), whole channels cut out
(structured), and the bytes each takes on disk.

Unstructured pruning is `torch.nn.utils.prune`'s: a mask beside every weight, so fine-tuning
keeps the zeros at zero. It leaves every tensor its shape — the same FLOPs, the same dense kernels —
and only a sparse format (CSR here) turns the zeros into saved bytes. Structured pruning is the
surgery written out: a convolution loses its weakest filters (smallest L1 norm, Li et al. 2017),
its norm the same channels, and the next layer the inputs they fed. What is left is a smaller
dense model that every kernel runs faster.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
import torch.fx
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import prune

from deepscape import costs
from deepscape.config import ConfigError

WEIGHTED = (nn.Conv2d, nn.Linear)


# -- unstructured ---------------------------------------------------------------------------------
def check_sparsity(sparsity: float, name: str = "sparsity") -> None:
    if not 0 <= sparsity < 1:
        raise ConfigError(
            f"{name}={sparsity:g} is not a share of weights to remove: give one in [0, 1), "
            "e.g. 0.9 to keep one weight in ten"
        )


def prune_globally(model: nn.Module, sparsity: float) -> None:
    """Mask the smallest-magnitude weights of every convolution and linear layer, ranked all
    together (a layer with many small weights loses more), until `sparsity` of them are zero.
    Masks already there are kept: the share is of all weights, not of those left."""
    check_sparsity(sparsity)
    weights = [(m, "weight") for m in model.modules() if isinstance(m, WEIGHTED)]
    already = zero_share(model)
    if sparsity <= already:
        return
    # prune.global_unstructured's `amount` is a share of the weights not yet pruned
    amount = (sparsity - already) / (1 - already)
    prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=amount)


def zero_share(model: nn.Module) -> float:
    """The share of convolution and linear weights that are exactly zero."""
    weights = [m.weight for m in model.modules() if isinstance(m, WEIGHTED)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / sum(w.numel() for w in weights)


def sparsity_schedule(sparsity: float, rounds: int) -> list[float]:
    """Zhu & Gupta (2017)'s cubic schedule: prune much while there is much to spare, little near
    the end — sparsity · (1 − (1 − r/R)³) after round r of R."""
    return [sparsity * (1 - (1 - r / rounds) ** 3) for r in range(1, rounds + 1)]


def made_permanent(model: nn.Module) -> nn.Module:
    """A copy whose masks are folded into plain weights (zeros where pruned)."""
    for module in model.modules():
        if prune.is_pruned(module) and isinstance(module, WEIGHTED):
            # the masked weight is recomputed before every forward; the one cached now may hang
            # on autograd's graph, which deepcopy refuses
            module.weight = module.weight.detach()
    model = copy.deepcopy(model)
    for module in model.modules():
        if prune.is_pruned(module) and isinstance(module, WEIGHTED):
            prune.remove(module, "weight")
    return model


def save_sparse(model: nn.Module, path: Path) -> int:
    """Write `model` with every pruned weight in CSR form (its non-zero values, their column
    indices and row starts, as int32) and the rest dense; returns the file's bytes."""
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in made_permanent(model).state_dict().items():
        if name.endswith("weight") and tensor.ndim >= 2 and (tensor == 0).any():
            with warnings.catch_warnings():  # "sparse CSR support is in beta": we only store it
                warnings.simplefilter("ignore", UserWarning)
                csr = tensor.reshape(len(tensor), -1).to_sparse_csr()
            tensors[f"{name}.values"] = csr.values()
            tensors[f"{name}.columns"] = csr.col_indices().int()
            tensors[f"{name}.rows"] = csr.crow_indices().int()
            tensors[f"{name}.shape"] = torch.tensor(tensor.shape, dtype=torch.int32)
        else:
            tensors[name] = tensor.contiguous()
    save_file(tensors, path)
    return path.stat().st_size


def save_dense(model: nn.Module, path: Path) -> int:
    """Write `model`'s state as safetensors; returns the file's bytes."""
    state = made_permanent(model).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path.stat().st_size


# -- structured -----------------------------------------------------------------------------------
def conv_chain(model: nn.Module) -> list[tuple[str, str | None]]:
    """The (convolution, its batch norm or None) names of a model whose layers form one chain —
    each output feeds exactly one next operation, ending in a linear layer — or a ConfigError
    saying why its channels cannot be cut out here (a residual addition reads a tensor twice)."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as error:  # any tracing failure means: not a plain chain
        raise ConfigError(
            f"structured pruning needs a model that torch.fx can trace ({error}); "
            "use a plain CNN such as objects10's model=cnn"
        ) from None
    for node in graph.nodes:
        if node.op != "get_attr" and len(node.users) > 1:
            raise ConfigError(
                f"structured pruning here needs a plain chain of layers; {node.name} feeds "
                f"{len(node.users)} operations (a residual or branching net): use objects10's "
                "model=cnn, or prune it unstructured only"
            )
    modules = dict(model.named_modules())
    called = [node.target for node in graph.nodes if node.op == "call_module"]
    chain: list[tuple[str, str | None]] = []
    for i, name in enumerate(called):
        if isinstance(modules[name], nn.Conv2d):
            if modules[name].groups != 1:
                raise ConfigError(f"{name} is a grouped convolution: not supported here")
            after = next((n for n in called[i + 1 :]
                          if isinstance(modules[n], nn.BatchNorm2d | nn.Conv2d | nn.Linear)),
                         None)  # fmt: skip
            norm = after if isinstance(modules.get(after), nn.BatchNorm2d) else None
            chain.append((name, norm))
    if not chain or not isinstance(modules[called[-1]], nn.Linear):
        raise ConfigError("structured pruning needs convolutions followed by a linear classifier")
    return chain


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def cut_channels(model: nn.Module, keep_share: float, *, multiple: int = 1) -> nn.Module:
    """A smaller dense copy of `model`: every convolution keeps the `keep_share` of its filters
    with the largest L1 norm, rounded to a `multiple` of channels (CPU kernels work on blocks of
    8 or 16 channels: 22 channels cost what 24 do); its batch norm keeps the same channels; the
    next convolution, or the classifier, keeps only the inputs that still exist."""
    model = copy.deepcopy(model)
    chain = conv_chain(model)
    modules = dict(model.named_modules())
    kept: torch.Tensor | None = None  # input channels of the current convolution that survive
    for conv_name, norm_name in chain:
        conv: nn.Conv2d = modules[conv_name]
        weight = conv.weight if kept is None else conv.weight[:, kept]
        count = multiple * round(keep_share * conv.out_channels / multiple)
        count = min(conv.out_channels, max(count, multiple, 1))
        keep = weight.abs().sum((1, 2, 3)).topk(count).indices.sort().values
        smaller = nn.Conv2d(weight.shape[1], count, conv.kernel_size, stride=conv.stride,
                            padding=conv.padding, dilation=conv.dilation,
                            bias=conv.bias is not None)  # fmt: skip
        smaller.weight.copy_(weight[keep])
        if conv.bias is not None:
            smaller.bias.copy_(conv.bias[keep])
        _replace(model, conv_name, smaller)
        if norm_name is not None:
            norm: nn.BatchNorm2d = modules[norm_name]
            slim = nn.BatchNorm2d(count, eps=norm.eps, momentum=norm.momentum)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(slim, key).copy_(getattr(norm, key)[keep])
            _replace(model, norm_name, slim)
        kept = keep
    # the classifier: its inputs are the last convolution's channels, each maybe over a few
    # positions (flattened channel-major)
    linear_name, linear = next((n, m) for n, m in reversed(list(model.named_modules()))
                               if isinstance(m, nn.Linear))  # fmt: skip
    out, inputs = linear.weight.shape
    channels = modules[chain[-1][0]].out_channels
    per_channel = inputs // channels
    weight = linear.weight.reshape(out, channels, per_channel)[:, kept].reshape(out, -1)
    slim_linear = nn.Linear(weight.shape[1], out, bias=linear.bias is not None)
    slim_linear.weight.copy_(weight)
    if linear.bias is not None:
        slim_linear.bias.copy_(linear.bias)
    _replace(model, linear_name, slim_linear)
    return model


def check_flops_share(flops_share: float) -> None:
    if not 0 < flops_share < 1:
        raise ConfigError(f"flops_share={flops_share:g}: give the FLOPs to keep, in (0, 1)")


def cut_to_flops(
    model: nn.Module, flops_share: float, example: torch.Tensor, *, multiple: int = 1
) -> tuple[nn.Module, float]:
    """`cut_channels` with the largest keep share whose FLOPs are at most `flops_share` of the
    model's (bisection on the share, FLOPs counted): (the smaller model, the share kept)."""
    check_flops_share(flops_share)
    target = flops_share * costs.forward_flops(model, example)
    low, high = 0.0, 1.0
    for _ in range(12):
        middle = (low + high) / 2
        if costs.forward_flops(cut_channels(model, middle, multiple=multiple), example) <= target:
            low = middle
        else:
            high = middle
    return cut_channels(model, low, multiple=multiple), low
