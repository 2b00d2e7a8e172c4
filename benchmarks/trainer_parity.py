"""The task-agnostic Trainer against the classification Trainer it replaced; to docs/benchmarks.md.

    python benchmarks/trainer_parity.py                 # before = the commit before the change
    python benchmarks/trainer_parity.py --before 658a0ea --seeds 0 1 2

Each lab runs at seeds 0–2 with the code of `--before` (checked out in a scratch worktree, run
in its own process) and with this checkout, one run after the other on the same machine. The
table gives test accuracy (mean and range over the seeds), whether every step's training loss
is identical, the largest difference of any validation number, and the median training time.
The change passes when the after-mean lies within the before-range (the seed spread).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import table, write_section

REPO = Path(__file__).resolve().parents[1]
SENTCLF = REPO.parent / "shared" / "data" / "sentclf"
LABS = {
    "digits (default)": ("vision/101/digits", ["figures=false"]),
    "objects10 (Fashion-MNIST, 10 %, 3 epochs)": (
        "vision/101/objects10",
        ["figures=false", "train_fraction=0.1", "epochs=3"],
    ),
    "sentence-cnn (MR-200, default)": ("language/101/sentence-cnn", ["figures=false"]),
    "sentence-cnn (TREC, 4 epochs)": (
        "language/101/sentence-cnn",
        ["figures=false", "dataset=trec", f"data_dir={SENTCLF}", "epochs=4"],
    ),
}

ONE_RUN = """
import json, sys, tempfile
from deepscape.lab import run_lab
from deepscape.runs import RunStore
run = run_lab(sys.argv[1], sys.argv[2:], store=RunStore(tempfile.mkdtemp()), show_progress=False,
              notify=lambda message: None)
history = run.history()
print(json.dumps({
    "test_accuracy": run.summary["metrics"]["test_accuracy"],
    "steps": [r["loss"] for r in history if r["kind"] == "step"],
    "evaluations": [{k: v for k, v in r.items() if k.startswith("val_")}
                    for r in history if r["kind"] == "epoch"],
    "seconds": history[-1]["seconds"] if history else None,
}))
"""


def one_run(source: Path, lab: str, overrides: list[str]) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(source / "src")}
    done = subprocess.run(
        [sys.executable, "-c", ONE_RUN, lab, *overrides, "threads=2"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def largest_difference(before: list[dict], after: list[dict]) -> float:
    """The largest gap between the same validation number of two runs' evaluations."""
    pairs = zip(before, after, strict=True)
    return max((abs(b[key] - a[key]) for b, a in pairs for key in b), default=0.0)


def compare(old: Path, lab: str, overrides: list[str], seeds: list[int]) -> tuple[list, bool]:
    """One table row for `lab` (before and after), and whether the after-mean lies within the
    before seed range."""
    runs = {
        side: [one_run(source, lab, [*overrides, f"seed={seed}"]) for seed in seeds]
        for side, source in (("before", old), ("after", REPO))
    }
    accuracy = {side: [r["test_accuracy"] for r in runs[side]] for side in runs}
    pairs = list(zip(runs["before"], runs["after"], strict=True))
    same_steps = all(b["steps"] == a["steps"] for b, a in pairs)
    largest = max(largest_difference(b["evaluations"], a["evaluations"]) for b, a in pairs)
    low, high = min(accuracy["before"]), max(accuracy["before"])
    row = [
        *(
            f"{statistics.mean(accuracy[s]):.2%} ({min(accuracy[s]):.2%}–{max(accuracy[s]):.2%})"
            for s in ("before", "after")
        ),
        "yes" if same_steps else "no",
        f"{largest:.1e}",
        *(f"{statistics.median(r['seconds'] for r in runs[s]):.1f}" for s in ("before", "after")),
    ]
    return row, low <= statistics.mean(accuracy["after"]) <= high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="658a0ea", help="the commit before the change")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows, verdicts = [], []
    with tempfile.TemporaryDirectory() as scratch:
        old = Path(scratch) / "before"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(old), args.before],
            check=True,
        )
        try:
            for name, (lab, overrides) in LABS.items():
                if "dataset=trec" in overrides and not SENTCLF.is_dir():
                    continue
                row, inside = compare(old, lab, overrides, args.seeds)
                rows.append([name, *row])
                verdicts.append(inside)
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False
            )
    body = (
        f"Seeds {', '.join(map(str, args.seeds))}; before = commit `{args.before}` (the "
        "classification Trainer), after = this checkout (the Task Trainer); 2 threads each, "
        "one run at a time.\n\n"
        + table(
            [
                "lab",
                "test accuracy before",
                "after",
                "every step's loss identical",
                "largest validation difference",
                "training s before",
                "after",
            ],
            rows,
        )
        + f"\n\nAfter-mean within the before seed range: "
        f"{'✓ every lab' if all(verdicts) else '✗'}.\n"
    )
    write_section("trainer_parity", "The Task Trainer against the classification Trainer", body)


if __name__ == "__main__":
    main()
