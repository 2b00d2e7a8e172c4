"""Running a lab: resolve it on the map, build its config, record the run, judge the target.

A lab module has a `Config` dataclass and `run(config, run) -> metrics`. Everything around that —
the run's folder, its status when it ends (finished, failed, interrupted), the wall time, library
versions, whether the target was reached — happens here, the same for every lab.
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

from accelerate.utils import set_seed

from deepscape import distributed, landscape, metrics
from deepscape.config import ConfigError, apply_overrides
from deepscape.data import DataUnavailable
from deepscape.devices import resolve_device
from deepscape.runs import Run, RunStore, current_process, machine
from deepscape.tracking import WandbTracker

LIBRARIES = ("deepscape", "torch", "torchvision", "accelerate", "torchmetrics", "datasets", "numpy")


def build_config(lab: landscape.Lab, overrides: Iterable[str] = ()) -> Any:
    """The lab's default config with `key=value` overrides applied."""
    return apply_overrides(lab.module().Config(), overrides)


def run_lab(
    name: str,
    overrides: Iterable[str] = (),
    *,
    store: RunStore | None = None,
    resume: str | None = None,
    show_progress: bool = True,
    notify: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
    on_start: Callable[[Run], None] = lambda run: None,
    tags: dict[str, Any] | None = None,
    wandb: bool = False,
) -> Run:
    """Run lab `name` (an id, or a slug only one lab has) and return its recorded run.

    `resume` continues an interrupted run from its last checkpoint instead of starting anew.
    `on_start` receives the run as soon as it is recorded (so a caller can report on it if the
    lab raises). `tags` are stored in a new run's summary (a sweep tags its runs with its id).
    `wandb` also logs the run to Weights & Biases (offline when there is no login).
    Raises the lab's own error after recording the run as failed; KeyboardInterrupt after
    recording it as interrupted.
    """
    store = store or RunStore()
    the_map = landscape.load()
    lab = the_map.lab(name)
    module = lab.module()
    config = apply_overrides(module.Config(), [] if resume else overrides)
    # a lab whose training does not split across processes says why in ONE_PROCESS: refused
    # under a launcher rather than run N times over
    one_process = getattr(module, "ONE_PROCESS", "")
    if distributed.processes() > 1 and one_process:
        raise ConfigError(
            f"{lab.id} trains in a loop of its own that does not split across processes "
            f"({one_process}): run it without torchrun or accelerate launch"
        )
    if distributed.processes() > 1:  # under a launcher: join the others before opening the run
        distributed.start(cpu=resolve_device(getattr(config, "device", "auto")).type == "cpu")

    def open_run() -> Run:
        if resume:
            return _reopen(store, lab, resume, list(overrides))
        target = {**dataclasses.asdict(lab.target), "reached": None}
        return store.create(
            lab.id,
            dataclasses.asdict(config),
            target=target,
            processes=distributed.processes(),  # fixes the run's global batch (deepscape.train)
            **(tags or {}),
        )

    # one run, opened by the main process; the others work on a private copy of its files
    run = distributed.shared_run(open_run)
    main = distributed.is_main()
    if resume:
        config = run.config_as(module.Config)
    elif main:
        missing = landscape.missing_prerequisites(lab, landscape.progress(the_map, store))
        if missing:
            notify(
                f"note: {lab.id} builds on {', '.join(missing)}, whose target you have not "
                "reached yet — running it anyway."
            )
    wall_before = float(run.summary.get("wall_seconds") or 0.0) if resume else 0.0
    run.show_progress = show_progress and main
    on_start(run)
    tracker = WandbTracker(run, lab=lab.id, warn=notify) if wandb and main else None

    set_seed(config.seed)
    started = time.perf_counter()
    try:
        metrics = module.run(config, run)
    except KeyboardInterrupt:
        run.discard_pending()  # the checkpoint is the truth; a resume redoes the rest
        run.update_summary(
            status="interrupted",
            wall_seconds=wall_before + time.perf_counter() - started,
            resume_with=f"deepscape run {lab.id} --resume {run.id}",
        )
        if tracker:
            tracker.finish("interrupted")
        raise
    except (DataUnavailable, ConfigError):
        if tracker:
            tracker.finish("failed")
        if not resume:  # bad input, caught before any training: nothing worth keeping
            shutil.rmtree(run.dir, ignore_errors=True)
        raise
    except Exception as error:
        run.commit_history()
        run.update_summary(
            status="failed",
            error=f"{type(error).__name__}: {error}",
            wall_seconds=wall_before + time.perf_counter() - started,
        )
        if tracker:
            tracker.finish("failed")
        raise
    finally:
        distributed.discard_replica(run)  # a non-main process's private copy; main's is kept
    if not main:  # the main process records how the run ended
        return run
    run.commit_history()
    run.checkpoint_path.unlink(missing_ok=True)  # a finished run has nothing left to resume
    run.update_summary(
        status="finished",
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        wall_seconds=round(wall_before + time.perf_counter() - started, 3),
        metrics=metrics,
        best=best_epoch(run),
        target=judged(lab.target, metrics, getattr(config, "dataset", None)),
        versions=versions(),
        machine=machine(),
    )
    if tracker:
        tracker.finish("finished")
    return run


def judged(target: landscape.Target, metrics: dict[str, Any], dataset: str | None) -> dict:
    """The target as it applies to a run on `dataset` (its bar there), and whether it was met."""
    return {
        **dataclasses.asdict(target),
        "dataset": dataset or target.dataset,
        "value": target.value_on(dataset),
        "reached": target.reached(metrics, dataset),
    }


def _reopen(store: RunStore, lab: landscape.Lab, run_id: str, overrides: list[str]) -> Run:
    run = store.get(run_id)
    summary = run.summary
    if summary["lab"] != lab.id:
        raise ConfigError(f"run {run.id} is a run of {summary['lab']}, not of {lab.id}")
    if run.status != "interrupted":
        raise ConfigError(f"run {run.id} is {run.status}: only an interrupted run can be resumed")
    if overrides:
        raise ConfigError("a resumed run keeps its config: drop the key=value overrides")
    run.update_summary(status="running", process=current_process(), resume_with=None)
    return run


def best_epoch(run: Run) -> dict[str, Any]:
    """The evaluation with the best value of the monitored metric (the trainer's task names it;
    which way is better comes from the metrics registry), if any."""
    evaluations = run.evaluations()
    if not evaluations:
        return {}
    monitor = run.summary.get("monitor", "val_loss")
    best = metrics.best(evaluations, monitor) or evaluations[-1]
    return {k: v for k, v in best.items() if k != "kind"}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
