"""Benchmark of language/301/multi-llm; results go to docs/benchmarks.md.

    python benchmarks/language_301_multi_llm.py                # the lab's defaults
    python benchmarks/language_301_multi_llm.py n=5 steps=4 samples=3 --no-write

`deepscape run language/301/multi-llm` (40 sums and 40 capitals; a generalist LoRA, a routed
specialist per kind, a vote over 8 samples, a judge and a reranker): each method's accuracy,
tokens read and generated and seconds per question, its gain over the generalist and the gain
per extra cost, with the two ceilings (oracle routing, a right answer among the samples).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.runs import RunStore

LAB = "language/301/multi-llm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("--home", help="keep the runs in this folder (default: a scratch one)")
    parser.add_argument("overrides", nargs="*", help="key=value options of the lab's run")
    args = parser.parse_args()
    items = ["threads=1", *args.overrides]
    load_before = os.getloadavg()[0]
    run = run_lab(LAB, items, store=RunStore(Path(args.home or tempfile.mkdtemp())),
                  show_progress=False)  # fmt: skip
    summary, metrics = run.summary, run.summary["metrics"]
    gains = summary["gain_per_cost"]
    rows = []
    for method, by_kind in summary["accuracy_by_kind"].items():
        key = method.replace(" ", "_")
        gain = gains.get(method, {})
        # under a token more a question (routing's word counts), points per token mean nothing
        per_100 = (gain.get("points_per_100_extra_tokens")
                   if gain.get("extra_tokens_per_question", 0) >= 1 else None)  # fmt: skip
        rows.append([
            method, f"{sum(by_kind.values()) / len(by_kind):.1%}",
            " · ".join(f"{k} {v:.0%}" for k, v in by_kind.items()),
            f"{metrics[f'{key}_tokens']:.0f}" if f"{key}_tokens" in metrics else "–",
            f"{metrics[f'{key}_seconds']:.2f}" if f"{key}_seconds" in metrics else "–",
            f"{gain['gain_points']:+.1f}" if gain else "–",
            f"{per_100:+.2f}" if per_100 is not None else "–",
        ])  # fmt: skip
    headers = ["method", "accuracy", "by kind", "tokens a question", "seconds a question",
               "gain (points)", "points per 100 extra tokens"]  # fmt: skip
    body = "\n".join([
        f"`deepscape run {LAB} {' '.join(items)}`: {summary['wall_seconds']:.0f} s in all "
        "(\"oracle routing\" and \"any sample right\" are ceilings, not methods):", "",
        table(headers, rows), "",
        f"- router: {metrics.get('router_accuracy', float('nan')):.0%} of questions sent to "
        "their own kind's specialist.",
        f"- a right answer among the samples: {metrics['oracle_pick_gain']:+.1%} over the "
        f"generalist's greedy answer (target ≥ +8 points "
        f"{'✓' if metrics['oracle_pick_gain'] >= 0.08 else '✗'}).",
        f"- load average (1 min) before and after: {load_before:.1f}, "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.", ""])  # fmt: skip
    if args.no_write:
        print(body)
    else:
        title = "language/301/multi-llm: methods, their accuracy and their cost"
        write_section("language-301-multi-llm", title, body)


if __name__ == "__main__":
    main()
