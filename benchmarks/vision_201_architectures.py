"""Benchmarks of vision/201/architectures; results go to docs/benchmarks.md.

    python benchmarks/vision_201_architectures.py                    # every part
    python benchmarks/vision_201_architectures.py --parts fashion,degradation
    python benchmarks/vision_201_architectures.py --parts cifar10,target --epochs 2

(fashion, cifar10) The ladder: `arch=ladder` with the lab's defaults (every rung trained the same
    number of epochs, each with its own recipe) on Fashion-MNIST, then on the JPEG copy of CIFAR-10
    (unpacked to a temporary folder). One table per dataset: parameters, FLOPs of one forward
    pass, CPU latency at batch 1 and 64 (medians, measured in the same run), training seconds and
    test accuracy; the ImageNet models' costs at 224×224 beside them, with their top-5 on the
    two photos. Each run draws figures/frontier.png.
(degradation) `arch=degradation` on 10 % of Fashion-MNIST: plain vs residual nets at 20 and 56
    layers, their final training error and test accuracy.
(target) The best rung's speed run on CIFAR-10 (vgg, 13 epochs on all 50,000 training images,
    alternating flips, airbench's triangle LR, mirror and shift averaging at test time): test
    accuracy and minutes of training (target ≥ 91 % within 15 minutes), beside the earlier
    recipe (15 epochs on 45,000, random flips, one-cycle) in the same run unless --no-peer.
Run it under `flock /tmp/deepscape-cpu.lock` where other timed work shares the machine.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
from pathlib import Path

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "vision/201/architectures"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
BEFORE = ["arch=vgg", "epochs=15", "flip_average=true", "shift_average=true", "eval_batches=1"]
TARGET = ["arch=vgg", "epochs=13", *BEFORE[2:], "alternate_flips=true", "schedule=triangle",
          "momentum=0.85", "train_on_validation=true"]  # fmt: skip


def ladder_table(run: Run) -> str:
    rows = []
    for arch, m in run.summary["table"].items():
        rows.append([arch, f"{m['parameters'] / 1e6:.2f} M", f"{m['flops'] / 1e6:.1f} M",
                     f"{m['latency_b1_ms']:.2f}", f"{m['latency_b64_ms']:.1f}",
                     f"{m['train_seconds']:.0f} s", f"{m['test_accuracy']:.2%}"])  # fmt: skip
    for name, r in run.summary["pretrained"].items():
        photos = "; ".join(f"{photo}: {', '.join(top[:3])}" for photo, top in r["top5"].items())
        rows.append([f"{name} (ImageNet, 224×224, not trained here)",
                     f"{r['parameters'] / 1e6:.2f} M", f"{r['flops'] / 1e6:.0f} M",
                     f"{r['latency_b1_ms']:.1f}", f"{r['latency_b64_ms']:.0f}", "—",
                     f"top-3 {photos}"])  # fmt: skip
    headers = ["arch", "parameters", "FLOPs / image", "latency b1 (ms)", "latency b64 (ms)",
               "training", "test accuracy"]  # fmt: skip
    return table(headers, rows)


def part_ladder(store: RunStore, overrides: list[str], dataset: str) -> None:
    run = run_lab(LAB, ["arch=ladder", "threads=2", *overrides], store=store)
    best = run.summary["metrics"]["test_accuracy"]
    body = (
        f"`deepscape run {LAB} arch=ladder threads=2 {' '.join(overrides)}`: every rung "
        f"{run.summary['equal_budget']} (equal epochs; each rung with its own recipe, "
        "`RECIPES` in the lab), then weighed in the same run. FLOPs: one forward pass of one "
        "image (PyTorch's FlopCounterMode, a multiply-add is 2). Latency: median of 20 calls "
        "at batch 1, 10 at batch 64 (2 for the ImageNet models), fp32, 2 threads.\n\n"
        + ladder_table(run)
        + f"\n\nBest rung: **{best:.2%}**. Figure: `{run.dir.name}/figures/frontier.png`.\n"
    )
    write_section(f"vision_201_architectures_{dataset}", f"vision/201/architectures: the "
                  f"ladder on {dataset}", body)  # fmt: skip


def part_degradation(store: RunStore) -> None:
    settings = ["arch=degradation", "train_fraction=0.1", "epochs=4", "augment=none", "threads=2"]
    run = run_lab(LAB, settings, store=store)
    m = run.summary["metrics"]
    rows = [[f"{arch}-{depth}", f"{m[f'{arch}-{depth}_train_error']:.2%}",
             f"{m[f'{arch}-{depth}_test_accuracy']:.2%}"]
            for arch in ("plain", "resnet") for depth in (20, 56)]  # fmt: skip
    worse = m["plain-56_train_error"] > max(m["resnet-56_train_error"], m["plain-20_train_error"])
    body = (
        f"`deepscape run {LAB} {' '.join(settings)}` (5,500 Fashion-MNIST images, batch norm "
        "in every net, as He et al.). Training error: 1 − accuracy on the batches of the last "
        "epoch.\n\n"
        + table(["net", "training error, last epoch", "test accuracy"], rows)
        + f"\n\nThe plain 56-layer net trains worse than both the plain 20-layer net and the "
        f"56-layer net with shortcuts: {'✓' if worse else '✗'}. Figure: "
        f"`{run.dir.name}/figures/degradation.png`.\n"
    )
    write_section("vision_201_architectures_degradation",
                  "vision/201/architectures: the degradation problem", body)  # fmt: skip


def part_target(store: RunStore, data_dir: str, *, peer: bool) -> None:
    data = ["dataset=cifar10", f"data_dir={data_dir}", "threads=2", "figures=false"]
    recipes = {"speed run (airbench94's flips and schedule, all 50,000 images)": TARGET}
    if peer:
        recipes["before: random flips, one-cycle, 45,000 images"] = BEFORE
    headers = ["recipe", "overrides", "trained on", "test accuracy", "training", "parameters",
               "FLOPs / image (6 views)"]  # fmt: skip
    rows, verdict = [], ""
    for name, overrides in recipes.items():
        run = run_lab(LAB, [*overrides, *data], store=store)
        m = run.summary["metrics"]
        minutes = m["train_seconds"] / 60
        if overrides is TARGET:
            verdict = "✓" if m["test_accuracy"] >= 0.91 and minutes <= 15 else "✗"
        rows.append([name, f"`{' '.join(overrides)}`", f"{run.summary['trained_on']:,}",
                     f"{m['test_accuracy']:.2%}", f"{minutes:.1f} min",
                     f"{m['parameters'] / 1e6:.2f} M", f"{m['flops'] / 1e6:.0f} M"])  # fmt: skip
    body = (
        f"`deepscape run {LAB} OVERRIDES {' '.join(data)}`: the vgg rung (objects10's "
        "speed-run CNN and recipe), test-time mirror and shift averaging, validation on one batch "
        "per epoch to keep the clock for training. Minutes: the Trainer's clock (training and the "
        "per-epoch validation). The speed run trains on the validation images too "
        "(`train_on_validation=true`: the recipe's final run), mirrors each image every other "
        "epoch (`alternate_flips=true`) and follows airbench's triangle LR at constant momentum "
        "0.85 (`schedule=triangle momentum=0.85`).\n\n"
        + table(headers, rows)
        + f"\n\nTarget ≥ 91 % within 15 minutes on 2 CPU cores: {verdict}\n"
    )
    write_section("vision_201_architectures_target",
                  "vision/201/architectures: the best rung on CIFAR-10", body)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="fashion,degradation,cifar10,target")
    parser.add_argument("--epochs", type=int, default=2, help="the ladder's equal budget")
    parser.add_argument("--cifar-archive", type=Path, default=ARCHIVE)
    parser.add_argument(
        "--no-peer", action="store_true", help="target: skip the earlier recipe beside it"
    )
    args = parser.parse_args()
    parts = args.parts.split(",")
    store = RunStore(tempfile.mkdtemp(prefix="architectures-"))
    print(f"runs in {store.root}", flush=True)
    if "fashion" in parts:
        part_ladder(store, [f"epochs={args.epochs}"], "fashion-mnist")
    if "degradation" in parts:
        part_degradation(store)
    if {"cifar10", "target"} & set(parts):
        with tempfile.TemporaryDirectory() as folder:
            with tarfile.open(args.cifar_archive) as packed:
                packed.extractall(folder, filter="data")
            data_dir = f"{folder}/cifar10-images"
            if "cifar10" in parts:
                overrides = [f"epochs={args.epochs}", "dataset=cifar10", f"data_dir={data_dir}"]
                part_ladder(store, overrides, "cifar10")
            if "target" in parts:
                part_target(store, data_dir, peer=not args.no_peer)


if __name__ == "__main__":
    main()
