"""The trainer: an explicit loop, because the loop is the lesson.

    for each step (counted in epochs, or in steps with max_steps):
        for each of grad_accum micro-batches:  loss, outputs = task.loss(model, batch) → backward
        clip the gradients' norm → W ← W − lr·update
        every eval_every steps (or each epoch): evaluate on validation; maybe take a checkpoint

A `Task` (deepscape.tasks) says what a batch is and what is learned, so the same loop trains a
classifier, a language model or a denoiser. Accelerate places model and batches on the device
(CPU, one GPU or several: data-parallel, or sharded with `shard=true` through
`deepscape.sharding`) and handles precision; evaluation streams the task's metrics (never the
outputs of a whole split); the run store receives every number. Per step it records the train
loss and the learning rate; every `diagnostics_every` steps (and every step when it clips) the
global gradient norm; and every `diagnostics_every` steps, for every weight matrix, the ratio of
the update's size to the weights' size (about 1e-3 is healthy; far above means the LR is too
large).

Randomness is re-seeded from (seed, epoch) at the start of every epoch, and a checkpoint carries
the random state of the moment it was taken, so a resumed run continues exactly as the
uninterrupted run would have. `Loop` holds those services — records, checkpoints and resume, the
divergence check, the progress bar — for labs that write their own loop too.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import accelerate.optimizer
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed
from safetensors.torch import save_model
from torch import nn
from torch.distributed.tensor import DTensor
from torch.utils.data import DataLoader, Dataset

from deepscape import distributed, metrics, sharding
from deepscape.config import ConfigError, TrainConfig
from deepscape.data import LengthGroupedBatches, whole_batch
from deepscape.devices import device_and_precision
from deepscape.loop import CorruptCheckpoint, Loop, TrainingDiverged
from deepscape.optim import Lookahead, base_lr, make_optimizer, make_schedule
from deepscape.runs import Run
from deepscape.tasks import Task

__all__ = [
    "CorruptCheckpoint",
    "Trainer",
    "TrainingDiverged",
    "UpdateWatcher",
]

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}

# Accelerate (1.15) asks whether the optional `lomo` package is installed twice on every optimizer
# step, an uncached search of sys.path worth ~4 % of a small model's step on a CPU. The answer
# cannot change while we run, so it is asked once.
accelerate.optimizer.is_lomo_available = functools.cache(accelerate.optimizer.is_lomo_available)


class Trainer:
    """Trains a model on `task` and records it in `run`."""

    def __init__(self, config: TrainConfig, run: Run, *, task: Task, progress: bool | None = None):
        self.run, self.task = run, task
        self.show_progress = run.show_progress if progress is None else progress
        torch.set_num_threads(distributed.cpu_threads(config.threads))
        # Accelerate keeps one AcceleratorState per process and refuses a second precision. The
        # next run in the same process (a notebook, a benchmark, a sweep) may want another, so the
        # per-run state is reset; the process group (PartialState) is kept.
        AcceleratorState._reset_state(reset_partial_state=False)
        device, self.precision = device_and_precision(config)
        self.accelerator = Accelerator(
            cpu=device.type == "cpu", mixed_precision=PRECISION[self.precision]
        )
        if self.accelerator.distributed_type == DistributedType.FSDP:
            raise ConfigError(
                "Accelerate's FSDP (distributed_type: FSDP) is not how the trainer shards: launch "
                "with docs/accelerate/gpu-1machine.yaml and give shard=true"
            )
        if config.shard and config.lookahead:
            raise ConfigError(
                "lookahead keeps a whole copy of the weights, which shard=true splits: "
                "give one of them"
            )
        self.config = distributed.data_parallel(config, run, self.accelerator.num_processes)
        # made once (and their library imported here, not on the training clock), reset for
        # every evaluation
        self.metrics = {"loss": metrics.get("loss").make(), **task.metrics()}
        for name, metric in self.metrics.items():
            self.metrics[name] = metric.to(self.accelerator.device)

    # -- the loop ---------------------------------------------------------------------------------
    def fit(
        self,
        model: nn.Module,
        train: Dataset,
        validation: Dataset,
        *,
        lr_scales: dict[str, float] | None = None,
        collate: Callable[[list[Any]], Any] | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> nn.Module:
        """Train `model`; returns it trained (and saves its weights in the run). `lr_scales`
        multiplies the LR of parameters by name prefix (a pretrained backbone learns slower);
        frozen parameters (requires_grad=False) stay as they are. `collate` makes a batch of a
        per-item dataset's items (splits that return whole batches need none). `on_step(step)`
        is called before each step's first forward pass, and may freeze or unfreeze parameters
        (gradual unfreezing): the optimizer holds those trainable when `fit` starts and skips
        any without a gradient. It must depend on the step alone, so that a resumed run does
        what the uninterrupted one did, and find the parameters anew at each call: sharding
        (shard=true) replaces them with their shards."""
        cfg, acc, task = self.config, self.accelerator, self.task
        if cfg.grad_accum < 1:
            raise ValueError(f"grad_accum={cfg.grad_accum}: give 1 or more micro-batches a step")
        # Under N processes each takes every N-th batch: an epoch is N times fewer steps
        train_loader = acc.prepare_data_loader(self.loader(train, shuffle=True, collate=collate))
        steps_per_epoch = max(1, len(train_loader) // cfg.grad_accum)
        total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
        if total_steps < 1:  # a schedule over no steps divides by zero
            raise ConfigError(
                f"epochs={cfg.epochs}, max_steps={cfg.max_steps}: nothing to train; "
                "give epochs=1 or more, or max_steps=1 or more"
            )
        eval_every = cfg.eval_every or steps_per_epoch
        by_epoch = not cfg.max_steps and not cfg.eval_every
        # shard=true under a launcher: FSDP instead of DistributedDataParallel (deepscape.sharding)
        sharded = cfg.shard and acc.num_processes > 1
        if cfg.channels_last and not sharded:  # FSDP shards contiguous weights only
            model = model.to(memory_format=torch.channels_last)
        if sharded:
            blank = sharding.blank_copy(model)
            model = sharding.shard(model, acc.device)
        optimizer = make_optimizer(model, cfg, lr_scales)
        # The schedule is counted in our steps, which already know the process count; so it is
        # not handed to Accelerate, whose wrapper would advance it N times a step.
        scheduler = make_schedule(optimizer, cfg, total_steps=total_steps)
        if sharded:
            optimizer = acc.prepare(optimizer)
        else:
            if on_step is not None and acc.num_processes > 1:
                # on_step freezes and unfreezes: DistributedDataParallel must look for the
                # parameters without a gradient at every step, or it never averages the rest
                acc.ddp_handler = DistributedDataParallelKwargs(find_unused_parameters=True)
            model, optimizer = acc.prepare(model, optimizer)
            if acc.num_processes > 1 and acc.unwrap_model(model) is model:
                raise RuntimeError(
                    "Accelerate had prepared this model before (prepare_model) and left it "
                    "unwrapped: its gradients would not be averaged; place it with .to(device)"
                )
        validation_loader = self.loader(validation, shuffle=False, collate=collate)
        watched = UpdateWatcher(acc.unwrap_model(model))  # names without DDP's `module.`
        # the slow weights are part of the training state: checkpoints carry them
        lookahead = Lookahead(model, total_steps=total_steps) if cfg.lookahead else None
        saved = {"model": acc.unwrap_model(model), "optimizer": optimizer, "scheduler": scheduler}
        if cfg.shard:  # whole tensors by name: a sharded run resumes on any number of processes
            saved["model"] = sharding.WholeModelState(saved["model"])
            saved["optimizer"] = sharding.WholeOptimizerState(
                saved["model"].model, optimizer.optimizer
            )
        if lookahead is not None:
            saved["lookahead"] = lookahead
        loop = Loop(
            self.run,
            total_steps=total_steps,
            state=saved,
            checkpoint_every=cfg.checkpoint_every,
            show_progress=self.show_progress,
            advice=f"lower lr (now {cfg.lr:g}) or raise warmup (now {cfg.warmup:g})",
        )
        parameters = [p for p in model.parameters() if p.requires_grad]
        self.run.update_summary(monitor=f"val_{task.monitor}")  # what picks the best evaluation
        with loop:
            batches = self.batches(train_loader, loop.step * cfg.grad_accum, loop)
            sums, examples, loss_sum, losses = {}, 0, 0.0, 0
            model.train()  # once, and again after each evaluation: it walks every module
            while loop.step < total_steps:
                step, epoch = loop.step, loop.step // steps_per_epoch
                if on_step is not None:
                    on_step(step)
                watch = step % cfg.diagnostics_every == 0
                # the wrapped optimizer's own: Accelerate's wrapper inspects its signature on
                # every call, and we accumulate gradients ourselves
                optimizer.optimizer.zero_grad(set_to_none=True)
                loss_value = 0.0
                for micro in range(cfg.grad_accum):
                    batch = next(batches)
                    if task.augment is not None:
                        batch = task.augment(batch)
                    batch = self.place(batch)
                    # across processes, gradients are averaged once a step, after the last one
                    # (sharded, after each: a shard cannot hold a whole gradient to add to)
                    last = micro == cfg.grad_accum - 1 or sharded
                    with contextlib.nullcontext() if last else acc.no_sync(model):
                        with self.autocast():
                            loss, outputs = task.loss(model, batch)
                        self.backward(loss / cfg.grad_accum if cfg.grad_accum > 1 else loss)
                    loss_value += loss.item() / cfg.grad_accum
                    for name, count in task.train_counts(outputs, batch).items():
                        sums[name] = sums.get(name, 0) + count
                    examples += task.size(batch)
                loop.check(loss_value, f"(epoch {epoch + 1})")
                grad_norm = self.clip_gradients(parameters, measure=watch)
                if watch:
                    watched.remember()
                optimizer.step()
                if not optimizer.step_was_skipped:  # fp16's scaler skips a step with inf grads
                    scheduler.step()
                record = {
                    "kind": "step",
                    "step": step,
                    "epoch": epoch,
                    "loss": loss_value,
                    "lr": base_lr(optimizer),
                }
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                if watch:
                    record["update_ratio"] = watched.ratios()
                loop.log_step(record)
                loss_sum, losses = loss_sum + loss_value, losses + 1
                if lookahead is not None:
                    lookahead.step(loop.step)
                if loop.step % eval_every and loop.step < total_steps:
                    continue
                val = self.evaluate(model, validation_loader, batches=cfg.eval_batches)
                loss_sum, examples, sums = self.summed(loss_sum, examples, sums)
                train_metrics = {f"train_{k}": float(v) / examples for k, v in sums.items()}
                evaluation = {
                    "kind": "epoch" if by_epoch else "eval",
                    **({"epoch": epoch} if by_epoch else {"epoch": loop.step / steps_per_epoch}),
                    "step": loop.step,
                    "train_loss": loss_sum / (losses * acc.num_processes),
                    **train_metrics,
                    **{f"val_{k}": v for k, v in val.items()},
                }
                loop.evaluated(evaluation, self.describe(evaluation, epoch, by_epoch))
                sums, examples, loss_sum, losses = {}, 0, 0.0, 0
                model.train()

        if acc.num_processes > 1:  # what each process held: 1/N of it, sharded
            state = sharding.state_bytes(acc.unwrap_model(model), optimizer.optimizer)
            self.run.update_summary(state_bytes_per_process=state)
        model = sharding.whole(model, blank) if sharded else acc.unwrap_model(model)
        distributed.check_replicas(list(model.parameters()))
        save_model(model, str(self.run.weights_path))
        return model

    def batches(self, loader: DataLoader, skip: int, loop: Loop) -> Iterator[Any]:
        """The loader's batches, epoch after epoch, each epoch re-seeded from (seed, epoch). A
        resumed run skips the `skip` batches it has already trained on and takes back the random
        state of its checkpoint, so it draws what the uninterrupted run would have drawn. A split
        with `set_epoch` (`AlternatingFlips`) is told each epoch before it is drawn from."""
        first, into = divmod(skip, len(loader))
        for epoch in itertools.count(first):
            set_seed(self.config.seed * 10_000 + epoch)
            # a split that changes by epoch (AlternatingFlips) is told which one; Accelerate's
            # loader passes it on, and left alone would count from 0 again in a resumed run
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            elif hasattr(loader.dataset, "set_epoch"):
                loader.dataset.set_epoch(epoch)
            epoch_batches = iter(loader)
            if epoch == first and into:  # a checkpoint taken within an epoch
                for _ in itertools.islice(epoch_batches, into):
                    pass
                loop.restore_random_state()
            yield from epoch_batches

    def summed(
        self, loss_sum: float, examples: int, sums: dict[str, Any]
    ) -> tuple[float, int, dict[str, float]]:
        """The training numbers since the last evaluation, summed over every process (each saw
        its own shard of the data); as they are with one process."""
        if self.accelerator.num_processes == 1:
            return loss_sum, examples, sums
        values = [loss_sum, examples, *(float(v) for v in sums.values())]
        local = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        total = self.accelerator.reduce(local, "sum").tolist()
        return total[0], int(total[1]), dict(zip(sums, total[2:], strict=True))

    def describe(self, evaluation: dict[str, Any], epoch: int, by_epoch: bool) -> str:
        where = f"step {evaluation['step']}"
        if by_epoch:
            where = f"epoch {epoch + 1}/{self.config.epochs}"
        monitored = f"val_{self.task.monitor}"
        shown = "" if monitored == "val_loss" else f" · {monitored} {evaluation[monitored]:.4g}"
        return f"{where} · loss {evaluation['train_loss']:.3f} · val loss " \
               f"{evaluation['val_loss']:.3f}{shown}"  # fmt: skip

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), through the loss scaler under fp16. (Accelerate's backward would also
        divide by its own accumulation count, 1 here: an op and an autograd node every step.)"""
        if self.accelerator.scaler is not None:
            self.accelerator.scaler.scale(loss).backward()
        else:
            loss.backward()

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision's context; none in fp32, where Accelerate's would only cost time."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return self.accelerator.autocast()

    def place(self, batch: Any) -> Any:
        """Image batches ("b c h w") channels-last when the config asks; anything else as is."""
        if not self.config.channels_last:
            return batch
        return tuple(
            t.contiguous(memory_format=torch.channels_last)
            if isinstance(t, torch.Tensor) and t.ndim == 4 and t.is_floating_point()
            else t
            for t in batch
        )

    def clip_gradients(
        self, parameters: list[nn.Parameter], *, measure: bool
    ) -> torch.Tensor | None:
        """The gradients scaled down to `grad_clip` when they are longer, and ‖∇loss‖ over all
        parameters (of the true gradients, also under fp16 loss scaling) when clipping or when
        asked to `measure` it; None otherwise. (Measured every step, the norm alone cost a small
        model 2 % of its training time.)"""
        clip = self.config.grad_clip > 0
        if not (clip or measure):
            return None
        if self.accelerator.scaler is not None:
            self.accelerator.unscale_gradients()
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
        return norm.full_tensor() if isinstance(norm, DTensor) else norm  # sharded: its shards'

    @torch.inference_mode()
    def evaluate(
        self,
        model: nn.Module,
        data: Dataset | DataLoader,
        *,
        batches: int = 0,
        collate: Callable[[list[Any]], Any] | None = None,
    ) -> dict[str, float]:
        """The task's loss and metrics of `model` on `data`, streamed batch by batch; `batches`
        > 0 estimates them from that many batches (nanoGPT's `estimate_loss`)."""
        for metric in self.metrics.values():
            metric.reset()
        for outputs, batch, loss in self.predict(model, data, batches=batches, collate=collate):
            self.metrics["loss"].update(loss, self.task.size(batch))
            self.task.update(self.metrics, outputs, batch)
        return {name: float(metric.compute()) for name, metric in self.metrics.items()}

    @torch.inference_mode()
    def predict(
        self,
        model: nn.Module,
        data: Dataset | DataLoader,
        *,
        batches: int = 0,
        collate: Callable[[list[Any]], Any] | None = None,
    ) -> Iterator[tuple[Any, Any, torch.Tensor]]:
        """(outputs, batch, loss) of `model` in eval mode, batch by batch, gathered from every
        process; the first `batches` batches only when > 0."""
        model.eval()
        if not isinstance(data, DataLoader):
            data = self.loader(data, shuffle=False, collate=collate)
        for batch in itertools.islice(self.accelerator.prepare_data_loader(data), batches or None):
            batch = self.place(batch)
            with self.autocast():
                loss, outputs = self.task.loss(model, batch)
            outputs, batch = self.accelerator.gather_for_metrics((outputs, batch))
            if self.accelerator.num_processes > 1:  # each process's loss is of its own shard
                loss = self.accelerator.reduce(loss.detach(), "mean")
            yield outputs, batch, loss.float()

    def loader(
        self, data: Dataset, *, shuffle: bool, collate: Callable[[list[Any]], Any] | None = None
    ) -> DataLoader:
        # Our splits return whole batches (`__getitems__`), so their collation is the identity.
        if shuffle and self.config.group_by_length and hasattr(data, "lengths"):
            batches = LengthGroupedBatches(data.lengths, self.config.batch_size)
            return DataLoader(data, batch_sampler=batches, collate_fn=collate or whole_batch)
        return DataLoader(
            data,
            batch_size=self.config.batch_size,
            shuffle=shuffle,
            collate_fn=collate or whole_batch,
        )


