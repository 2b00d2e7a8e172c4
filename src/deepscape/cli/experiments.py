"""`deepscape sweep`, `agent` and `compare`: the experiment manager's commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from deepscape import landscape
from deepscape.cli.common import AsJson, Home, WandbFlag, app, err, one_line_errors, out, print_json
from deepscape.config import ConfigError
from deepscape.lab_config import config_class
from deepscape.runs import Run, RunNotFound, RunStore


@app.command()
def sweep(
    lab_name: Annotated[str | None, typer.Argument(metavar="LAB")] = None,
    params: Annotated[
        list[str] | None,
        typer.Argument(metavar="KEY=V1,V2|LOW..HIGH[:log|:int]...", help="what to vary"),
    ] = None,
    random: Annotated[int, typer.Option(help="N random draws instead of the full grid")] = 0,
    seeds: Annotated[int, typer.Option(help="repeat every setting with seeds 0 … K-1")] = 1,
    jobs: Annotated[int, typer.Option(help="runs at a time, each in its own process")] = 1,
    resume: Annotated[str | None, typer.Option(help="finish an interrupted sweep (its id)")] = None,
    wandb: WandbFlag = False,
    agent: Annotated[
        bool, typer.Option("--agent", help="with --wandb: register a W&B sweep for agents")
    ] = False,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Run a lab many times over a grid or random draws; then compare the runs."""
    from deepscape.sweep import Sweep, parse_spec, run_sweep

    store = RunStore(home)
    with one_line_errors():
        if jobs < 1:
            raise ConfigError(f"--jobs {jobs}: need at least 1")
        if resume:
            the_sweep = Sweep.load(store, resume)
        else:
            if lab_name is None:
                raise ConfigError("name a lab to sweep, e.g. deepscape sweep digits lr=1e-3,1e-2")
            lab = landscape.load().lab(lab_name)
            if not any("," in p or ".." in p for p in params or []) and seeds == 1:
                raise ConfigError(
                    "nothing to sweep: give key=v1,v2, a range with --random N, or --seeds K"
                )
            spec = parse_spec(
                lab.id, config_class(lab), params or [], seeds=seeds, random_draws=random
            )
            the_sweep = Sweep.create(store, spec)
    if agent:
        _register_with_wandb(the_sweep, wandb, as_json)
        return
    total = len(the_sweep.spec.plan())
    err.print(
        f"sweep [cyan]{the_sweep.id}[/]: {total} runs of {the_sweep.spec.lab}, {jobs} at a time"
    )
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=as_json,
    ) as bar:
        task = bar.add_task("sweep", total=total)

        def show(p) -> None:
            best = f" · best {p.best:.4g}" if p.best is not None else ""
            bar.update(
                task,
                completed=p.done + p.failed,
                description=f"done {p.done} · running {p.running} · failed {p.failed}{best}",
            )

        try:
            progress = run_sweep(the_sweep, store, jobs=jobs, on_update=show, wandb=wandb)
        except KeyboardInterrupt:
            err.print(
                f"[yellow]sweep interrupted[/] — resume with: "
                f"deepscape sweep --resume {the_sweep.id}"
            )
            raise typer.Exit(130) from None
    runs = list(the_sweep.runs(store).values())
    figures = _write_figures(runs, the_sweep.dir, the_sweep.spec) if runs else []
    if as_json:
        print_json(
            {
                "sweep_id": the_sweep.id,
                "dir": str(the_sweep.dir),
                "total": total,
                "finished": progress.done,
                "failed": progress.failed,
                "best": progress.best,
                "runs": [r.id for r in runs],
                "figures": [str(f) for f in figures],
            }
        )
        return
    _print_comparison(runs)
    for figure in figures:
        out.print(f"figure: {figure}")


