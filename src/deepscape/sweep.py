"""Sweeps: many runs of one lab, over a grid of values or random draws from ranges.

    deepscape sweep digits lr=1e-3,3e-3,1e-2 model=mlp,cnn --seeds 2 --jobs 2
    deepscape sweep digits lr=1e-4..1e-1:log width=16..128:int --random 8

A sweep is a spec (sweep.json in `runs/sweeps/<id>/`) plus the ordinary runs it made, each tagged
with the sweep's id and its place in the plan. Its state — what is done, running, failed, left —
is read from those runs, never stored twice, so `--resume` simply runs the places with no finished
run, and two sweeps writing to one store at once cannot contradict each other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import secrets
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepscape import exit_quickly, metrics
from deepscape.config import ConfigError, closest, format_value, parse_value
from deepscape.runs import Run, RunStore, write_atomic
from deepscape.tracking import PROJECT, logged_in


class SweepError(ConfigError):
    """A bad sweep spec; the message names the part that is wrong."""


@dataclass(frozen=True)
class Choices:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    scale: str  # "linear", "log" or "int"

    def draw(self, rng: random.Random) -> float | int:
        if self.scale == "int":
            return rng.randint(int(self.low), int(self.high))
        if self.scale == "log":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class SweepSpec:
    lab: str
    params: dict[str, Choices | Range]
    seeds: int = 1
    random: int = 0  # 0: the full grid; N: N random draws
    fixed: tuple[str, ...] = ()  # key=value overrides every run shares

    def plan(self) -> list[dict[str, Any]]:
        """Every run of the sweep as {key: value}, seeds included, in a fixed order."""
        if self.random:
            rng = random.Random(0)  # the same spec always plans the same draws
            points = [
                {
                    key: p.draw(rng) if isinstance(p, Range) else rng.choice(p.values)
                    for key, p in self.params.items()
                }
                for _ in range(self.random)
            ]
        else:
            keys = list(self.params)
            grids = [self.params[k].values for k in keys]  # type: ignore[union-attr]
            points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grids)]
        return [{**point, "seed": seed} for point in points for seed in range(self.seeds)]

    def to_json(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "params": {
                k: {"values": list(p.values)} if isinstance(p, Choices) else dataclasses.asdict(p)
                for k, p in self.params.items()
            },
            "seeds": self.seeds,
            "random": self.random,
            "fixed": list(self.fixed),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepSpec:
        params = {
            k: Choices(tuple(p["values"])) if "values" in p else Range(**p)
            for k, p in data["params"].items()
        }
        return cls(data["lab"], params, data["seeds"], data["random"], tuple(data["fixed"]))


def parse_spec(
    lab_id: str, config_type: type, items: list[str], *, seeds: int = 1, random_draws: int = 0
) -> SweepSpec:
    """Check a sweep spec completely (every key, value and range) before any run starts."""
    hints = typing.get_type_hints(config_type)  # every field's type, by name
    if seeds < 1:
        raise SweepError(f"--seeds {seeds}: need at least 1")
    if random_draws < 0:
        raise SweepError(f"--random {random_draws}: need a positive number of draws")
    params: dict[str, Choices | Range] = {}
    fixed: list[str] = []
    for item in items:
        key, sep, text = (part.strip() for part in item.partition("="))
        if not sep or not key:
            raise SweepError(f"'{item}' is not key=values (for example lr=0.01,0.1)")
        if key not in hints:
            raise SweepError(f"unknown config key '{key}' in '{item}'{closest(key, hints)}")
        if key == "seed":
            raise SweepError("sweep seeds with --seeds K (runs seeds 0 … K-1), not seed=")
        if key in params or any(f.startswith(key + "=") for f in fixed):
            raise SweepError(f"'{key}' is given twice")
        takes_text = hints[key] is str or str in typing.get_args(hints[key])
        if ".." in text and not takes_text:  # data_dir=../x is a path, not a range
            params[key] = _parse_range(key, text, hints[key])
            continue
        values = choices(text)
        if any(v.strip() == "" for v in values):
            raise SweepError(f"'{item}': empty value in the list (write {key}=a,b,c)")
        try:
            parsed = tuple(parse_value(key, v.strip(), hints[key]) for v in values)
        except ConfigError as error:
            raise SweepError(str(error)) from None
        if len(parsed) == 1:
            fixed.append(f"{key}={values[0].strip()}")
        else:
            params[key] = Choices(parsed)
    if any(isinstance(p, Range) for p in params.values()) and not random_draws:
        ranged = next(k for k, p in params.items() if isinstance(p, Range))
        raise SweepError(f"'{ranged}' is a range: ranges need --random N (how many draws)")
    return SweepSpec(lab_id, params, seeds, random_draws, tuple(fixed))


def choices(text: str) -> list[str]:
    """The values of `a,b,c`, split at the commas outside brackets: `[0.9,0.95],[0.8,0.9]` is
    two choices of a tuple option."""
    values, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(text[start:i])
            start = i + 1
    return [*values, text[start:]]


def _parse_range(key: str, text: str, annotation: Any) -> Range:
    bounds, _, scale = text.partition(":")
    scale = scale or ("int" if annotation is int else "linear")
    low_text, _, high_text = bounds.partition("..")
    if annotation not in (int, float):
        raise SweepError(f"{key}={text}: ranges are for numbers; list the values instead")
    if scale not in ("linear", "log", "int"):
        raise SweepError(f"{key}={text}: scale '{scale}' must be linear, log or int")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise SweepError(
            f"{key}={text}: a range is LOW..HIGH[:log|:int], e.g. 1e-4..1e-1:log"
        ) from None
    if not low < high:
        raise SweepError(f"{key}={text}: the low end must be below the high end")
    if scale == "log" and low <= 0:
        raise SweepError(f"{key}={text}: a log range must stay above 0")
    if annotation is int and scale != "int" and scale != "log":
        scale = "int"
    return Range(low, high, scale)


# -- the record of a sweep -----------------------------------------------------------------------
@dataclass
class Sweep:
    dir: Path
    spec: SweepSpec

    @property
    def id(self) -> str:
        return self.dir.name

    @classmethod
    def create(cls, store: RunStore, spec: SweepSpec) -> Sweep:
        root = store.root / "sweeps"
        root.mkdir(parents=True, exist_ok=True)
        while True:
            slug = spec.lab.split("/")[-1]
            sweep_dir = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"
            try:
                sweep_dir.mkdir()
                break
            except FileExistsError:
                continue
        record = {
            "id": sweep_dir.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "spec": spec.to_json(),
        }
        write_atomic(sweep_dir / "sweep.json", json.dumps(record, indent=2))
        return cls(sweep_dir, spec)

    @classmethod
    def load(cls, store: RunStore, sweep_id: str) -> Sweep:
        root = store.root / "sweeps"
        ids = sorted(p.name for p in root.glob("*") if (p / "sweep.json").exists())
        matches = [i for i in ids if sweep_id and sweep_id in i]
        if sweep_id in ids:
            matches = [sweep_id]
        if len(matches) != 1:
            hint = closest(sweep_id, ids) or f" (sweeps: {', '.join(ids) or 'none yet'})"
            raise SweepError(f"no sweep '{sweep_id}' in {root}{hint}")
        sweep_dir = root / matches[0]
        record = json.loads((sweep_dir / "sweep.json").read_text())
        return cls(sweep_dir, SweepSpec.from_json(record["spec"]))

    def runs(self, store: RunStore) -> dict[int, Run]:
        """The latest run made for each place of the plan."""
        # oldest first, so a later attempt at the same place replaces an earlier one
        return {run.summary["sweep"]["index"]: run for run in store.list(sweep=self.id)}


# -- running a sweep -----------------------------------------------------------------------------
def _override_text(value: Any) -> str:
    """A sweep's value as override text; a drawn float is kept to 6 significant digits."""
    return f"{value:.6g}" if isinstance(value, float) else format_value(value)


