"""vision/101/host — put the model behind a page anyone can try, with its failure cases.

The lesson serves the digits CNN as a Gradio page (`deepscape serve RUN`, or
`deepscape.serve.build_app(run)`): people draw or upload a digit and see the top classes with a
Grad-CAM map of the answer, browse the model's mistakes and its confusion matrix, and flag wrong
answers with the right label (RUN/flagged/: a PNG and a JSON with label, prediction and time).

Two measurements follow. The page must feed the model images like the ones it learnt from: a
drawing is inverted, cropped to its ink, padded square and shrunk to 8×8 like the training
digits, and sending the test images through the page as PNGs checks it (`app_test_accuracy`
against the model's own). And serving has a cost: latency p50 and p95 through the HTTP API as a
client in another process sees it, for `/classify` (a PNG in, the probabilities out) and for the
page's own `/predict`, which also returns the two pictures and the gradient map.

    deepscape run vision/101/host                   # trains a digits CNN, serves it, measures
    deepscape run vision/101/host reuse=RUN_ID      # the same for a finished digits run
    deepscape serve RUN_ID                          # the page itself, at http://127.0.0.1:7860
"""

from __future__ import annotations

import io
import statistics
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from deepscape import figures
from deepscape.api_timing import timed_from_another_process
from deepscape.config import ConfigError, option
from deepscape.inside import load_trained
from deepscape.labs.vision import l101_digits
from deepscape.runs import Run, RunStore
from deepscape.serve import BadImage, Predictor, as_png, build_app, launch
from deepscape.sweep import stage

DIGITS = "vision/101/digits"


@dataclass
class Config:
    seed: int = option(0, "seed of the lab itself (the digits run it trains is seeded 0)")
    reuse: str | None = option(None, "a finished digits run to serve (default: train one)")
    requests: int = option(200, "API requests timed")
    round_trip_images: int = option(360, "test images sent through the page's preprocessing")


def run(config: Config, run: Run) -> dict[str, Any]:
    # 1. A trained model to serve: a finished digits run, or one trained now.
    if config.reuse:
        served = RunStore(run.dir.parent).get(config.reuse)
        if served.summary["lab"] != DIGITS:
            raise ConfigError(
                f"reuse={config.reuse} is a {served.summary['lab']} run: pick a digits run"
            )
    else:
        (served,) = stage(run, "model", DIGITS, l101_digits.Config, [])
    run.update_summary(served_run=served.id)

    # 2. Same preprocessing as in training? Send test images through it as people would: PNGs,
    #    dark ink on white, enlarged.
    trained = load_trained(served)
    predictor = Predictor(trained)
    test = trained.data.test
    count = min(config.round_trip_images, len(test))
    hits = 0
    for image, target in zip(test.inputs[:count], test.targets[:count], strict=True):
        sent = Image.open(io.BytesIO(as_png(image)))
        try:
            _, probabilities, _ = predictor.predict(sent)
        except BadImage:
            continue
        hits += max(probabilities, key=probabilities.__getitem__) == trained.classes[int(target)]
    model_accuracy = served.summary["metrics"]["test_accuracy"]

    # 3. Latency through the HTTP API, as a client sees it (upload, call, read the answer).
    app = build_app(served, trained=trained)
    url = launch(app)
    try:
        png = as_png(test.inputs[0])
        timed = {
            endpoint: timed_from_another_process(
                url, png, requests=config.requests, endpoint=endpoint, folder=run.dir
            )
            for endpoint in ("classify", "predict")
        }
    finally:
        app.close()
    # Milliseconds, without the first few requests, which warm the server up.
    classify, page = ([1000 * s for s in timed[e][5:]] for e in ("classify", "predict"))
    p50, p95 = statistics.median(classify), float(np.percentile(classify, 95))
    latency_figure(classify, page, run)
    return {
        "api_latency_p50_ms": p50,
        "api_latency_p95_ms": p95,
        "page_latency_p50_ms": statistics.median(page),
        "page_latency_p95_ms": float(np.percentile(page, 95)),
        "app_test_accuracy": hits / count,
        "model_test_accuracy": model_accuracy,
    }


def latency_figure(classify: list[float], page: list[float], run: Run) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bins = np.linspace(0, np.percentile(page, 99) * 1.1, 50)
    for values, name, colour in (
        (classify, "/classify: probabilities only", figures.TRAIN),
        (page, "/predict: + the two pictures and the gradient map", figures.VAL),
    ):
        p50, p95 = statistics.median(values), np.percentile(values, 95)
        ax.hist(
            values,
            bins=bins,
            color=colour,
            alpha=0.6,
            label=f"{name} (p50 {p50:.1f} ms, p95 {p95:.1f} ms)",
        )
        ax.axvline(p50, color=colour, lw=1.5)
    ax.axvline(30, color=figures.WRONG, ls=":", label="target: p50 ≤ 30 ms (/classify)")
    ax.set(
        xlabel="milliseconds per request (upload the PNG, call, read the answer)",
        ylabel="requests",
        title=f"Latency through the app's HTTP API, {len(classify)} requests each, "
        "client in another process",
    )
    ax.legend(fontsize=8)
    figures.save(fig, run.figure_path("api_latency"))
