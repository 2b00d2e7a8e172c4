"""Data-parallel on CPUs: 2 processes (torchrun, gloo) against 1, at the same global batch.

    python benchmarks/distributed_cpu.py                 # writes its section of docs/benchmarks.md
    python benchmarks/distributed_cpu.py --no-write --repeats 1
    python benchmarks/distributed_cpu.py --part lora     # a lab's own loop: LoRA on SmolLM2
    python benchmarks/distributed_cpu.py --part shard    # FSDP (shard=true) against plain DDP

Two processes of one thread each (what the trainer gives each of 2 launched processes on 2
cores) take 32 examples each a step at 2 × lr; one process takes 64 at 2 × lr, with one thread
(one worker against two: the data-parallel scaling) and with two (the whole machine in one
process): the same global batch, steps and schedule. Throughput is
training examples per second of training time (the trainer's clock: steps and per-epoch
validation, not the interpreter's start or the test split); the launch column is the whole
command's wall time. Two workloads: the digits CNN as it ships (a step of a few milliseconds,
where the all-reduce of 66 k gradients weighs most) and a 4× wider one (16× the FLOPs per step).

`--part lora`: language/201/fine-tuning's LoRA on SmolLM2-135M-Instruct (deepscape.tuning.train,
where batch_size is the global batch), 1 process against 2, the same 8 SST-2 sentences a step:
training tokens per second of the whole job, and how far apart the two sides' step losses are
(the same steps, so only float rounding).

`--part shard`: on 2 processes, plain data-parallel (every process holds the whole training
state) against `shard=true` (FSDP: each holds half), for language/201/transformers' GPT at its
default size (the core Trainer) and SmolLM2-135M's full fine-tuning in language/201/fine-tuning
(deepscape.tuning.train): the training state each process held, measured, beside 16 bytes a
parameter (fp32 weights and gradients, AdamW's two moments) divided by the processes; tokens per
second; and how far apart the two sides' step losses are (the same steps: only float rounding).
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
SENTCLF = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentclf"
LORA = ["dataset=sst2", f"data_dir={SENTCLF}", "methods=lora", "max_steps=24", "batch_size=8",
        "max_test=8", "forgetting_tokens=0", "figures=false"]  # fmt: skip
# the GPT at the lab's default size, a short run: 2 processes × 16 windows of 128 tokens a step
GPT = ["max_steps=100", "eval_every=50", "eval_batches=4", "batch_size=16", "precision=fp32",
       "sample_tokens=20"]  # fmt: skip
# SmolLM2-135M-Instruct, every weight trained: 8 steps of 4 MR-200 reviews
LLM_FULL = ["methods=full", "max_steps=8", "batch_size=4", "max_test=8", "forgetting_tokens=0",
            "figures=false"]  # fmt: skip
WORKLOADS = {"digits CNN (width 32, 66 k params)": [], "wide CNN (width 128)": ["width=128"]}


def launched(launcher: list[str], lab: str, overrides: list[str], home: Path) -> tuple[Path, float]:
    """The run folder of `deepscape run LAB` under `launcher`, and the command's wall time."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [*launcher, str(BIN / "deepscape"), "run", lab, *overrides, "--json"]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--home", str(home)], capture_output=True, text=True, env=env, check=True
    )
    return Path(json.loads(done.stdout)["run_dir"]), time.perf_counter() - started


def one(launcher: list[str], overrides: list[str], home: Path) -> dict[str, float]:
    folder, wall = launched(launcher, LAB, overrides, home)
    summary = json.loads((folder / "summary.json").read_text())
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    epochs = [r for r in history if r["kind"] == "epoch"]
    return {
        "examples_per_s": summary["data"]["train"] * len(epochs) / epochs[-1]["seconds"],
        "accuracy": summary["metrics"]["test_accuracy"],
        "steps_per_epoch": epochs[0]["step"],
        "wall": wall,
    }


