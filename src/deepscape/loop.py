"""The services of a training loop, for the Trainer and for labs that write their own loop.

    with Loop(run, total_steps=n, state={"model": model, "optimizer": optimizer}) as loop:
        while loop.step < n:
            loss = …                                     # the lab's own step
            loop.check(loss)                             # NaN or ∞: stop with a clear message
            loop.log_step({"kind": "step", "step": loop.step, "loss": loss})
            if loop.step % 100 == 0:
                loop.evaluated({"kind": "eval", "step": loop.step, "val_loss": …})

A `Loop` resumes from the run's checkpoint on entry (everything in `state` that has a
`state_dict`, and the random state of the moment the checkpoint was taken), shows a progress bar,
records steps and evaluations in the run, and takes a checkpoint after an evaluation when
`checkpoint_every` seconds have passed since the last one, and always after the last step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Protocol, TypeVar

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import track as rich_track

from deepscape.runs import Run, write_atomic

Item = TypeVar("Item")


def track(
    sequence: Iterable[Item], *, description: str, transient: bool = False, disable: bool = False
) -> Iterable[Item]:
    """rich's `track`, drawn on stderr like every progress bar here: stdout holds what a command
    prints, so `deepscape run … --json` stays one JSON document."""
    return rich_track(sequence, description=description, transient=transient, disable=disable,
                      console=Console(stderr=True))  # fmt: skip


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class CorruptCheckpoint(RuntimeError):
    """A checkpoint that cannot be read back."""


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class Loop:
    """Records, checkpoints and resume, the divergence check and the progress bar of one run."""

    def __init__(
        self,
        run: Run,
        *,
        total_steps: int | None,
        state: dict[str, Stateful],
        checkpoint_every: float = 10.0,
        show_progress: bool | None = None,
        advice: str = "lower the learning rate",
    ):
        # total_steps None: a loop that ends on its own (a time budget) counts without a total;
        # it sets total_steps once it knows its last evaluation, which then takes a checkpoint
        self.run, self.total_steps, self.state = run, total_steps, state
        self.checkpoint_every, self.advice = checkpoint_every, advice
        self.show_progress = run.show_progress if show_progress is None else show_progress
        self.step = 0  # steps done
        self._random_state: dict[str, Any] | None = None
        self._stack = ExitStack()

    # -- entering: resume, clock, progress bar ----------------------------------------------------
    def __enter__(self) -> Loop:
        self.step = self.resume()
        before = [r for r in self.run.history() if "seconds" in r]  # a resumed run keeps counting
        self._clock = time.perf_counter() - (before[-1]["seconds"] if before else 0.0)
        self._last_checkpoint = time.monotonic()
        self._progress, self._bar = self._stack.enter_context(self._progress_bar())
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @contextmanager
    def _progress_bar(self) -> Iterator[tuple[Progress, TaskID]]:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not self.show_progress,
        ) as progress:
            bar = progress.add_task("training", total=self.total_steps, completed=self.step)
            yield progress, bar

    # -- each step --------------------------------------------------------------------------------
    def check(self, loss: float, where: str = "") -> None:
        """Stop with a message that names the fix when the loss is no longer a number."""
        if loss != loss or loss in (float("inf"), float("-inf")):
            at = f"step {self.step}" + (f" {where}" if where else "")
            raise TrainingDiverged(f"the loss became {loss} at {at}: {self.advice}")

    def log_step(self, record: dict[str, Any] | None) -> None:
        """Count one finished step and record it (in memory until the next checkpoint); a loop
        that records only every n-th step passes None for the others."""
        if record is not None:
            self.run.log(record)
        self.step += 1
        if self.show_progress:  # a hidden bar's update still takes its lock and the clock
            self._progress.update(self._bar, advance=1)

    def evaluated(self, record: dict[str, Any], description: str = "") -> None:
        """Record an evaluation (with the training time so far, unless the record brings its own:
        a time-budgeted loop's); checkpoint when it is due."""
        seconds = record.get("seconds", time.perf_counter() - self._clock)
        self.run.log({**record, "seconds": seconds})
        if description:
            self._progress.update(self._bar, description=description)
        due = time.monotonic() - self._last_checkpoint >= self.checkpoint_every
        if due or (self.total_steps is not None and self.step >= self.total_steps):
            self.checkpoint()
            self._last_checkpoint = time.monotonic()

    # -- checkpoints: what makes a run resumable --------------------------------------------------
    def checkpoint(self) -> None:
        state = {name: item.state_dict() for name, item in self.state.items()}
        state["steps_done"] = self.step
        state["random"] = _random_state()
        # History first: if we are stopped in between, resume() drops the records past the
        # checkpoint; the other order could leave a checkpoint whose steps have no history.
        self.run.commit_history()
        tmp = self.run.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.run.checkpoint_path)
        write_atomic(
            self.run.dir / "progress.txt", f"{self.step}/{self.total_steps or '?'} steps\n"
        )

    def resume(self) -> int:
        """Load the run's checkpoint if it has one; returns the steps it had done."""
        path = self.run.checkpoint_path
        if not path.exists():
            return 0
        try:  # weights_only: a checkpoint is data, never code to unpickle
            state = torch.load(path, map_location="cpu", weights_only=True)
            for name, item in self.state.items():
                item.load_state_dict(state[name])
            done = int(state["steps_done"])
        except Exception as error:
            raise CorruptCheckpoint(
                f"checkpoint {path} cannot be read ({type(error).__name__}): "
                "start a new run instead of resuming this one"
            ) from error
        self._random_state = state["random"]
        # a step record is step `step`; an evaluation is taken after `step` steps
        self.run.keep_history(lambda r: r.get("step", 0) < done + (r.get("kind") != "step"))
        return done

    def restore_random_state(self) -> None:
        """Take back the random state of the checkpoint this run resumed from (a loop that
        re-draws its data order first calls this after drawing it)."""
        if self._random_state is not None:
            torch.set_rng_state(self._random_state["cpu"])
            if torch.cuda.is_available() and "cuda" in self._random_state:
                torch.cuda.set_rng_state_all(self._random_state["cuda"])


def _random_state() -> dict[str, Any]:
    # torch's generators draw the augmentations, dropout and the shuffling; Python's and NumPy's
    # are re-seeded at each epoch and draw nothing in between
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state
