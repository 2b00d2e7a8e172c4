"""What every command module of the CLI shares: the Typer app, the consoles, the option types,
the one-line errors, JSON output and the runs table.

Command modules import this module and nothing else of the CLI, so the package has no cycles.
It imports nothing heavy: `deepscape --help` and `deepscape map` must answer at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from deepscape import exit_quickly, landscape, papers
from deepscape.config import ConfigError
from deepscape.runs import RunNotFound

app = typer.Typer(
    help="deepscape — the deep learning landscape, made runnable. Start with `deepscape map`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _every_command() -> None:
    exit_quickly()


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Home = Annotated[
    Path | None,
    typer.Option("--home", envvar="DEEPSCAPE_HOME", help="run store folder [default: ./runs]"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON for tools instead of tables")]
WandbFlag = Annotated[
    bool, typer.Option("--wandb", help="also log to Weights & Biases (offline without a login)")
]


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (
        landscape.UnknownLab,
        landscape.LabNotAvailable,
        papers.UnknownPaper,
        ConfigError,
        RunNotFound,
    )
    # Only code that imported deepscape.data can raise its DataUnavailable; importing it here
    # just to name the class would cost every other one-line error a second of torch.
    data = sys.modules.get("deepscape.data")
    return (*errors, data.DataUnavailable) if data else errors


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Known mistakes become one red line and exit code 2, not a traceback."""
    try:
        yield
    except _bad_input_errors() as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(2) from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def runs_table(summaries: list[dict[str, Any]], metric: str | None, *, title: str) -> None:
    """Runs as a table narrow enough for 80 columns: the lab column only when labs differ, and
    each run's target metric under its own name when all runs share it."""
    labs = {s["lab"] for s in summaries}
    metrics = {metric or (s.get("target") or {}).get("metric") for s in summaries}
    header = metrics.pop() if len(metrics) == 1 else "target metric"
    columns = [
        Column("run", no_wrap=True),
        *(["lab"] if len(labs) > 1 else []),
        "status",
        Column(header, justify="right"),
        "✓",
        Column("time", justify="right"),
    ]
    table = Table(*columns, title=title, title_justify="left")
    for s in summaries:
        target = s.get("target") or {}
        value = (s.get("metrics") or {}).get(metric or target.get("metric"))
        reached = {True: "[green]✓[/]", False: "[yellow]✗[/]"}.get(target.get("reached"), "")
        seconds = s.get("wall_seconds")
        table.add_row(
            s["id"],
            *([s["lab"]] if len(labs) > 1 else []),
            s["status"],
            f"{value:.4g}" if value is not None else "",
            reached,
            f"{seconds:.0f}s" if seconds is not None else "",
        )
    out.print(table)
