"""Benchmark of vision/101/transfer; results go to docs/benchmarks.md.

    python benchmarks/vision_101_transfer.py                     # CIFAR-10 copy, else Fashion-MNIST
    python benchmarks/vision_101_transfer.py --dataset fashion-mnist

The lab's learning curve — a CNN from scratch (objects10's), a linear probe on frozen
EfficientNet-Lite0 features, and fine-tuning — over the lab's default numbers of labelled images,
every arm with the same steps, validation and test images. The target: with ≤ 1,000 labels,
fine-tuning beats from-scratch by ≥ 10 points of test accuracy.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
from pathlib import Path

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.runs import RunStore

LAB = "vision/101/transfer"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
METHODS = {"scratch": "CNN from scratch", "probe": "linear probe", "finetune": "fine-tuned"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["cifar10", "fashion-mnist"], default=None)
    parser.add_argument("--cifar-archive", type=Path, default=ARCHIVE)
    parser.add_argument("overrides", nargs="*", help="key=value options for the lab")
    args = parser.parse_args()
    dataset = args.dataset or ("cifar10" if args.cifar_archive.is_file() else "fashion-mnist")
    with tempfile.TemporaryDirectory() as home:
        overrides = [f"dataset={dataset}", *args.overrides]
        if dataset == "cifar10":
            with tarfile.open(args.cifar_archive) as packed:
                packed.extractall(home, filter="data")
            overrides.append(f"data_dir={home}/cifar10-images")
        run = run_lab(LAB, overrides, store=RunStore(Path(home) / "runs"), show_progress=True)
        metrics, wall = run.summary["metrics"], run.summary["wall_seconds"]
    sizes = sorted({int(k.rsplit("_", 1)[1]) for k in metrics if k.startswith("scratch_")})
    rows = [
        [label, *[f"{metrics.get(f'{method}_{n}', float('nan')):.1%}" for n in sizes]]
        for method, label in METHODS.items()
    ]
    gain, at = metrics.get("finetune_gain_at_1000"), metrics.get("compared_at")
    verdict = "✓" if gain is not None and gain >= 0.10 else "✗"
    body = (
        f"`{' '.join(overrides[:1] + args.overrides)}` on {dataset} (test accuracy on the whole "
        f"test split; {wall / 60:.0f} minutes for the whole curve on this machine).\n\n"
        + table(["labelled images", *[f"{n:,}" for n in sizes]], rows)
        + f"\n\n**Fine-tuning beats from-scratch by {gain:+.1%} at {at} labels** "
        f"(target ≥ +10 points with ≤ 1,000 labels: {verdict}).\n"
    )
    write_section(f"vision_101_transfer_{dataset}", f"vision/101/transfer on {dataset}", body)


if __name__ == "__main__":
    main()
