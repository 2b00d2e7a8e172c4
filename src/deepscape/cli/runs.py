"""`deepscape runs`: list (with filters), show and delete recorded runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from deepscape import landscape
from deepscape.cli.common import (
    AsJson,
    Home,
    app,
    err,
    one_line_errors,
    out,
    print_json,
    runs_table,
)
from deepscape.config import ConfigError, closest
from deepscape.runs import STATUSES, Run, RunStore

runs_app = typer.Typer(help="List, show, delete and import recorded runs.")
app.add_typer(runs_app, name="runs")

# -- the run store ---------------------------------------------------------------------------------
LabFilter = Annotated[str | None, typer.Option(help="only runs of this lab (id or slug)")]
SweepFilter = Annotated[str | None, typer.Option(help="only runs of this sweep (its id)")]
StatusFilter = Annotated[
    str | None, typer.Option(help="only runs with this status: " + ", ".join(STATUSES))
]
WhereFilter = Annotated[
    list[str] | None,
    typer.Option(help="only runs whose config has KEY=VALUE (repeat for several)"),
]


def select_runs(
    store: RunStore,
    lab: str | None,
    sweep: str | None,
    status: str | None,
    where: list[str] | None,
) -> list[Run]:
    lab_id = landscape.load().lab(lab).id if lab else None
    if status is not None and status not in STATUSES:
        hint = closest(status, STATUSES)
        raise ConfigError(f"--status {status}: use one of {', '.join(STATUSES)}{hint}")
    conditions = {}
    for item in where or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--where {item}: write KEY=VALUE, e.g. --where model=cnn")
        conditions[key.strip()] = value.strip()
    return store.list(lab_id, sweep=sweep, status=status, where=conditions)


@runs_app.callback(invoke_without_command=True)
def runs_list(
    ctx: typer.Context,
    lab: LabFilter = None,
    sweep: SweepFilter = None,
    status: StatusFilter = None,
    where: WhereFilter = None,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """List recorded runs, oldest first (filters combine)."""
    if ctx.invoked_subcommand is not None:
        return
    with one_line_errors():
        selected = select_runs(RunStore(home), lab, sweep, status, where)
    summaries = [_with_live_status(r) for r in selected]
    if as_json:
        print_json(summaries)
        return
    if not summaries:
        out.print("No runs yet. Start with: [cyan]deepscape run vision/101/digits[/]")
        return
    runs_table(summaries, None, title=f"Runs in {RunStore(home).root}")


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(metavar="RUN")],
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """One run: its summary, config and figures."""
    with one_line_errors():
        run_ = RunStore(home).get(run_id)
    summary = _with_live_status(run_)
    if as_json:
        print_json(
            {
                **summary,
                "config": run_.config,
                "dir": str(run_.dir),
                "figures": [str(f) for f in run_.figures()],
            }
        )
        return
    out.print(f"[bold]{run_.id}[/]  {summary['lab']} · {summary['status']}  ({run_.dir})")
    if summary.get("error"):
        out.print(f"[red]error:[/] {summary['error']}", highlight=False)
    if summary.get("resume_with") and summary["status"] == "interrupted":
        out.print(f"resume with: [cyan]{summary['resume_with']}[/]")
    _key_values("metrics", summary.get("metrics", {}))
    _key_values("best epoch", summary.get("best", {}))
    if (t := summary.get("target")) and t.get("reached") is not None:
        out.print(
            f"target: {t['metric']} {t['op']} {t['value']} → "
            f"{'[green]reached[/]' if t['reached'] else '[yellow]not reached[/]'}"
        )
    _key_values("config", run_.config)
    for figure in run_.figures():
        out.print(f"figure: {figure}")


@runs_app.command("delete")
def runs_delete(
    run_ids: Annotated[list[str] | None, typer.Argument(metavar="[RUN]...")] = None,
    lab: LabFilter = None,
    sweep: SweepFilter = None,
    status: StatusFilter = None,
    where: WhereFilter = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    home: Home = None,
) -> None:
    """Delete runs: the ones named, or every run the filters select."""
    store = RunStore(home)
    with one_line_errors():
        if run_ids:
            doomed = [store.get(run_id) for run_id in run_ids]
        elif lab or sweep or status or where:
            doomed = select_runs(store, lab, sweep, status, where)
        else:
            raise ConfigError("name the runs to delete, or select them with --lab/--sweep/--status")
    if not doomed:
        out.print("No runs match: nothing deleted.")
        return
    running = [r.id for r in doomed if r.status == "running"]
    if running:
        err.print(f"[red]error:[/] {', '.join(running)} still running: stop it first")
        raise typer.Exit(2)
    if not yes:
        if not sys.stdin.isatty():
            err.print(f"[red]error:[/] would delete {len(doomed)} runs: add --yes to confirm")
            raise typer.Exit(2)
        names = ", ".join(r.id for r in doomed)
        typer.confirm(f"Delete {len(doomed)} run(s): {names}?", abort=True)
    for run_ in doomed:
        store.delete(run_)
    out.print(f"Deleted {len(doomed)} run{'s' * (len(doomed) != 1)}.")


@runs_app.command("import")
def runs_import(
    folders: Annotated[list[Path], typer.Argument(metavar="FOLDER...", help="runs or run stores")],
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Merge runs recorded on other machines into this store, so that `compare` sees them all
    (runs already here, byte for byte, are skipped)."""
    store = RunStore(home)
    with one_line_errors():
        imported, skipped = store.import_runs(folders)
    if as_json:
        print_json({"imported": imported, "skipped": skipped, "store": str(store.root)})
        return
    out.print(
        f"Imported {len(imported)} run{'s' * (len(imported) != 1)} into {store.root}"
        + (f"; {len(skipped)} already here" if skipped else "")
    )


def _with_live_status(run_: Run) -> dict[str, Any]:
    return {**run_.summary, "status": run_.status}


def _key_values(title: str, values: dict[str, Any]) -> None:
    if values:
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
        )
        out.print(f"{title}: {shown}", highlight=False)
