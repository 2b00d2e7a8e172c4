"""The trainer: an explicit loop, because the loop is the lesson.

    for each epoch:
        for each batch:  logits = f(x, W) → loss → gradients → W ← W − lr·update
        evaluate on the validation split; take a checkpoint (every `checkpoint_every` seconds)

Accelerate places model and batches on the device (CPU, one GPU or several) and handles precision;
torchmetrics counts accuracy; the run store receives every number. Per step it records the train
loss, the learning rate, the global gradient norm and, for every weight matrix, the ratio of the
update's size to the weights' size (about 1e-3 is healthy; far above means the LR is too large).

Randomness is re-seeded from (seed, epoch) at the start of every epoch, so an epoch's shuffling,
augmentation and dropout do not depend on what ran before it: a run resumed from a checkpoint
continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import accelerate.optimizer
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from safetensors.torch import save_model
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassAccuracy

from deepscape.config import TrainConfig
from deepscape.data import whole_batch
from deepscape.optim import Lookahead, base_lr, make_optimizer, make_schedule
from deepscape.runs import Run, write_atomic

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}

# Accelerate (1.15) asks whether the optional `lomo` package is installed twice on every optimizer
# step, an uncached search of sys.path worth ~4 % of a small model's step on a CPU. The answer
# cannot change while we run, so it is asked once.
accelerate.optimizer.is_lomo_available = functools.cache(accelerate.optimizer.is_lomo_available)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class CorruptCheckpoint(RuntimeError):
    """A checkpoint that cannot be read back."""


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    probabilities: torch.Tensor  # "n classes", on the CPU
    targets: torch.Tensor  # "n"

    @property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(1)


class Trainer:
    """Trains a classifier on a `Dataset` of (input, target) batches and records it in `run`."""

    def __init__(self, config: TrainConfig, run: Run, *, progress: bool | None = None):
        self.config, self.run = config, run
        self.show_progress = run.show_progress if progress is None else progress
        torch.set_num_threads(config.threads or os.cpu_count() or 1)
        # Accelerate keeps one AcceleratorState per process and refuses a second precision. The
        # next run in the same process (a notebook, a benchmark, a sweep) may want another, so the
        # per-run state is reset; the process group (PartialState) is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
        gpu = config.device != "cpu" and torch.cuda.is_available()
        if config.device == "cuda" and not gpu:
            raise RuntimeError("device=cuda but no GPU is visible to PyTorch: use device=auto")
        self.precision = resolve_precision(config.precision, gpu=gpu)
        self.lookahead: Lookahead | None = None
        self.accelerator = Accelerator(
            cpu=config.device == "cpu", mixed_precision=PRECISION[self.precision]
        )

    # -- the loop ---------------------------------------------------------------------------------
    def fit(
        self,
        model: nn.Module,
        train: Dataset,
        validation: Dataset,
        *,
        num_classes: int,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        lr_scales: dict[str, float] | None = None,
    ) -> nn.Module:
        """Train `model`; returns it trained (and saves its weights in the run). `lr_scales`
        multiplies the LR of parameters by name prefix (a pretrained backbone learns slower);
        frozen parameters (requires_grad=False) stay as they are."""
        cfg, acc = self.config, self.accelerator
        train_loader = self.loader(train, shuffle=True)
        total_steps = cfg.epochs * len(train_loader)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, cfg, lr_scales)
        scheduler = make_schedule(optimizer, cfg, total_steps=total_steps)
        model, optimizer, train_loader, scheduler = acc.prepare(
            model, optimizer, train_loader, scheduler
        )
        watched = UpdateWatcher(model)
        # the slow weights are part of the training state: checkpoints carry them
        self.lookahead = Lookahead(model, total_steps=total_steps) if cfg.lookahead else None
        first_epoch = self.resume(model, optimizer, scheduler)
        done_before = self.run.history("epoch")  # a resumed run keeps counting its training time
        clock = time.perf_counter() - (done_before[-1]["seconds"] if done_before else 0.0)
        parameters = list(model.parameters())
        last_checkpoint = time.monotonic()
        train_accuracy = MulticlassAccuracy(  # our own logits and targets: no need to validate
            num_classes, average="micro", validate_args=False
        ).to(acc.device)
        step = first_epoch * len(train_loader)

        with self.progress_bar(total_steps, step) as (progress, bar):
            for epoch in range(first_epoch, cfg.epochs):
                set_seed(cfg.seed * 10_000 + epoch)
                model.train()
                train_accuracy.reset()
                epoch_loss, predicted, seen = 0.0, [], []
                for inputs, targets in train_loader:
                    if augment is not None:
                        inputs = augment(inputs)
                    inputs = self.layout(inputs)
                    with acc.autocast():
                        logits = model(inputs)
                    loss = F.cross_entropy(
                        logits.float(), targets, label_smoothing=cfg.label_smoothing
                    )
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        raise TrainingDiverged(
                            f"the loss became {loss_value} at step {step} (epoch {epoch + 1}): "
                            f"lower lr (now {cfg.lr:g}) or raise warmup (now {cfg.warmup:g})"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    acc.backward(loss)
                    grad_norm = self.gradient_norm(parameters)
                    watched.remember()
                    optimizer.step()
                    scheduler.step()
                    predicted.append(logits.detach().argmax(1))
                    seen.append(targets)
                    epoch_loss += loss_value
                    self.run.log(
                        {
                            "kind": "step",
                            "step": step,
                            "epoch": epoch,
                            "loss": loss_value,
                            "lr": base_lr(optimizer),
                            "grad_norm": float(grad_norm),
                            "update_ratio": watched.ratios(),
                        }
                    )
                    step += 1
                    if self.lookahead is not None:
                        self.lookahead.step(step)
                    progress.update(bar, advance=1)

                # one metric update per epoch: per-step updates cost more than the tiny model's step
                train_accuracy.update(torch.cat(predicted), torch.cat(seen))
                val = self.evaluate(model, validation)
                record = {
                    "kind": "epoch",
                    "epoch": epoch,
                    "step": step,
                    "train_loss": epoch_loss / len(train_loader),
                    "train_accuracy": float(train_accuracy.compute()),
                    "val_loss": val.loss,
                    "val_accuracy": val.accuracy,
                    "seconds": time.perf_counter() - clock,  # training time so far
                }
                self.run.log(record)
                progress.update(
                    bar,
                    description=f"epoch {epoch + 1}/{cfg.epochs} · loss {record['train_loss']:.3f}"
                    f" · val acc {val.accuracy:.2%}",
                )
                last_epoch = epoch + 1 == cfg.epochs
                if last_epoch or time.monotonic() - last_checkpoint >= cfg.checkpoint_every:
                    self.checkpoint(model, optimizer, scheduler, epoch + 1)
                    last_checkpoint = time.monotonic()

        model = acc.unwrap_model(model)
        save_model(model, str(self.run.weights_path))
        return model

    def layout(self, inputs: torch.Tensor) -> torch.Tensor:
        """Image batches ("b c h w") channels-last when the config asks; anything else as is."""
        if self.config.channels_last and inputs.ndim == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def gradient_norm(self, parameters: list[nn.Parameter]) -> torch.Tensor:
        """‖∇loss‖ over all parameters (of the true gradients, also under fp16 loss scaling)."""
        if self.accelerator.scaler is not None:
            self.accelerator.unscale_gradients()
        return torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, data: Dataset) -> Evaluation:
        """Mean cross-entropy, accuracy and class probabilities of `model` on `data`."""
        model.eval()
        loader = self.accelerator.prepare_data_loader(self.loader(data, shuffle=False))
        losses, probabilities, all_targets = [], [], []
        for inputs, targets in loader:
            with self.accelerator.autocast():
                logits = model(self.layout(inputs)).float()
            logits, targets = self.accelerator.gather_for_metrics((logits, targets))
            losses.append(F.cross_entropy(logits, targets, reduction="sum"))
            probabilities.append(logits.softmax(1).cpu())
            all_targets.append(targets.cpu())
        probs, targets = torch.cat(probabilities), torch.cat(all_targets)
        return Evaluation(
            loss=float(torch.stack(losses).sum()) / len(targets),
            accuracy=float((probs.argmax(1) == targets).float().mean()),
            probabilities=probs,
            targets=targets,
        )

    def loader(self, data: Dataset, *, shuffle: bool) -> DataLoader:
        # Our splits return whole batches (`__getitems__`), so collation is the identity.
        return DataLoader(
            data, batch_size=self.config.batch_size, shuffle=shuffle, collate_fn=whole_batch
        )

    # -- checkpoints: what makes a run resumable --------------------------------------------------
    def checkpoint(
        self, model: nn.Module, optimizer: Any, scheduler: Any, epochs_done: int
    ) -> None:
        state = {
            "model": self.accelerator.unwrap_model(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epochs_done": epochs_done,
        }
        if self.lookahead is not None:
            state["lookahead"] = self.lookahead.average
        # History first: if we are stopped in between, resume() drops the records past the
        # checkpoint; the other order could leave a checkpoint whose epoch has no history.
        self.run.commit_history()
        tmp = self.run.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.run.checkpoint_path)
        write_atomic(self.run.dir / "progress.txt", f"{epochs_done}/{self.config.epochs} epochs\n")

    def resume(self, model: nn.Module, optimizer: Any, scheduler: Any) -> int:
        """Load the run's checkpoint if it has one; returns the first epoch still to train."""
        path = self.run.checkpoint_path
        if not path.exists():
            return 0
        try:  # weights_only: a checkpoint is data, never code to unpickle
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.accelerator.unwrap_model(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if self.lookahead is not None:
                self.lookahead.load(state["lookahead"])
        except Exception as error:
            raise CorruptCheckpoint(
                f"checkpoint {path} cannot be read ({type(error).__name__}): "
                "start a new run instead of resuming this one"
            ) from error
        epochs_done = int(state["epochs_done"])
        self.run.keep_history(lambda record: record.get("epoch", 0) < epochs_done)
        return epochs_done

    @contextmanager
    def progress_bar(self, total: int, completed: int) -> Iterator[tuple[Progress, TaskID]]:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not self.show_progress,
        ) as progress:
            yield progress, progress.add_task("training", total=total, completed=completed)