class UpdateWatcher:
    """‖ΔW‖ / ‖W‖ of one optimizer step for every weight matrix: how fast each layer moves."""

    def __init__(self, model: nn.Module):
        named = [(n, p) for n, p in model.named_parameters() if p.ndim >= 2 and p.requires_grad]
        self.names = [n for n, _ in named]
        # sharded, each process watches its shard, and the norms are summed over processes
        self.sharded = any(isinstance(p, DTensor) for _, p in named)
        self.weights = [sharding.local(p.detach()) for _, p in named]
        self.before = [w.clone() for w in self.weights]

    @torch.no_grad()
    def remember(self) -> None:
        torch._foreach_copy_(self.before, self.weights)

    @torch.no_grad()
    def ratios(self) -> dict[str, float]:
        # foreach: a handful of fused kernels instead of 3 small ops per layer
        deltas = torch.stack(torch._foreach_norm(torch._foreach_sub(self.weights, self.before)))
        sizes = torch.stack(torch._foreach_norm(self.before))
        if self.sharded:
            squares = torch.stack([deltas, sizes]).square()
            torch.distributed.all_reduce(squares)
            deltas, sizes = squares.sqrt()
        values = (deltas / (sizes + 1e-12)).tolist()
        return dict(zip(self.names, values, strict=True))
