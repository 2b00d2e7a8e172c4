"""Data-parallel runs: the same lab under `accelerate launch` or `torchrun`, recorded once.

A launcher starts N copies of `deepscape run LAB` and tells each its place in the environment
(WORLD_SIZE, RANK, LOCAL_WORLD_SIZE). Each copy trains on its own shard of the training data and
the gradients are averaged across them (Accelerate's DistributedDataParallel, in the trainer), so
N copies learn one model from N × batch_size examples a step.

The run store belongs to the main process (rank 0): it alone creates or reopens the run and
writes records, checkpoints, weights and figures. It sends the run's files (config, summary,
history, checkpoint) to the other processes, which keep them in a private folder that is thrown
away at the end: the lab's code is the same on every process, reads what it needs (a resume's
checkpoint), and nothing a non-main process writes reaches the store. Files travel as bytes in
tensors, so processes on other machines need no shared disk. (torch is imported only where it is
needed: the CLI asks `is_main` before it prints, and must answer at once.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from deepscape.config import ConfigError, TrainConfig
from deepscape.runs import Run

if TYPE_CHECKING:
    from torch import Tensor

T = TypeVar("T")
# what a non-main process needs of the run to do what the main one does (a resume reads them all)
SHARED_FILES = ("config.json", "summary.json", "history.jsonl", "checkpoint.pt")


def processes() -> int:
    """How many processes the launcher started (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_processes() -> int:
    """How many of them share this machine's cores."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def rank() -> int:
    """This process's place among them: 0 is the main one."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def cpu_threads(requested: int = 0) -> int:
    """`requested` threads, or (0) this machine's cores shared among the processes launched on
    it: more threads than cores spin-wait on each other (two digits processes of two threads
    each on 2 cores: 19 s, not 1.7 s)."""
    return requested or max(1, (os.cpu_count() or 1) // local_processes())


def data_parallel(config: TrainConfig, run: Run, processes: int) -> TrainConfig:
    """The config each of `processes` processes trains with.

    batch_size is per process: under N processes a step learns from N × batch_size examples
    (the global batch), and the LR is N × lr — the linear scaling rule (Goyal et al. 2017): N
    times the examples per step, N times the step, so an epoch of N times fewer steps moves the
    weights about as far. N is the process count the run started with (its summary keeps it),
    so a resume on M processes splits the same global batch M ways and takes the same steps,
    with the same schedule and LR, as the run it continues."""
    started_with = int(run.summary.get("processes", processes))
    if started_with == 1 and processes == 1:
        return config
    global_batch = config.batch_size * started_with
    if global_batch % processes:
        raise ConfigError(
            f"run {run.id} learns from {global_batch} examples a step, which {processes} "
            f"processes cannot share: launch it on a number of processes that divides "
            f"{global_batch}"
        )
    return dataclasses.replace(
        config, batch_size=global_batch // processes, lr=config.lr * started_with
    )


def start(cpu: bool) -> None:
    """Join the launcher's process group (gloo on CPUs, NCCL on GPUs) before anything needs it:
    the trainer's Accelerator then finds it made."""
    from accelerate import PartialState

    PartialState(cpu=cpu)


def shared_run(open_run: Callable[[], Run]) -> Run:
    """`open_run()` (create or reopen the run) in the main process; the others receive its files
    into a private folder. A mistake found while opening (a run that cannot be resumed) is raised
    on every process, so none waits for files that never come."""
    if processes() == 1:
        return open_run()
    if is_main():
        try:
            run = open_run()
        except Exception as error:
            _broadcast(json.dumps({"error": str(error)}).encode())
            raise
        names = [n for n in SHARED_FILES if (run.dir / n).exists()]
        _broadcast(json.dumps({"id": run.id, "files": names}).encode())
        for name in names:
            _broadcast((run.dir / name).read_bytes())
        return run
    header = json.loads(_broadcast(None))
    if "error" in header:
        raise ConfigError(header["error"])
    folder = Path(tempfile.mkdtemp(prefix="deepscape-replica-")) / header["id"]
    folder.mkdir()
    for name in header["files"]:
        (folder / name).write_bytes(_broadcast(None))
    return Run(folder)


def discard_replica(run: Run) -> None:
    """A non-main process's private copy of the run, removed when the run ends."""
    if not is_main():
        shutil.rmtree(run.dir.parent, ignore_errors=True)


def _broadcast(data: bytes | None) -> bytes:
    """Rank 0's `data` on every process: its length, then its bytes, as tensors (no pickle)."""
    import torch
    import torch.distributed as dist

    device = _device()
    size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    if data:
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    else:
        buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
    if buffer.numel():
        dist.broadcast(buffer, src=0)
    return buffer.cpu().numpy().tobytes()


# -- a lab's own training loop, data-parallel ------------------------------------------------------
# The core Trainer shards through Accelerate. A lab with its own loop (deepscape.tuning.train)
# uses these: every process draws the same global batch from the same seed, takes its share,
# and the gradients are summed, so N processes take the very steps one process would.
def my_share(rows: Sequence[T]) -> list[T]:
    """This process's share of a global batch's `rows`: every N-th, from its rank."""
    return list(rows[rank() :: processes()])


def same_start(parameters: Sequence[Tensor]) -> None:
    """Every process starts from the main process's values of `parameters` (a LoRA's random
    initialisation, say)."""
    if processes() == 1:
        return
    import torch.distributed as dist

    for parameter in parameters:
        dist.broadcast(parameter.data, src=0)


def sum_across(*values: float) -> list[float]:
    """Each of `values` summed over the processes (one message for all of them)."""
    if processes() == 1:
        return list(values)
    import torch
    import torch.distributed as dist

    total = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(total)
    return total.tolist()


def main_value(value: float) -> float:
    """The main process's `value` on every process: one clock decides when all of them stop."""
    if processes() == 1:
        return value
    import torch
    import torch.distributed as dist

    shared = torch.tensor([value], dtype=torch.float64, device=_device())
    dist.broadcast(shared, src=0)
    return float(shared.item())


def sum_gradients(parameters: Sequence[Tensor]) -> None:
    """Each parameter's gradient summed over the processes, in one flat message. A parameter
    without a gradient on this process (it saw no rows) counts as zeros."""
    if processes() == 1:
        return
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for parameter, part in zip(parameters, flat.split([g.numel() for g in grads]), strict=True):
        parameter.grad = part.view_as(parameter)


def check_replicas(parameters: Sequence[Tensor]) -> None:
    """Raise unless every process ended with the same `parameters`: data-parallel processes
    hold one model. (A model left unwrapped, or a parameter left out of the averaging, trains
    apart on each process while only the main one is recorded.)"""
    if processes() == 1:
        return
    import torch
    import torch.distributed as dist

    mine = torch.stack([p.detach().double().sum() for p in parameters]).to(_device())
    everyone = [torch.empty_like(mine) for _ in range(processes())]
    dist.all_gather(everyone, mine)
    apart = max(float((other - mine).abs().max()) for other in everyone)
    if apart > 1e-6 * max(1.0, float(mine.abs().max())):
        raise RuntimeError(
            f"the {processes()} processes ended with different weights (sums up to {apart:.3g} "
            "apart): their gradients were not all averaged"
        )


def _device() -> object:
    """Where the process group's messages live: NCCL moves only GPU tensors, gloo CPU ones."""
    from accelerate import PartialState

    return PartialState().device
