"""`deepscape map`, `show`, `papers` and `run`: the landscape, one lab's or paper's card, the
essential papers, and running a lab."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from deepscape import distributed, landscape, papers
from deepscape.cli.common import (
    AsJson,
    Home,
    WandbFlag,
    app,
    err,
    one_line_errors,
    out,
    print_json,
    runs_table,
)
from deepscape.config import TrainConfig, apply_overrides, describe, format_value
from deepscape.lab_config import config_class, module_constants
from deepscape.runs import Run, RunStore

MARKS = {
    landscape.REACHED: "[green]✓ reached[/]",
    landscape.BELOW: "[yellow]✗ below target[/]",
    landscape.NOT_RUN: "[dim]· not run[/]",
}


# -- the map --------------------------------------------------------------------------------------
@app.command("map")
def show_map(home: Home = None, as_json: AsJson = False) -> None:
    """The landscape: tracks × levels × labs, with your progress and the suggested next lab."""
    the_map = landscape.load()
    done = landscape.progress(the_map, RunStore(home))
    suggestion = landscape.suggest_next(the_map, done)
    if as_json:
        print_json(
            {
                "tracks": the_map.tracks,
                "levels": [vars(level) for level in the_map.levels],
                "labs": [
                    {
                        "id": lab.id,
                        "track": lab.track,
                        "level": lab.level,
                        "title": lab.title,
                        "status": lab.status,
                        "target": str(lab.target),
                        "progress": vars(done[lab.id]),
                    }
                    for lab in the_map.labs
                ],
                "next": suggestion.id if suggestion else None,
            }
        )
        return
    for track, info in the_map.tracks.items():
        table = Table(
            title=f"[bold]{info['title']}[/] — {info['summary']}",
            title_justify="left",
            expand=True,
            show_lines=False,
        )
        for column in ("level", "lab", "title", "status", "your progress"):
            table.add_column(column)
        for level in (lv for lv in the_map.levels if lv.track == track):
            labs = the_map.labs_of(track, level.level)
            table.add_section()
            if not labs:
                table.add_row(str(level.level), "—", f"[dim]{level.summary}[/]", "[dim]open[/]", "")
            for i, lab in enumerate(labs):
                status = "[bold green]available[/]" if lab.available else "[dim]planned[/]"
                table.add_row(
                    str(level.level) if i == 0 else "",
                    lab.slug,
                    lab.title,
                    status,
                    _progress_text(done[lab.id], lab) if lab.available else "",
                )
        out.print(table)
    if suggestion:
        out.print(
            f"\n[bold]Next:[/] {suggestion.id} — {suggestion.title}: "
            f"[cyan]deepscape run {suggestion.id}[/]  (details: deepscape show {suggestion.slug})"
        )
    else:
        out.print("\n[bold]Next:[/] every available lab is reached — more are planned.")


def _progress_text(progress: landscape.LabProgress, lab: landscape.Lab) -> str:
    text = MARKS[progress.state]
    if progress.best is not None:
        runs = f"{progress.runs} run{'s' * (progress.runs != 1)}"
        text += f" (best {lab.target.metric} {progress.best:.4g}, {runs})"
    elif progress.runs:
        text += f" ({progress.runs} run{'s' * (progress.runs != 1)}, none finished)"
    return text


# -- one lab's card -------------------------------------------------------------------------------
# what batch_size and lr mean under a launcher: deepscape.distributed.data_parallel applies it
DATA_PARALLEL = (
    "batch_size is per process, so a step learns from N × batch_size examples, and lr is "
    "multiplied by N (the linear scaling rule); a resume keeps the N the run started with. "
    "shard=true splits weights, gradients and optimizer state across the N (FSDP). "
    "See docs/distributed.md."
)
# labs whose training is deepscape.tuning.train (they say GLOBAL_BATCH = True)
GLOBAL_BATCH = (
    "batch_size is the global batch: each process reads 1/N of every batch and the gradients "
    "are summed, so N processes take the steps one process takes, at the same lr; the measuring "
    "is repeated on each. See docs/distributed.md."
)


def data_parallel(lab: landscape.Lab) -> str | None:
    """What the lab does under N processes, for its card (None: it does not train)."""
    if not lab.available:
        return None
    declared = module_constants(lab, "ONE_PROCESS", "GLOBAL_BATCH")
    if declared.get("ONE_PROCESS"):
        return f"refused: {declared['ONE_PROCESS']}; run it without torchrun or accelerate launch."
    if declared.get("GLOBAL_BATCH"):
        return GLOBAL_BATCH
    return DATA_PARALLEL if issubclass(config_class(lab), TrainConfig) else None


@app.command()
def show(
    lab_name: Annotated[str, typer.Argument(metavar="LAB|PAPER")],
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """A lab's card: goal, new concepts, scope, prerequisites, target, options, your last runs.
    Or a paper's (`deepscape papers` lists them): its idea, labs, and its number beside ours."""
    with one_line_errors():
        the_map = landscape.load()
        found = papers.lab_or_paper(lab_name, the_map)
        store = RunStore(home)
        if isinstance(found, papers.Paper):
            _paper_card(papers.read([found], store)[0], the_map, as_json)
            return
        lab = found
        done = landscape.progress(the_map, store)
        options = describe(config_class(lab)) if lab.available else []
        parallel = data_parallel(lab)
        recent = [r.summary for r in store.list(lab.id)][-5:]
    if as_json:
        print_json(
            {
                **{k: v for k, v in vars(lab).items() if k != "target"},
                "target": vars(lab.target),
                "prerequisites_reached": {
                    p: done[p].state == landscape.REACHED for p in lab.prerequisites
                },
                "options": options,
                "data_parallel": parallel,
                "progress": vars(done[lab.id]),
                "recent_runs": recent,
            }
        )
        return
    out.print(f"[bold]{lab.title}[/]  [dim]{lab.id} · {lab.status}[/]\n{lab.goal}\n")
    out.print(f"[bold]Topics:[/] {'; '.join(lab.topics)}")
    _bullets("New concepts", lab.concepts)
    _bullets("In scope", lab.scope_in)
    _bullets("Out of scope", lab.scope_out)
    if lab.prerequisites:
        _bullets(
            "Prerequisites",
            [
                f"{p}  {MARKS[done[p].state] if done[p].state == landscape.REACHED else 'not yet'}"
                for p in lab.prerequisites
            ],
        )
    out.print(f"\n[bold]Target:[/] {lab.target}\n  {lab.target.description}")
    if options:
        table = Table(
            Column("option", no_wrap=True),
            Column("type", overflow="fold"),  # fold long choice lists instead of cutting them
            "default",
            "help",
            title="Options (key=value)",
            title_justify="left",
        )
        for o in options:
            default = o["default"]  # a tuple as it is typed, [0.9,0.999], not (0.9, 0.999)
            shown = format_value(default) if isinstance(default, tuple) else repr(default)
            table.add_row(o["name"], o["type"], shown, o["help"])
        out.print(table)
    if parallel:
        out.print(f"[bold]On N processes[/] (accelerate launch, torchrun): {parallel}")
    if recent:
        runs_table(recent, lab.target.metric, title="Your last runs")
    elif lab.available:
        out.print(f"\nNot run yet: [cyan]deepscape run {lab.id}[/]")


