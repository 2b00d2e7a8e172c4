"""`deepscape generate RUN "prompt"`: a trained language model continues a text."""

from __future__ import annotations

from typing import Annotated

import typer

from deepscape.cli.common import AsJson, Home, app, one_line_errors, out, print_json
from deepscape.runs import RunStore


@app.command()
def generate(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="a finished language-model run")],
    prompt: Annotated[str, typer.Argument(help="the text to continue")],
    tokens: Annotated[int, typer.Option(help="new tokens to write")] = 300,
    temperature: Annotated[
        float, typer.Option(help="< 1 sharper, > 1 wilder; 0 takes the likeliest token")
    ] = 0.8,
    top_k: Annotated[int, typer.Option(help="draw from the k likeliest tokens (0: all)")] = 0,
    top_p: Annotated[
        float, typer.Option(help="draw from the fewest tokens whose probabilities sum to p")
    ] = 1.0,
    seed: Annotated[int | None, typer.Option(help="the same seed draws the same text")] = None,
    home: Home = None,
    as_json: AsJson = False,
) -> None:
    """Continue PROMPT with a trained language model (e.g. a language/201/transformers run)."""
    with one_line_errors():
        from deepscape.inside import InspectError, language_model_of

        run = RunStore(home).get(run_id)
        model = language_model_of(run)
        if model is None:
            raise InspectError(
                f"run {run.id} is a run of {run.summary['lab']}, which trains no language model: "
                "pick a run of language/201/transformers (`deepscape runs`)"
            )
        if tokens < 1 or temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
            raise InspectError("give tokens ≥ 1, temperature ≥ 0, top-k ≥ 0 and 0 < top-p ≤ 1")
        text = model.complete(
            prompt,
            max_new_tokens=tokens,
            temperature=temperature,
            top_k=top_k or None,
            top_p=top_p if top_p < 1 else None,
            seed=seed,
        )
    if as_json:
        print_json({"run_id": run.id, "prompt": prompt, "text": text})
    else:
        out.print(text, highlight=False, markup=False)