class UpdateWatcher:
    """‖ΔW‖ / ‖W‖ of one optimizer step for every weight matrix: how fast each layer moves."""

    def __init__(self, model: nn.Module):
        named = [(n, p) for n, p in model.named_parameters() if p.ndim >= 2 and p.requires_grad]
        self.names = [n for n, _ in named]
        self.weights = [p.detach() for _, p in named]
        self.before = [w.clone() for w in self.weights]

    @torch.no_grad()
    def remember(self) -> None:
        torch._foreach_copy_(self.before, self.weights)

    @torch.no_grad()
    def ratios(self) -> dict[str, float]:
        # foreach: a handful of fused kernels instead of 3 small ops per layer
        deltas = torch._foreach_norm(torch._foreach_sub(self.weights, self.before))
        sizes = torch._foreach_norm(self.before)
        values = (torch.stack(deltas) / (torch.stack(sizes) + 1e-12)).tolist()
        return dict(zip(self.names, values, strict=True))


def resolve_precision(precision: str, *, gpu: bool) -> str:
    """`auto` → bf16 where the hardware computes it natively (a recent GPU; a CPU with AVX512-BF16
    or AMX, where it is ~2× faster than fp32), else fp32; any other choice is kept."""
    if precision != "auto":
        return precision
    if gpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "fp32"
