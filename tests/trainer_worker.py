"""`Trainer.fit` with an `on_step` that keeps the first layer frozen for 4 steps and then lets it
learn (gradual unfreezing), for tests/test_distributed.py. Run under `torchrun` with a folder and
`ddp` or `shard`: each process saves the weights it ends with as `rank<R>.safetensors`. With
`prepared`, Accelerate prepares the model for evaluation first (the Trainer must refuse it);
with `apart`, the second process nudges a weight of its own once (the processes end apart)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from deepscape import distributed
from deepscape.config import TrainConfig
from deepscape.data import TensorSplit
from deepscape.runs import RunStore
from deepscape.tasks import Classification
from deepscape.train import Trainer

FROZEN_STEPS, STEPS = 4, 12


def blobs(n: int, seed: int) -> TensorSplit:
    """Two Gaussian blobs in 4-D: class = which blob."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(n) % 2
    return TensorSplit(torch.randn(n, 4, generator=g) + 2.0 * targets[:, None].float(), targets)


def model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


if __name__ == "__main__":
    folder, mode = Path(sys.argv[1]), sys.argv[2]
    distributed.start(cpu=True)
    net = model()

    def on_step(step: int) -> None:
        net[0].requires_grad_(step >= FROZEN_STEPS)
        if mode == "apart" and step == 0 and distributed.rank() == 1:
            with torch.no_grad():
                net[2].bias.add_(0.1)

    config = TrainConfig(threads=1, batch_size=8, lr=0.05, schedule="constant", warmup=0,
                         optimizer="sgd", momentum=0, max_steps=STEPS,
                         shard=mode == "shard")  # fmt: skip
    run = RunStore(folder / f"store{distributed.rank()}").create("gradual", {})
    trainer = Trainer(config, run, task=Classification(2), progress=False)
    if mode == "prepared":
        net = trainer.accelerator.prepare_model(net, evaluation_mode=True)
    trained = trainer.fit(net, blobs(64, seed=0), blobs(32, seed=1), on_step=on_step)
    weights = {name: t.detach().contiguous() for name, t in trained.state_dict().items()}
    save_file(weights, str(folder / f"rank{distributed.rank()}.safetensors"))