# -- the essential papers -----------------------------------------------------------------------
@app.command("papers")
def list_papers(
    track: Annotated[str | None, typer.Option(help="vision or language")] = None,
    level: Annotated[int | None, typer.Option(help="101, 201 or 301")] = None,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """The essential papers of each track and level, each paper's number beside ours."""
    with one_line_errors():
        shelf = papers.load().shelf(track, level)
    readings = papers.read(shelf, RunStore(home))
    if as_json:
        print_json([reading.as_json() for reading in readings])
        return
    if not readings:
        out.print(f"No papers listed for {track or 'any track'} {level or ''} yet.")
        return
    shelves: dict[tuple[str, int], list[papers.Reading]] = {}
    for reading in readings:
        shelves.setdefault((reading.paper.track, reading.paper.level), []).append(reading)
    for (shelf_track, shelf_level), on_shelf in shelves.items():
        # ratios, not natural widths: the numbers and labs wrap, the ids stay whole in 80 columns
        table = Table(
            Column("paper", ratio=2, min_width=14),
            Column("the paper's number", ratio=3),
            Column("ours", ratio=3),
            Column("lab", min_width=20, overflow="fold"),
            expand=True,
            title=f"[bold]{shelf_track} {shelf_level}[/] — essential papers",
            title_justify="left",
            show_lines=True,
        )
        for reading in on_shelf:
            paper = reading.paper
            if reading.beside:
                ref, measured = reading.beside
                mine = "your runs" if isinstance(ref, papers.FromRuns) else "benchmarks.md"
                ours = f"{escape(measured.text)} [dim]({mine})\n{escape(ref.what)}[/]"
            else:
                ours = f"[dim]{papers.NOT_MEASURED}[/]"
            table.add_row(
                f"[bold]{paper.id}[/]\n{paper.short_authors} {paper.year}",
                escape(str(paper.result)),
                ours,
                "\n".join(lab.removeprefix(f"{shelf_track}/") for lab in paper.labs),
            )
        out.print(table)
    out.print("One paper, its idea and how to measure it: [cyan]deepscape show PAPER[/]")


def _paper_card(reading: papers.Reading, the_map: landscape.Landscape, as_json: bool) -> None:
    paper = reading.paper
    if as_json:
        print_json(reading.as_json())
        return
    out.print(f"[bold]{paper.title}[/]  [dim]{paper.id} · {paper.track} {paper.level}[/]")
    out.print(f"{paper.authors} ({paper.year}). {paper.venue}.", highlight=False)
    if paper.link:
        out.print(paper.link, highlight=False)
    out.print(f"\n[bold]Idea:[/] {paper.idea}", highlight=False)
    _bullets("Labs", [f"{lab}  ({the_map.lab(lab).status})" for lab in paper.labs])
    out.print(f"\n[bold]The paper:[/] {paper.result}", highlight=False)
    out.print("\n[bold]Ours:[/]")
    for ref, measured in reading.ours:
        shown = escape(measured.text) if measured else f"[dim]{papers.NOT_MEASURED}[/]"
        where = measured.source if measured else ref.describe()
        out.print(f"  • {shown} — {escape(ref.what)}\n    [dim]{escape(where)}[/]")
    if not reading.ours:
        planned = all(not the_map.lab(lab).available for lab in paper.labs)
        why = "its lab is planned" if planned else "no number of ours is referenced yet"
        out.print(f"  • [dim]{papers.NOT_MEASURED}: {why}[/]")


def _bullets(title: str, items: tuple[str, ...] | list[str]) -> None:
    out.print(f"\n[bold]{title}:[/]")
    for item in items:
        out.print(f"  • {item}", highlight=False)


# -- running a lab --------------------------------------------------------------------------------
@app.command(context_settings={"help_option_names": ["-h", "--help"]})
def run(
    lab_name: Annotated[str, typer.Argument(metavar="LAB", help="lab id or its unique slug")],
    overrides: Annotated[
        list[str] | None, typer.Argument(metavar="[KEY=VALUE]...", help="config overrides")
    ] = None,
    resume: Annotated[str | None, typer.Option(help="continue an interrupted run (its id)")] = None,
    wandb: WandbFlag = False,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Run a lab: train, evaluate, draw, record. `deepscape show LAB` lists its options."""
    with one_line_errors():  # a mistake in the command answers at once, before torch loads
        lab = landscape.load().lab(lab_name)
        if not resume:  # a resumed run keeps its config; run_lab says so
            apply_overrides(config_class(lab)(), overrides or [])
    from deepscape.lab import run_lab
    from deepscape.train import CorruptCheckpoint, TrainingDiverged

    store = RunStore(home)
    created: list[Run] = []
    # Ctrl-C (SIGINT) always interrupts a run, marked and resumable: a shell script that starts
    # `deepscape run … &` hands it SIGINT ignored, and Python keeps an ignored SIGINT ignored
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with one_line_errors():
            the_run = run_lab(
                lab_name,
                overrides or [],
                store=store,
                resume=resume,
                notify=lambda message: err.print(f"[yellow]{message}[/]"),
                on_start=created.append,
                wandb=wandb,
            )
    except KeyboardInterrupt:
        run_ = created[0] if created else None
        if run_ is not None and distributed.is_main():  # one report, from the run's owner
            _report(run_, as_json)
            err.print(f"[yellow]interrupted[/] — resume with: {run_.summary.get('resume_with')}")
        raise typer.Exit(130) from None
    except (TrainingDiverged, CorruptCheckpoint) as error:  # expected failures: one line
        if distributed.is_main():
            _report(created[0], as_json)
        err.print(f"[red]error:[/] {error}", highlight=False)
        raise typer.Exit(1) from None
    if distributed.is_main():  # under a launcher the other processes recorded nothing
        _report(the_run, as_json)


def _report(run_: Run, as_json: bool) -> None:
    summary = run_.summary
    target = summary.get("target") or {}
    if as_json:
        print_json(
            {
                "run_id": run_.id,
                "run_dir": str(run_.dir),
                "status": summary["status"],
                "metrics": summary.get("metrics", {}),
                "target_reached": target.get("reached"),
                "wall_seconds": summary.get("wall_seconds"),
            }
        )
        return
    if summary["status"] != "finished":
        err.print(f"run {run_.id}: [bold]{summary['status']}[/]  ({run_.dir})")
        return
    metric = target.get("metric")
    value = summary["metrics"].get(metric)
    if value is None:
        verdict = (
            f"{metric} not measured by this run (the target is {metric} on {target['dataset']})"
        )
    elif target.get("reached") is None:
        verdict = f"{metric} = {value:.4g}  (no target on {target.get('dataset')})"
    else:
        verdict = f"{metric} = {value:.4g}  (target {target.get('op')} {target.get('value')}) " + (
            "[green]✓ target reached[/]" if target["reached"] else "[yellow]✗ below target[/]"
        )
    out.print(
        f"\n[bold]{summary['lab']}[/] finished in {summary['wall_seconds']:.1f} s — {verdict}"
    )
    for key, number in summary["metrics"].items():
        if key != metric:
            out.print(
                f"  {key} = {number:.4g}" if isinstance(number, float) else f"  {key} = {number}"
            )
    out.print(f"run [cyan]{run_.id}[/] in {run_.dir}")
    for figure in run_.figures():
        out.print(f"  figure: {figure}")
