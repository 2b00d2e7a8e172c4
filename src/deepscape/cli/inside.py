"""`deepscape inspect` and `deepscape serve`: look inside a trained vision run, and host it."""

from __future__ import annotations

from typing import Annotated

import typer

from deepscape.cli.common import AsJson, Home, app, err, one_line_errors, out, print_json
from deepscape.runs import Run, RunStore

RunId = Annotated[str, typer.Argument(metavar="RUN", help="a finished run (id or fragment)")]


@app.command()
def inspect(
    run_id: RunId,
    layer: Annotated[
        list[str] | None, typer.Option(help="layer whose feature maps to draw (repeatable)")
    ] = None,
    index: Annotated[int, typer.Option(help="test image for the feature maps")] = 0,
    images: Annotated[int, typer.Option(help="images per gradient-map figure")] = 6,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Draw a trained model's filters, feature maps and gradient maps into its run folder (for a
    sentence CNN: the phrases that make its filters fire)."""
    with one_line_errors():
        from deepscape import landscape
        from deepscape.inside import load_trained
        from deepscape.inside_figures import draw_inside

        run = RunStore(home).get(run_id)
        try:
            module = landscape.load().lab(run.summary["lab"]).module()
        except LookupError:
            module = None  # load_trained below says why such a run cannot be inspected
        if hasattr(module, "look_inside"):  # a lab that looks inside its models its own way
            return _looked_inside(run, module.look_inside(run), as_json)
        trained = load_trained(run)
        drawn = draw_inside(trained, run, layers=layer, index=index, count=images)
    if as_json:
        print_json({"run_id": run.id, "figures": {k: str(v) for k, v in drawn.items()}})
        return
    out.print(f"Inside run [cyan]{run.id}[/]:")
    for name, path in drawn.items():
        out.print(f"  {name}: {path}")


@app.command()
def serve(
    run_id: RunId,
    host: Annotated[str, typer.Option(help="address to bind; 0.0.0.0 opens it to the network")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int | None, typer.Option(help="port [default: the first free from 7860]")
    ] = None,
    share: Annotated[
        bool, typer.Option("--share", help="also make a public gradio.live link (72 h)")
    ] = False,
    home: Home = None,
) -> None:
    """Serve a trained vision run as a Gradio page: try it, see its failures, flag mistakes."""
    with one_line_errors():
        from deepscape.serve import build_app, launch

        page = build_app(RunStore(home).get(run_id))
    url = launch(page, host=host, port=port, share=share)
    out.print(f"Serving run [cyan]{run_id}[/] at [bold]{url}[/]  (Ctrl-C to stop)")
    if share:
        err.print("[yellow]note:[/] the public link lets anyone on the internet use this page")
    try:
        page.block_thread()
    except KeyboardInterrupt:
        page.close()


def _looked_inside(run: Run, found: dict, as_json: bool) -> None:
    """Report a text model's top phrases per filter, and the figure that shows them."""
    figure = found["inside_top_phrases"]
    if as_json:
        print_json({"run_id": run.id, "figures": {"top_phrases": str(figure)},
                    "top_phrases": found["phrases"]})  # fmt: skip
        return
    out.print(f"Inside run [cyan]{run.id}[/]: the phrases that make its filters fire")
    for item in found["phrases"]:
        phrases = ", ".join(f"{p!r} {v:.2f}" for p, v in list(item["phrases"].items())[:3])
        out.print(f"  → {item['class']:<12} {item['filter']:<12} {phrases}")
    out.print(f"  figure: {figure}")
