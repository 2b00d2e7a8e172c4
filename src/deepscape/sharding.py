"""Fully sharded data-parallel (FSDP; ZeRO stage 3): a model too big for one device, trained on N.

Data-parallel (`deepscape.distributed`) keeps the whole training state on every process: with
AdamW in fp32, 16 bytes a parameter (weights 4, gradients 4, the two moments 8). Sharded, each of
N processes keeps 1/N of every tensor. Before a block computes, its weights are gathered whole
from the N shards, and they are freed again after it; its gradients are reduce-scattered, so each
process receives the sum of its own shard only, and the optimizer steps only that shard. The state
per process is 16/N bytes a parameter, plus one gathered block and the activations.

torch's FSDP2 (`fully_shard`) does the sharding, on GPUs (NCCL) and on CPUs (gloo). That is why
the trainer applies it itself rather than through Accelerate, whose FSDP runs on GPUs only. A
checkpoint keeps whole tensors by parameter name (torch.distributed.checkpoint's full state
dicts), so a sharded run resumes on any number of processes, one included, and its weights file
is the same as an unsharded run's.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from deepscape import distributed

# a checkpoint's whole tensors are gathered on the main process (which alone writes them), in
# host memory; loading, the main process's are sent to the others
TO_SAVE = StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard(model: nn.Module, device: torch.device) -> nn.Module:
    """`model`, each of its blocks (every member of an `nn.ModuleList`: a transformer's layers)
    a unit gathered on its own, and the rest (embeddings, head) one more unit, sharded across the
    launched processes on `device`. In place; the optimizer must be made afterwards."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # innermost first: a unit takes the parameters that no unit inside it has taken
    for module in reversed(list(model.modules())):
        if isinstance(module, nn.ModuleList):
            for block in module:
                if any(True for _ in block.parameters()):
                    fully_shard(block, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def whole(sharded: nn.Module, blank: nn.Module) -> nn.Module:
    """`blank` (an unsharded copy of the model, taken before it was sharded) with the trained
    weights of `sharded` gathered into it, on every process: after training each process holds
    the whole model, to evaluate, sample and save like an unsharded run."""
    weights = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
    device = next(iter(weights.values())).device
    blank.load_state_dict(weights)
    blank.to(device)
    # buffers are not sharded: each process kept its own (a batch norm's running statistics, of
    # its own batches); all take the main process's, as DistributedDataParallel has them do
    for buffer in blank.buffers():
        dist.broadcast(buffer, src=0)
    return blank


def blank_copy(model: nn.Module) -> nn.Module:
    """A copy to gather the trained weights into (`whole`). A deep copy keeps tied weights tied
    (a copy moved to the meta device would not); it lives in host memory during training."""
    return copy.deepcopy(model)


class WholeModelState:
    """The model's state, for a checkpoint: whole tensors by name, sharded or not."""

    def __init__(self, model: nn.Module):
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        return get_model_state_dict(self.model, options=TO_SAVE)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_model_state_dict(self.model, state, options=_to_load())


class WholeOptimizerState:
    """The optimizer's state, for a checkpoint: whole tensors keyed by parameter name (not by
    position, as `Optimizer.state_dict` keys them), sharded or not."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict[str, Any]:
        return get_optimizer_state_dict(self.model, self.optimizer, options=TO_SAVE)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_optimizer_state_dict(self.model, self.optimizer, state, options=_to_load())


def _to_load() -> StateDictOptions:
    # every process read the checkpoint, but only the main process's copy is complete (the others
    # hold what their own replicas saved: nothing)
    return StateDictOptions(full_state_dict=True, broadcast_from_rank0=distributed.processes() > 1)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of `tensor` (the tensor itself when it is not sharded)."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of the training state this process holds: weights, gradients, optimizer state."""
    parameters = list(model.parameters())
    moments = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]

    def size(tensors: list[torch.Tensor]) -> int:
        return sum(local(t).numel() * t.element_size() for t in tensors if t.ndim > 0)

    return {
        "weights": size(parameters),
        "gradients": size([p.grad for p in parameters if p.grad is not None]),
        "optimizer": size(moments),
    }
