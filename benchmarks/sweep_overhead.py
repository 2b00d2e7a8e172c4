"""Benchmark: what the experiment manager costs. Results go to docs/benchmarks.md.

    python benchmarks/sweep_overhead.py

The same N short trainings, two at a time, twice:
- `deepscape sweep … --jobs 2`: every run a full recorded run (config, history, checkpoints,
  weights, test evaluation, four figures), the sweep's comparison figures at the end;
- a bare script: the same trainings as bare loops (benchmarks/vision_101_digits.py's) in a
  2-process spawn pool, each with one thread.
Both are timed as whole commands (interpreter start and imports included). Median of 3 pairs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import median, table, write_section

HERE = Path(__file__).resolve().parent
DEEPSCAPE = str(Path(sys.executable).parent / "deepscape")
SETTINGS = ["dataset=mnist-5k", "precision=bf16", "batch_size=128", "epochs=5"]
LRS = ["1e-3", "2e-3", "3e-3", "5e-3"]
SEEDS = 2

BARE = f"""
import sys, torch
from multiprocessing import get_context
sys.path.insert(0, {str(HERE)!r})
from vision_101_digits import bare_loop
from deepscape.config import apply_overrides
from deepscape.data import get_dataset
from deepscape.data.augment import RandomAffine
from deepscape.labs.vision.l101_digits import Config

def one(overrides):
    torch.set_num_threads(1)
    config = apply_overrides(Config(), overrides)
    data = get_dataset(config.dataset)
    return bare_loop(config, data, RandomAffine(degrees=10, shift=0.1, scale=0.1))

if __name__ == "__main__":
    jobs = [{SETTINGS!r} + [f"lr={{lr}}", f"seed={{seed}}", "threads=1"]
            for lr in {LRS!r} for seed in range({SEEDS})]
    with get_context("spawn").Pool(2) as pool:
        pool.map(one, jobs)
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    sweeps, bares = [], []
    with tempfile.TemporaryDirectory() as home:
        script = Path(home) / "bare.py"
        script.write_text(BARE)
        for _ in range(3):
            bares.append(timed([sys.executable, str(script)]))
            sweeps.append(
                timed(
                    [
                        DEEPSCAPE,
                        "sweep",
                        "digits",
                        "lr=" + ",".join(LRS),
                        *SETTINGS,
                        "--seeds",
                        str(SEEDS),
                        "--jobs",
                        "2",
                        "--json",
                        "--home",
                        home,
                    ]
                )
            )
            print(f"  bare {bares[-1]:.1f} s, sweep {sweeps[-1]:.1f} s", flush=True)
    runs = len(LRS) * SEEDS
    ratio = median(sweeps) / median(bares)
    rows = [
        ["bare loops, 2-process pool", *[f"{s:.1f}" for s in bares], f"{median(bares):.1f}"],
        ["deepscape sweep --jobs 2", *[f"{s:.1f}" for s in sweeps], f"{median(sweeps):.1f}"],
    ]
    write_section(
        "sweep-overhead",
        "Experiment manager: sweep overhead",
        f"{runs} runs of the digits lab's CNN on MNIST-5k (`{' '.join(SETTINGS)}`, lr × "
        f"{SEEDS} seeds), two at a time; seconds for the whole command.\n\n"
        + table(["how", "try 1", "try 2", "try 3", "median"], rows)
        + f"\n\n**sweep / bare = {ratio:.3f}×** (goal ≤ 1.10×: {'✓' if ratio <= 1.10 else '✗'})."
        " The sweep's runs also evaluate on test, save weights and checkpoints, and draw four"
        " figures each plus the sweep's two comparison figures.\n",
    )


if __name__ == "__main__":
    main()