def lora(torchrun: list[str], repeats: int) -> str:
    """The fine-tuning lab's LoRA, 1 process (1 and 2 threads) against 2 processes."""
    sides = {
        "1 process, 1 thread": ([], ["threads=1"]),
        "1 process, 2 threads": ([], ["threads=2"]),
        "2 processes, 1 thread each": (torchrun, []),
    }
    found: dict[str, list[dict]] = {label: [] for label in sides}
    home = Path(tempfile.mkdtemp(prefix="deepscape-bench-"))
    try:
        for _ in range(repeats):  # interleaved, so a slow moment hits every side
            for label, (launcher, extra) in sides.items():
                folder, wall = launched(launcher, "language/201/fine-tuning", [*LORA, *extra], home)
                lora = json.loads((folder / "summary.json").read_text())["methods"]["lora"]
                found[label].append({**lora, "wall": wall})
    finally:
        shutil.rmtree(home, ignore_errors=True)
    base = median([r["train_tokens_per_second"] for r in found["1 process, 1 thread"]])
    reference = found["1 process, 1 thread"][0]["losses"]
    rows = []
    for label, results in found.items():
        speed = median([r["train_tokens_per_second"] for r in results])
        apart = max(abs(a - b) for a, b in zip(results[0]["losses"], reference, strict=True))
        rows.append([label, f"{median([r['seconds_per_step'] for r in results]):.2f}",
                     f"{speed:,.0f}", f"**{speed / base:.2f}×**",
                     f"{median([r['wall'] for r in results]):.0f} s", f"{apart:.1e}"])  # fmt: skip
    headers = ["processes", "s/step (median)", "train tokens/s (median)",
               "throughput vs 1 process, 1 thread", "command wall (median)",
               "largest step-loss difference from 1 process, 1 thread"]  # fmt: skip
    note = (
        f"`deepscape run language/201/fine-tuning {' '.join(LORA)}`, "
        f"{'once' if repeats == 1 else f'{repeats} times'} on each side: a rank-8 LoRA on "
        "SmolLM2-135M-Instruct (fp32), 24 steps of 8 SST-2 sentences (the global batch: 4 a "
        "process on 2). Tokens/s counts the whole batch's tokens over the "
        "training's seconds. Load average (1 min) when the measurement ended: "
        f"{os.getloadavg()[0]:.1f}."
    )
    return f"{table(headers, rows)}\n\n{note}"


def gpt_side(folder: Path) -> dict:
    """What the transformers lab's run recorded: bytes held, tokens/s, step losses, val loss."""
    summary = json.loads((folder / "summary.json").read_text())
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    metrics = summary["metrics"]
    return {
        "held_mib": {k: v / 2**20 for k, v in summary["state_bytes_per_process"].items()},
        "tokens_per_s": metrics["tokens_trained"] / metrics["train_seconds"],
        "losses": [r["loss"] for r in history if r["kind"] == "step"],
        "end_loss": metrics["val_loss"],
        "parameters": metrics["parameters"],
    }


def llm_side(folder: Path) -> dict:
    """What the fine-tuning lab's full fine-tuning recorded (memory in MiB already)."""
    full = json.loads((folder / "summary.json").read_text())["methods"]["full"]
    return {
        "held_mib": {k: full["memory_mb"][k] for k in ("weights", "gradients", "optimizer")},
        "tokens_per_s": full["train_tokens_per_second"],
        "losses": full["losses"],
        "end_loss": full["losses"][-1],
        "parameters": full["parameters"],
    }


