"""Benchmark of language/301/hallucinations; results go to docs/benchmarks.md.

    python benchmarks/language_301_hallucinations.py               # seeds 1–4, two at a time
    python benchmarks/language_301_hallucinations.py --seeds 4 --jobs 1 --no-write

`deepscape run language/301/hallucinations seed=S` for each seed: every system's hallucination
rate (unanswerable test questions answered), coverage (answerable ones answered) and accuracy
(right, of those answered), the system chosen on the calibration split and the ratio of its test
rate to the plain model's (target ≤ 0.5 at ≥ 80 % coverage). Seed 0 is left out by default: the
lab's design was settled looking at its test split, so only other seeds are held out (and seeds
1–3 were seen before the last change of design: seed 4 is the one never looked at). Each run has
one thread; `--jobs` runs that many seeds at once (2 on 2 cores).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.runs import RunStore

LAB = "language/301/hallucinations"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("--home", help="keep the runs in this folder (default: a scratch one)")
    parser.add_argument("--seeds", default="1,2,3,4", help="the seeds, comma-separated")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run at once, one thread each")
    parser.add_argument("overrides", nargs="*", help="key=value options of the lab's run")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp())
    items = ["threads=1", *args.overrides]
    load_before = os.getloadavg()[0]
    rows, ratios, lines = [], [], []
    seeds = [int(s) for s in args.seeds.split(",")]
    # spawned, not forked: each process starts its own PyTorch
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max(1, args.jobs), mp_context=context) as pool:
        summaries = list(pool.map(partial(one_seed, str(home), items), seeds))
    for seed, summary in zip(seeds, summaries, strict=True):
        for system, s in summary["test"].items():
            rows.append([seed, system + (" (chosen)" if system == summary["chosen"] else ""),
                         f"{s['hallucination_rate']:.0%}", f"{s['coverage']:.0%}",
                         f"{s['accuracy']:.0%}"])  # fmt: skip
        ratio = summary["metrics"]["hallucination_rate_ratio"]
        ratios.append(ratio)
        lines.append(f"- seed {seed}: chosen {summary['chosen']}, ratio {ratio:.2f} "
                     f"({summary['wall_seconds']:.0f} s)")  # fmt: skip
    headers = ["seed", "system", "hallucination rate", "coverage", "accuracy of answered"]
    body = "\n".join([
        f"`deepscape run {LAB} {' '.join(items)} seed=S` (30 answerable and 30 unanswerable test "
        "questions, as many for calibration):", "", table(headers, rows), "", *lines,
        f"- median ratio {statistics.median(ratios):.2f} (target ≤ 0.5 "
        f"{'✓' if statistics.median(ratios) <= 0.5 else '✗'}).",
        f"- {len(seeds)} seeds, {min(args.jobs, len(seeds))} at a time (one thread each); load "
        f"average (1 min) before and after: {load_before:.1f}, "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.", ""])  # fmt: skip
    if args.no_write:
        print(body)
    else:
        title = "language/301/hallucinations: rate and coverage on held-out seeds"
        write_section("language-301-hallucinations", title, body)


def one_seed(home: str, items: list[str], seed: int) -> dict[str, Any]:
    run = run_lab(LAB, [*items, f"seed={seed}"], store=RunStore(Path(home)), show_progress=False)
    return run.summary


if __name__ == "__main__":
    main()
