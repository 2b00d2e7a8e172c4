"""Benchmark: prediction latency through the Gradio app's HTTP API. Results go to
docs/benchmarks.md.

    python benchmarks/serve_latency.py [REQUESTS]

Serves a digits CNN (trained here, 40 epochs, seed 0) with `deepscape.serve`, then a client in
another process (`python -m deepscape.api_timing`) sends one test digit as a 280×280 PNG, as a
person would, REQUESTS times (default 200) to each endpoint: upload, call, read the answer.
- `/classify`: the probabilities only (the API for programs; the goal: p50 ≤ 30 ms)
- `/predict`: what the page's button calls — also the model's view and the gradient map, as images
- a no-op endpoint on the same server: Gradio's own floor (upload + call + answer, no work)
The first 5 requests of each warm the server up and are left out.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
from _report import table, write_section

from deepscape.api_timing import timed_from_another_process
from deepscape.lab import run_lab
from deepscape.runs import RunStore
from deepscape.serve import as_png, build_app, launch


def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(folder)
        run = run_lab("vision/101/digits", [], store=store, show_progress=False)
        app = build_app(run)
        with app:  # Gradio's floor, on the same server: an endpoint that does nothing
            noop_in, noop_out, noop_button = (
                gr.File(visible=False),
                gr.Label(visible=False),
                gr.Button(visible=False),
            )
            noop_button.click(lambda path: {"0": 1.0}, noop_in, noop_out, api_name="noop")
        url = launch(app)
        from deepscape.inside import load_trained

        png = as_png(load_trained(run).data.test.inputs[0])
        try:
            timed = {
                endpoint: [
                    1000 * s
                    for s in timed_from_another_process(
                        url, png, requests=requests + 5, endpoint=endpoint, folder=Path(folder)
                    )[5:]
                ]
                for endpoint in ("classify", "predict", "noop")
            }
        finally:
            app.close()
    rows = []
    for endpoint, what in (
        ("classify", "probabilities only"),
        ("predict", "+ model's view, gradient map (2 images)"),
        ("noop", "Gradio floor: no work"),
    ):
        values = timed[endpoint]
        p50, p95 = statistics.median(values), float(np.percentile(values, 95))
        goal = ("✓" if p50 <= 30 else "✗") + " ≤ 30 ms" if endpoint == "classify" else ""
        rows.append([f"`/{endpoint}`", what, f"{p50:.1f}", f"{p95:.1f}", goal])
    body = (
        f"{requests} requests per endpoint, each: upload a 280×280 PNG of a test digit, call, read "
        "the answer (one kept-alive HTTP connection, client in its own process).\n\n"
        + table(["endpoint", "returns", "p50 ms", "p95 ms", "goal (p50)"], rows)
    )
    write_section(
        "serve_latency", "vision/101/host: prediction latency through the app's API", body
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
