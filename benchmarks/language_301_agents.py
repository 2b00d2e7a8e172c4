"""Benchmark of language/301/agents; results go to docs/benchmarks.md.

    python benchmarks/language_301_agents.py tools     # the lab's defaults: five kinds with tools
    python benchmarks/language_301_agents.py babi      # bAbI task 1 (../shared/data/babi-qa1)
    python benchmarks/language_301_agents.py tools tasks=10 train_seconds=60 --no-write

tools: `deepscape run language/301/agents` with its defaults (SmolLM2-135M-Instruct alone,
prompted with solved episodes, and LoRA-tuned on the lab's own traces; 30 held-out tasks, 6 of
each kind): the share solved per method and per kind, the steps, why the others failed, and the
time of each method's episodes. Target: the LoRA agent solves ≥ 3× what the model alone does.

babi: the same three methods on bAbI's single-supporting-fact questions (the real qa1 files),
a task that needs no tool: does a tool-using agent still answer from the story?

One thread; the seconds depend on the machine's load, the successes do not.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _report import REPO, table, with_overrides, write_section

from deepscape.lab import run_lab
from deepscape.runs import RunStore

LAB = "language/301/agents"
BABI = REPO.parent / "shared" / "data"
FAILURES = ("format error", "wrong tool", "wrong argument", "loop", "wrong answer")


def report(run, command: str, *, target: bool) -> str:
    summary, metrics = run.summary, run.summary["metrics"]
    methods = summary["methods"]
    kinds = sorted({k for m in methods.values() for k in m["by_kind"]})
    headers = ["method", "solved", *kinds, "steps", *FAILURES, "episodes' seconds"]
    rows = []
    for name, table_row in methods.items():
        n = table_row["episodes"]
        rows.append([
            name, f"{table_row['solved']}/{n} ({table_row['solved'] / n:.0%})",
            *(f"{table_row['by_kind'].get(k, 0):.0%}" for k in kinds),
            f"{metrics[f'{name}_steps']:.1f}" if f"{name}_steps" in metrics else "–",
            *(table_row["failures"].get(f, 0) for f in FAILURES),
            f"{summary['episode_seconds'][name]:.0f}",
        ])  # fmt: skip
    lines = [f"`{command}`: {summary['wall_seconds']:.0f} s in all, held-out tasks "
             f"{summary['tasks']['held_out']}.", "", table(headers, rows), ""]  # fmt: skip
    if training := summary.get("training"):
        lines.append(f"- LoRA: {training['steps']} steps on {training['examples']} examples of "
                     f"traces in {training['seconds']:.0f} s, loss {training['first_loss']:.2f} → "
                     f"{training['last_loss']:.2f}.")  # fmt: skip
    if target and "lora_over_alone" in metrics:
        ratio = metrics["lora_over_alone"]
        lines.append(f"- solved by the LoRA agent ÷ by the model alone (at least 1): {ratio:.1f}× "
                     f"(target ≥ 3× {'✓' if ratio >= 3 else '✗'}).")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["tools", "babi"], help="which measurement")
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("--home", help="keep the runs in this folder (default: a scratch one)")
    parser.add_argument("overrides", nargs="*", help="key=value options of the lab's run")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp())
    base = ["threads=1"]
    if args.part == "babi":
        if not (BABI / "babi-qa1").is_dir():
            raise SystemExit(f"babi needs bAbI's qa1 files in {BABI / 'babi-qa1'}")
        base += ["kinds=babi", f"data_dir={BABI}", "train_tasks=300", "shots=3"]
    items = with_overrides(base, args.overrides)
    load_before = os.getloadavg()[0]
    run = run_lab(LAB, items, store=RunStore(home), show_progress=False)
    body = report(run, f"deepscape run {LAB} {' '.join(items)}", target=args.part == "tools")
    body += (f"- load average (1 min) before and after: {load_before:.1f}, "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n")  # fmt: skip
    if args.no_write:
        print(body)
        return
    titles = {"tools": "language/301/agents: five kinds of task with tools (the target)",
              "babi": "language/301/agents: bAbI task 1, where no tool is needed"}  # fmt: skip
    write_section(f"language-301-agents-{args.part}", titles[args.part], body)


if __name__ == "__main__":
    main()