def shard(torchrun: list[str], repeats: int) -> str:
    """Two workloads on 2 processes, data-parallel against sharded: the transformers lab's GPT
    (the core Trainer) and SmolLM2's full fine-tuning (deepscape.tuning.train)."""
    workloads = {
        "GPT (language/201/transformers)": ("language/201/transformers", GPT, gpt_side),
        "SmolLM2-135M full fine-tuning (language/201/fine-tuning)": (
            "language/201/fine-tuning", LLM_FULL, llm_side),
    }  # fmt: skip
    sides = {"data-parallel": ["shard=false"], "sharded (shard=true)": ["shard=true"]}
    rows, sizes = [], []
    home = Path(tempfile.mkdtemp(prefix="deepscape-bench-"))
    try:
        for workload, (lab, args, read) in workloads.items():
            found: dict[str, list[dict]] = {label: [] for label in sides}
            for _ in range(repeats):  # interleaved, so a slow moment hits every side
                for label, extra in sides.items():
                    folder, _ = launched(torchrun, lab, [*args, *extra], home)
                    found[label].append(read(folder))
            reference = found["data-parallel"]
            base = median([r["tokens_per_s"] for r in reference])
            sizes.append(f"{workload}: {reference[0]['parameters']:,} parameters")
            for label, results in found.items():
                held = results[0]["held_mib"]
                speed = median([r["tokens_per_s"] for r in results])
                pairs = zip(results[0]["losses"], reference[0]["losses"], strict=True)
                apart = max(abs(a - b) for a, b in pairs)
                rows.append([workload, label, *(f"{held[k]:.2f}" for k in held),
                             f"**{sum(held.values()):.2f}**", f"{speed:,.0f}",
                             f"{speed / base:.2f}×",
                             f"{median([r['end_loss'] for r in results]):.4f}",
                             f"{apart:.1e}"])  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    headers = ["workload", "2 processes", "weights MiB / process", "gradients", "AdamW moments",
               "training state", "train tokens/s (median)", "vs data-parallel",
               "loss at the end (median)", "largest step-loss difference"]  # fmt: skip
    note = (
        "`torchrun --nproc_per_node 2 $(which deepscape) run LAB … shard=false|true`, "
        f"{'once' if repeats == 1 else f'{repeats} times'} on each side, 1 thread a process: "
        f"`language/201/transformers {' '.join(GPT)}` and `language/201/fine-tuning "
        f"{' '.join(LLM_FULL)}`. {'; '.join(sizes)}. The training state predicted is 16 bytes "
        "a parameter (fp32 weights and gradients, AdamW's two moments) on every process "
        "data-parallel, 8 sharded on 2. The loss at the end is the GPT's validation loss and "
        "the fine-tuning's last step loss; the step-loss difference is from the data-parallel "
        "run with the same seed. Load average (1 min) when the measurement ended: "
        f"{os.getloadavg()[0]:.1f}."
    )
    return f"{table(headers, rows)}\n\n{note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("digits", "lora", "shard"), default="digits")
    parser.add_argument("--repeats", type=int, default=3, help="seeds 0 … N-1 on each side")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print, leave docs as they are")
    args = parser.parse_args()
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    sections = {
        "lora": ("distributed-cpu-lora", "Data-parallel LoRA on CPUs: 2 processes vs 1", lora),
        "shard": ("distributed-cpu-shard", "Sharded (FSDP) on CPUs: 2 processes, half the state "
                  "each", shard),
    }  # fmt: skip
    if args.part in sections:
        key, title, measure = sections[args.part]
        body = measure(torchrun, args.repeats)
        if args.no_write:
            print(body)
        else:
            write_section(key, title, body)
        return
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
    load = os.getloadavg()[0]
    body += (
        f"\n\n{args.epochs} epochs of the 1,293 training digits, global batch 64, lr 6e-3 "
        "(3e-3 × 2 processes) on every side. The paper estimate for GPUs is in "
        f"docs/distributed.md. Load average (1 min) when the measurement ended: {load:.1f}"
        # the measurement's own 2 processes make a load of about 2; more is another job
        + (": a second job on the cores slows a 2-thread process far more than two 1-thread "
           "ones." if load > 2.5 else " (the measurement's own processes).")
    )  # fmt: skip
    if args.no_write:
        print(body)
    else:
        write_section("distributed-cpu", "Data-parallel on CPUs: 2 processes vs 1", body)


if __name__ == "__main__":
    main()