def overrides_for(spec: SweepSpec, point: dict[str, Any], threads: int) -> list[str]:
    chosen = [f"{k}={_override_text(v)}" for k, v in point.items()]
    # Each of J parallel runs gets cores / J threads unless the spec fixes threads itself.
    extra = [] if any(f.startswith("threads=") for f in spec.fixed) else [f"threads={threads}"]
    return [*spec.fixed, *extra, *chosen]


@dataclass
class SweepProgress:
    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    best: float | None = None


def run_sweep(
    sweep: Sweep,
    store: RunStore,
    *,
    jobs: int = 1,
    on_update: Any = lambda progress: None,
    wandb: bool = False,
) -> SweepProgress:
    """Run every place of the plan that has no finished run yet; J at a time in processes.

    A run that fails is recorded as failed and the sweep goes on. Ctrl-C stops the sweep after
    marking its running runs interrupted; `--resume` continues them from their checkpoints.
    """
    from deepscape import landscape

    target = landscape.load().lab(sweep.spec.lab).target
    plan = sweep.spec.plan()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    progress = SweepProgress(total=len(plan))
    todo: list[tuple[int, list[str], str | None]] = []
    existing = sweep.runs(store)
    for run in existing.values():
        _count(progress, run, target)
    for index, point in enumerate(plan):
        run = existing.get(index)
        if run is not None and run.status in ("finished", "failed", "running"):
            continue
        resume = run.id if run is not None and run.status == "interrupted" else None
        todo.append((index, overrides_for(sweep.spec, point, threads), resume))

    left = len(todo)

    def finished(run_id: str | None) -> None:
        nonlocal left
        left -= 1
        progress.running = min(jobs, left)
        if run_id:
            _count(progress, store.get(run_id), target)
        on_update(progress)

    tasks = [
        (sweep.spec.lab, o, str(store.root), {"id": sweep.id, "index": i}, r, wandb)
        for i, o, r in todo
    ]
    progress.running = min(jobs, left)
    on_update(progress)
    if jobs == 1:
        for task in tasks:
            finished(_run_one(*task))
        return progress

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # fork + torch threads can deadlock
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=exit_quickly)
    try:  # the pool queues what exceeds `jobs` workers
        for future in as_completed([pool.submit(_run_one, *task) for task in tasks]):
            finished(future.result())
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)  # workers mark their runs interrupted
        raise
    finally:
        # Every run is recorded by now: the workers' own exit (about a second of torch's
        # teardown) need not hold up the comparison that follows.
        pool.shutdown(wait=False, cancel_futures=True)
    return progress


