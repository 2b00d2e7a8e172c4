"""vision/201/papers — the papers behind this level's labs, each beside a number of your own.

Every lab of vision 201 writes out an idea someone published: the residual block of He et al.,
the U-Net of Ronneberger et al., the low-rank adapters of Hu et al. Twenty of those papers sit on
this level's shelf (deepscape's papers.toml), each with its citation, its idea in one sentence, the
labs that implement it and the headline number the paper reports. This lab reads the shelf against
your run store: beside each paper's number it puts the best number your own runs of its lab
recorded (then the project's, from docs/benchmarks.md, where you have none yet), and counts the
papers your runs have measured.

The two numbers are rarely measured alike. ResNet's 91.25 % is CIFAR-10 after 64,000 steps on
GPUs; yours may be Fashion-MNIST after two epochs on a laptop. EDSR's 34.65 dB comes from 43
million parameters, the lab's from a hundred thousand. Reading a paper is finding its claim, the
evidence for it and the setup that evidence holds under — and the gap between its number and
yours is a question about that setup, never only about the code.

figures/timeline.png draws the shelf by year: filled where your runs measured a paper, hollow
where only the benchmarks did, grey where nothing has yet (diffusion, captioning and the
adversarial papers wait for their labs).

    deepscape papers --track vision --level 201      # the shelf, every paper's number beside ours
    deepscape show resnet                            # one paper: its idea, labs, how to measure it
    deepscape run vision/201/papers                  # count the papers your runs have measured
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from deepscape import figures, papers
from deepscape.config import option
from deepscape.runs import Run, RunStore

TRACK, LEVEL = "vision", 201
YOURS, BENCHMARKS, NONE = "#2ca02c", "#1f77b4", "#b0b0b0"


@dataclass
class Config:
    seed: int = option(0, "random seed (nothing here is random)")
    benchmarks: str | None = option(
        None, "the benchmarks file to read (default: docs/benchmarks.md)"
    )
    figures: bool = option(True, "draw the timeline")


def run(config: Config, run: Run) -> dict[str, Any]:
    # 1. The shelf, read against the store this run lives in and the project's benchmarks.
    shelf = papers.load().shelf(TRACK, LEVEL)
    benchmarks = Path(config.benchmarks) if config.benchmarks else papers.BENCHMARKS
    readings = papers.read(shelf, RunStore(run.dir.parent), benchmarks)
    run.update_summary(papers=[reading.as_json() for reading in readings])

    # 2. What your runs have measured, and what is left.
    if config.figures:
        timeline(run, readings)
    return {
        "papers": len(readings),
        "papers_with_your_number": sum(r.yours is not None for r in readings),
        "papers_with_a_number": sum(r.first is not None for r in readings),
    }


def timeline(run: Run, readings: list[papers.Reading]) -> Path:
    """The papers by year, one row each, marked by where their number beside ours comes from."""
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(readings) + 1.2))
    for row, reading in enumerate(readings):
        colour = YOURS if reading.yours else BENCHMARKS if reading.first else NONE
        filled = reading.yours is not None
        ax.plot(reading.paper.year, row, "o", ms=9, color=colour,
                markerfacecolor=colour if filled else "white", markeredgewidth=2)  # fmt: skip
        shown = reading.first.text if reading.first else papers.NOT_MEASURED
        label = f"{reading.paper.id} — paper {_number(reading.paper.result)} · ours {shown}"
        ink = "black" if reading.first else "dimgray"
        ax.annotate(label, (reading.paper.year, row), xytext=(10, 0), textcoords="offset points",
                    va="center", fontsize=8, color=ink)  # fmt: skip
    years = [r.paper.year for r in readings]
    ax.set_xlim(min(years) - 0.5, max(years) + 9)  # room for the last paper's label
    ax.set_xticks(range(min(years), max(years) + 1, 2))
    ax.set_ylim(len(readings) - 0.5, -0.5)
    ax.set_yticks([])
    ax.set_xlabel("year")
    for label, colour, face in [("your runs", YOURS, YOURS), ("docs/benchmarks.md", BENCHMARKS,
                                "white"), (papers.NOT_MEASURED, NONE, "white")]:  # fmt: skip
        ax.plot([], [], "o", color=colour, markerfacecolor=face, markeredgewidth=2, label=label)
    ax.legend(loc="upper right", fontsize=8, title="ours from")  # the years leave it empty
    mine = sum(r.yours is not None for r in readings)
    ax.set_title(f"vision 201's papers: your runs measured {mine} of {len(readings)}")
    return figures.save(fig, run.figure_path("timeline"))


def _number(result: papers.Result) -> str:
    return "no single number" if result.value is None else f"{result.value:,g} {result.unit}"
