"""Benchmark of language/201/one-model; results go to docs/benchmarks.md.

    python benchmarks/language_201_one_model.py                      # all eight tasks
    python benchmarks/language_201_one_model.py n=4 shots=0,1 lora_steps=1 --no-write

`deepscape run language/201/one-model` with FULL (../shared/data for SST-2, TREC, AG News and
bAbI): SmolLM2-135M-Instruct (fp32, 2 threads) on each task zero-shot, 1-, 4- and 8-shot,
calibrated, then one LoRA per task against one LoRA on all of them, beside language/101's
task-specific models. Target: the shared LoRA's mean relative score ≥ 0.95.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from _report import as_typed, table, with_overrides, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "language/201/one-model"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FULL = [f"data_dir={SHARED}", "n=12", "lora_steps=6", "threads=2"]


def cell(value: float | None, metric: str) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.2f}" if metric == "ROUGE-L" else f"{value:.0%}"


def report(run: Run, items: list[str], wall: float) -> str:
    s, m = run.summary, run.summary["metrics"]
    rows_in = s["table"]
    methods = sorted({k for row in rows_in.values() for k in row}, key=_order)
    rows = [[task, s["tasks"][task]["metric"], s["tasks"][task]["test"],
             *(cell(row.get(k), s["tasks"][task]["metric"]) for k in methods)]
            for task, row in rows_in.items()]  # fmt: skip
    llm = s["llm"]
    lines = [
        f"`deepscape run {LAB} {' '.join(items)}`: {llm['name']} ({llm['precision']}, "
        f"{llm['threads']} threads), {wall / 60:.1f} minutes in all. Test items per task as "
        "listed (a few tens: ±10 points is noise); accuracy and exact match in %, ROUGE-L as a "
        "fraction. Calibrated: contextual calibration (Zhao et al. 2021). LoRAs: rank "
        f"{run.config['lora_rank']} on every projection, {run.config['lora_steps']} steps of "
        f"{run.config['batch_size']} per task, the shared one that many times the tasks; asked "
        "zero-shot. 101 specialist: language/101's model on the full test set, read from this "
        "file.",
        "",
        table(["task", "metric", "items", *methods], rows),
        "",
    ]
    costs = s.get("lora", {}).get("costs", {})
    lora_rows = [[what, c["steps"], f"{c['seconds']:.0f} s", f"{c['tokens_per_s']:.0f}",
                  f"{c['final_loss']:.2f}"] for what, c in costs.items()]  # fmt: skip
    lines += [table(["LoRA trained on", "steps", "training", "tokens/s", "last loss"], lora_rows)]
    prompt_s = ", ".join(f"{t} {v:.0f} s" for t, v in s["prompting_seconds"].items())
    lines += ["", f"Prompting time per task (every shot setting): {prompt_s}.", ""]
    if (relative := m.get("mean_relative_score")) is not None:
        verdict = "✓" if relative >= 0.95 else "✗"
        lines.append(f"- shared LoRA / per-task LoRAs, mean over tasks: **{relative:.2f}** "
                     f"(target ≥ 0.95) {verdict}")  # fmt: skip
        lines.append(f"- best prompting rung (chosen on test: an upper bound) / per-task LoRA, "
                     f"mean: {m['prompting_relative_to_lora']:.2f}")  # fmt: skip
    if "prompting_relative_to_101" in m:
        lines.append(f"- best prompting rung / language/101's specialist (SST-2, TREC): "
                     f"{m['prompting_relative_to_101']:.2f}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _order(method: str) -> tuple[int, int, bool]:
    from deepscape.labs.language.l201_one_model_figures import column_order

    return column_order(method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("overrides", nargs="*", help="key=value options after FULL's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        items = with_overrides(FULL, args.overrides)
        started = time.perf_counter()
        run = run_lab(LAB, items, store=RunStore(Path(home)), show_progress=False)
        wall = time.perf_counter() - started
        body = report(run, items, wall)
    if args.no_write:
        print(as_typed(body))
    else:
        write_section("language_201_one_model", f"{LAB}: one model, eight tasks", body)


if __name__ == "__main__":
    main()
