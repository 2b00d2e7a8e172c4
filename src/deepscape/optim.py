"""Optimizers, learning-rate schedules and Lookahead: what the Trainer steps with.

`make_optimizer` builds SGD or AdamW from a config (weight decay on weight matrices only, LR
multipliers by parameter name), `make_schedule` the LR over the whole run, `Lookahead` the slow
weights some recipes pull the fast ones back to.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from deepscape.config import TrainConfig


class Lookahead:
    """Slow weights that the fast ones are pulled back to (Zhang et al. 2019, in the form of
    hlb-CIFAR10 and Jordan 2024): every `every` steps the average moves toward the weights by
    1 − decay and the weights restart from it. The fast weights explore at a high LR; the average
    keeps the direction they agree on. decay grows as 0.95^every · (step / total)³, so early on the
    weights lead and late the average does; after the last step the model *is* the average.
    Floating-point buffers (batch-norm statistics) are averaged with the weights."""

    def __init__(self, model: nn.Module, *, total_steps: int, every: int = 5):
        self.total_steps, self.every = total_steps, every
        self.live = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
        self.average = {k: v.detach().clone() for k, v in self.live.items()}

    @torch.no_grad()
    def step(self, step: int) -> None:
        last = step >= self.total_steps
        if step % self.every and not last:
            return
        decay = 1.0 if last else 0.95**self.every * (step / self.total_steps) ** 3
        for name, average in self.average.items():
            average.lerp_(self.live[name], 1 - decay)
            self.live[name].copy_(average)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average

    def load_state_dict(self, average: dict[str, torch.Tensor]) -> None:
        for name, tensor in self.average.items():
            tensor.copy_(average[name])


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, lr_scales: dict[str, float] | None = None
) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over the trainable parameters; weight decay on weight matrices
    only (not biases, not norms); the LR times `lr_scales[prefix]` for names with that prefix
    (the longest matching prefix wins: {"backbone.": 0.1, "backbone.classifier.": 1}). A scale
    of 0 freezes those parameters: they get no gradient, which also saves its computation."""
    by_group: dict[tuple[float, bool], list[nn.Parameter]] = {}
    prefixes = sorted((lr_scales or {}).items(), key=lambda item: -len(item[0]))
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = next((s for pre, s in prefixes if name.startswith(pre)), 1.0)
            if scale == 0:
                p.requires_grad_(False)
                continue
            by_group.setdefault((scale, p.ndim >= 2), []).append(p)
    groups = [
        {
            "params": ps,
            "lr": cfg.lr * scale,
            "lr_scale": scale,
            "weight_decay": cfg.weight_decay if decay else 0.0,
        }
        for (scale, decay), ps in by_group.items()
    ]
    if cfg.optimizer == "sgd":
        # Nesterov's look-ahead needs momentum; momentum=0 is plain SGD
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    """The scheduled LR of the config's `lr`, whatever `lr_scales` did to some groups."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_scale", 1.0)


def triangle(step: int, *, peak: int, total: int, start: float = 0.2, end: float = 0.07) -> float:
    """The LR factor of airbench's schedule (Jordan 2024) at `step`: straight up from `start` to
    1 at step `peak`, then straight down to `end` at step `total`. Momentum stays constant, unlike
    one-cycle's; the LR starts and ends well above zero, where few and large steps still count."""
    if step < peak:
        return start + (1 - start) * step / peak
    return 1 - (1 - end) * (step - peak) / max(1, total - peak)


def make_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, *, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over `warmup` of the steps, then constant, cosine decay, or one-cycle; or
    a triangle."""
    sched = torch.optim.lr_scheduler
    warm = max(1, round(cfg.warmup * total_steps)) if cfg.warmup > 0 else 0
    if cfg.schedule == "triangle":
        return sched.LambdaLR(optimizer, functools.partial(triangle, peak=warm, total=total_steps))
    if cfg.schedule == "onecycle":
        return sched.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total_steps,
            # OneCycleLR divides by the warm-up phase's length in steps: at least one
            pct_start=max(cfg.warmup, 2 / total_steps),
            cycle_momentum=cfg.optimizer == "sgd",
        )
    after = (
        sched.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warm))
        if cfg.schedule == "cosine"
        else sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    )
    if warm == 0:
        return after
    warmup = sched.LinearLR(optimizer, start_factor=1e-3, end_factor=1.0, total_iters=warm)
    return sched.SequentialLR(optimizer, [warmup, after], milestones=[warm])
