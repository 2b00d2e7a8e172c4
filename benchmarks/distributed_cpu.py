"""Data-parallel on CPUs: 2 processes (torchrun, gloo) against 1, at the same global batch.

    python benchmarks/distributed_cpu.py                 # writes its section of docs/benchmarks.md
    python benchmarks/distributed_cpu.py --no-write --repeats 1

Two processes of one thread each (what the trainer gives each of 2 launched processes on 2
cores) take 32 examples each a step at 2 × lr; one process takes 64 at 2 × lr, with one thread
(one worker against two: the data-parallel scaling) and with two (the whole machine in one
process): the same global batch, steps and schedule. Throughput is
training examples per second of training time (the trainer's clock: steps and per-epoch
validation, not the interpreter's start or the test split); the launch column is the whole
command's wall time. Two workloads: the digits CNN as it ships (a step of a few milliseconds,
where the all-reduce of 66 k gradients weighs most) and a 4× wider one (16× the FLOPs per step).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import median, table, write_section

BIN = Path(sys.executable).parent
LAB = "vision/101/digits"
WORKLOADS = {"digits CNN (width 32, 66 k params)": [], "wide CNN (width 128)": ["width=128"]}


def one(launcher: list[str], overrides: list[str], home: Path) -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [*launcher, str(BIN / "deepscape"), "run", LAB, *overrides, "--json"]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--home", str(home)], capture_output=True, text=True, env=env, check=True
    )
    wall = time.perf_counter() - started
    report = json.loads(done.stdout)
    folder = Path(report["run_dir"])
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    epochs = [r for r in history if r["kind"] == "epoch"]
    examples = json.loads((folder / "summary.json").read_text())["data"]["train"]
    return {
        "examples_per_s": examples * len(epochs) / epochs[-1]["seconds"],
        "accuracy": report["metrics"]["test_accuracy"],
        "steps_per_epoch": epochs[0]["step"],
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="seeds 0 … N-1 on each side")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print, leave docs as they are")
    args = parser.parse_args()
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    home = Path(tempfile.mkdtemp(prefix="deepscape-bench-"))
    rows = []
    try:
        for name, extra in WORKLOADS.items():
            common = [f"epochs={args.epochs}", "figures=false", *extra]
            sides: dict[str, list[dict[str, float]]] = {
                "1 process × 64, 1 thread": [],
                "1 process × 64, 2 threads": [],
                "2 processes × 32, 1 thread each": [],
            }
            single = [*common, "batch_size=64", "lr=6e-3"]
            for seed in range(args.repeats):  # interleaved, so a slow moment hits every side
                runs = (
                    one([], [*single, "threads=1", f"seed={seed}"], home),
                    one([], [*single, "threads=2", f"seed={seed}"], home),
                    one(torchrun, [*common, f"seed={seed}"], home),
                )
                for results, result in zip(sides.values(), runs, strict=True):
                    results.append(result)
            base = median([r["examples_per_s"] for r in sides["1 process × 64, 1 thread"]])
            for label, results in sides.items():
                speed = median([r["examples_per_s"] for r in results])
                rows.append(
                    [
                        name,
                        label,
                        results[0]["steps_per_epoch"],
                        f"{speed:,.0f}",
                        f"{median([r['wall'] for r in results]):.1f} s",
                        " / ".join(f"{r['accuracy']:.3f}" for r in results),
                        f"**{speed / base:.2f}×**",
                    ]
                )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    body = table(
        [
            "workload",
            "processes × batch",
            "steps / epoch",
            "train examples/s (median)",
            "command wall (median)",
            f"test accuracy, seeds 0–{args.repeats - 1}",
            "throughput vs 1 process, 1 thread",
        ],
        rows,
    )
    body += (
        f"\n\n{args.epochs} epochs of the 1,293 training digits, global batch 64, lr 6e-3 "
        "(3e-3 × 2 processes) on every side. The paper estimate for GPUs is in "
        "docs/distributed.md. Load average (1 min) when the measurement ended: "
        f"{os.getloadavg()[0]:.1f}: a second job on the cores slows a 2-thread process far more "
        "than two 1-thread ones."
    )
    if args.no_write:
        print(body)
    else:
        write_section("distributed-cpu", "Data-parallel on CPUs: 2 processes vs 1", body)


if __name__ == "__main__":
    main()