@app.command()
def compare(
    ids: Annotated[list[str], typer.Argument(metavar="RUN|SWEEP...")],
    png: Annotated[bool, typer.Option("--png", help="also draw the comparison figures")] = False,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Runs side by side: the config keys that differ and the metrics, best first."""
    from deepscape.compare import comparison
    from deepscape.sweep import Sweep, SweepError

    store = RunStore(home)
    runs: list[Run] = []
    sweeps: list[Sweep] = []
    with one_line_errors():
        for name in ids:
            try:
                runs.append(store.get(name))
            except RunNotFound:
                try:
                    sweeps.append(Sweep.load(store, name))
                except SweepError:
                    raise RunNotFound(
                        f"'{name}' is neither a run nor a sweep in {store.root}"
                    ) from None
        for s in sweeps:
            runs += s.runs(store).values()
        try:
            result = comparison(runs)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    figures: list[Path] = []
    if sweeps and len(sweeps) == 1 and not ids[1:]:
        figures = _write_figures(runs, sweeps[0].dir, sweeps[0].spec)
    elif png:
        folder = store.root / "comparisons" / f"{result.runs[0].id}-and-{len(runs) - 1}"
        figures = _write_figures(runs, folder, None)
    if as_json:
        print_json(
            {
                "metric": result.metric,
                "keys": result.keys,
                "rows": result.rows,
                "figures": [str(f) for f in figures],
            }
        )
        return
    _print_comparison(runs)
    for figure in figures:
        out.print(f"figure: {figure}")


@app.command()
def agent(
    sweep_id: Annotated[
        str, typer.Argument(metavar="SWEEP_ID", help="the W&B sweep (`sweep … --wandb --agent`)")
    ],
    count: Annotated[int, typer.Option(help="runs to take from the sweep (0: until it ends)")] = 0,
    home: Home = None,
) -> None:
    """Run runs of a W&B sweep on this machine, recorded in this machine's run store; start one
    agent on every machine that should help, then `runs import` gathers the runs in one store."""
    import wandb

    from deepscape.tracking import PROJECT, logged_in

    if count < 0:
        err.print(f"[red]error:[/] --count {count}: give 0 (until the sweep ends) or more")
        raise typer.Exit(2)
    if not logged_in():  # W&B would ask for a key on the terminal, or fail inside its agent
        err.print("[red]error:[/] an agent takes its runs from W&B: run `wandb login` first")
        raise typer.Exit(2)
    # The agent starts each run as the sweep's command, `deepscape run LAB --wandb key=value …`:
    # with this store as its home, and this environment's deepscape first on the PATH.
    os.environ["DEEPSCAPE_HOME"] = str(RunStore(home).root.resolve())
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    err.print(f"agent for W&B sweep [cyan]{sweep_id}[/]: runs go to {os.environ['DEEPSCAPE_HOME']}")
    project = None if sweep_id.count("/") == 2 else PROJECT  # entity/project/id names its own
    wandb.agent(sweep_id, project=project, count=count or None)


def _register_with_wandb(the_sweep, wandb: bool, as_json: bool) -> None:
    from deepscape.sweep import register_sweep, sweep_config

    if not wandb:
        err.print("[red]error:[/] --agent registers a W&B sweep: add --wandb")
        raise typer.Exit(2)
    config = sweep_config(the_sweep.spec, landscape.load().lab(the_sweep.spec.lab).target)
    try:
        sweep_id = register_sweep(config, the_sweep.dir)
    except Exception as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print_json({"sweep_id": the_sweep.id, "wandb_sweep": sweep_id, "config": config})
        return
    out.print(
        f"W&B sweep [cyan]{sweep_id}[/] registered. On each machine: "
        f"[cyan]deepscape agent {sweep_id}[/]"
    )


def _write_figures(runs: list[Run], folder: Path, spec) -> list[Path]:
    from deepscape.compare import comparison, curves_figure, metric_vs_parameters_figure
    from deepscape.sweep import Range

    folder.mkdir(parents=True, exist_ok=True)
    result = comparison(runs)
    log_keys = set()
    if spec is not None:
        log_keys = {k for k, p in spec.params.items() if isinstance(p, Range) and p.scale == "log"}
    drawn = [
        curves_figure(result, folder / "curves.png"),
        metric_vs_parameters_figure(result, folder / "metric_vs_parameters.png", log_keys=log_keys),
    ]
    return [f for f in drawn if f is not None]


def _print_comparison(runs: list[Run]) -> None:
    from deepscape.compare import comparison

    result = comparison(runs)
    metrics = [k for k in result.rows[0] if k not in ("id", "status", *result.keys)]
    status = ["status"] if any(r["status"] != "finished" for r in result.rows) else []
    # A run is shown by the last part of its id, which `runs show` and `compare` accept alone.
    table = Table(
        Column("run", no_wrap=True),
        *status,
        *result.keys,
        *metrics,
        title=f"{len(runs)} runs, best {result.metric} first",
        title_justify="left",
    )
    for row in result.rows:
        cells = [row.get(k) for k in (*status, *result.keys, *metrics)]
        table.add_row(
            row["id"].rsplit("-", 1)[-1],
            *(f"{c:.4g}" if isinstance(c, float) else "" if c is None else str(c) for c in cells),
        )
    out.print(table)