def _count(progress: SweepProgress, run: Run, target: Any) -> None:
    summary = run.summary
    if summary["status"] == "failed":
        progress.failed += 1
    elif summary["status"] == "finished":
        progress.done += 1
        value = summary.get("metrics", {}).get(target.metric)
        if value is not None and (
            progress.best is None or metrics.better(target.metric, value, progress.best)
        ):
            progress.best = value


def _run_one(
    lab: str,
    overrides: list[str],
    home: str,
    tag: dict[str, Any],
    resume: str | None,
    wandb: bool = False,
) -> str | None:
    """One run of a sweep (in a worker process when jobs > 1); returns its id, or None."""
    from deepscape.lab import run_lab

    made: list[Run] = []
    # A failed run is recorded as failed by run_lab and the sweep goes on. Ctrl-C is not caught:
    # it reaches run_sweep (and, with workers, every process of the group), which stops.
    with contextlib.suppress(Exception):
        run_lab(
            lab,
            [] if resume else overrides,
            store=RunStore(home),
            resume=resume,
            show_progress=False,
            notify=lambda message: None,
            tags={"sweep": tag},
            on_start=made.append,
            wandb=wandb,
        )
    return made[0].id if made else None


def inherited(config: Any, own: set[str]) -> list[str]:
    """`key=value` for every option of `config` except `own` and those left at None: what the
    runs of a lab's stage take over from the run that stages them."""
    return [
        f"{f.name}={format_value(getattr(config, f.name))}"
        for f in dataclasses.fields(config)
        if f.name not in own and getattr(config, f.name) is not None
    ]


def stage(
    parent: Run,
    name: str,
    lab: str,
    config_type: type,
    items: list[str],
    *,
    seeds: int = 1,
    jobs: int = 1,
) -> list[Run]:
    """A stage of a lab that teaches by sweeping another lab: a recorded sweep, named in the
    parent run's summary so that resuming the parent reuses it instead of starting over."""
    store = RunStore(parent.dir.parent)
    known = parent.summary.get("sweeps", {})
    if name in known:
        sweep = Sweep.load(store, known[name])
    else:
        sweep = Sweep.create(store, parse_spec(lab, config_type, items, seeds=seeds))
        parent.update_summary(sweeps={**known, name: sweep.id})
    run_sweep(sweep, store, jobs=jobs)
    return list(sweep.runs(store).values())


# -- W&B: the same sweep, run by agents on many machines ----------------------------------------
def sweep_config(spec: SweepSpec, target: Any) -> dict[str, Any]:
    """A W&B sweep configuration equivalent to a deepscape sweep spec (for `--agent`)."""
    parameters: dict[str, Any] = {}
    for key, param in spec.params.items():
        if isinstance(param, Choices):
            parameters[key] = {"values": list(param.values)}
        elif param.scale == "log":
            parameters[key] = {
                "distribution": "log_uniform_values",
                "min": param.low,
                "max": param.high,
            }
        elif param.scale == "int":
            parameters[key] = {
                "distribution": "int_uniform",
                "min": int(param.low),
                "max": int(param.high),
            }
        else:
            parameters[key] = {"distribution": "uniform", "min": param.low, "max": param.high}
    for fixed in spec.fixed:
        key, _, value = fixed.partition("=")
        parameters[key] = {"value": value}
    parameters["seed"] = {"values": list(range(spec.seeds))}
    config = {
        "name": f"deepscape {spec.lab}",
        "method": "random" if spec.random else "grid",
        "metric": {
            "name": target.metric,
            "goal": "maximize" if metrics.get(target.metric).higher_is_better else "minimize",
        },
        "parameters": parameters,
        # each agent runs: deepscape run LAB --wandb key=value … (our own override syntax)
        "command": ["deepscape", "run", spec.lab, "--wandb", "${args_no_hyphens}"],
    }
    if spec.random:
        config["run_cap"] = spec.random * spec.seeds
    return config


def register_sweep(config: dict[str, Any], folder: Path) -> str:
    """Register `config` as a W&B sweep; returns its id. The config is also kept in `folder`."""
    (folder / "wandb_sweep.json").write_text(json.dumps(config, indent=2))
    if not logged_in() or os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled"):
        raise RuntimeError(
            "registering a W&B sweep needs a W&B login and the network (run `wandb login`); "
            f"the sweep's W&B config is in {folder / 'wandb_sweep.json'}"
        )
    import wandb

    return wandb.sweep(config, project=PROJECT)
