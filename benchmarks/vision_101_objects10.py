"""Benchmarks of vision/101/objects10; results go to docs/benchmarks.md.

    python benchmarks/vision_101_objects10.py                       # CIFAR-10 copy, then Fashion
    python benchmarks/vision_101_objects10.py --parts cifar10
    python benchmarks/vision_101_objects10.py --cifar-archive ../shared/data/cifar10-jpg.tar.gz

(cifar10) The JPEG copy of CIFAR-10 (unpacked to a temporary folder) with the lab's CIFAR recipe:
    time to 80 / 85 / 88 % validation accuracy (the clock is the Trainer's: training and the
    per-epoch validation), and the test accuracy at the end, which is the target (≥ 88 % within
    15 minutes of training on 2 CPU cores). Then the same model, data, augmentation, optimizer,
    schedule and precision trained by a bare loop (no per-step records, no checkpoints, no
    figures) for its first 3 epochs, evaluated on validation each epoch off its clock: the ratio
    of the two training times over those epochs is deepscape's overhead.
(fashion) Fashion-MNIST (Debian's package) with the lab's defaults: test accuracy (target ≥ 93 %)
    and time.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _report import table, write_section

from deepscape.config import apply_overrides
from deepscape.data import get_dataset
from deepscape.data.augment import photo_augmentation
from deepscape.devices import resolve_precision
from deepscape.lab import run_lab
from deepscape.labs.vision import l101_objects10
from deepscape.optim import Lookahead, make_optimizer, make_schedule
from deepscape.runs import RunStore

LAB = "vision/101/objects10"
CIFAR_SETTINGS = [  # the speed-run recipe of the lab's docstring
    "dataset=cifar10",
    "model=fast",
    "epochs=10",
    "batch_size=1024",
    "lr=1.5",
    "weight_decay=1.33e-3",
    "warmup=0.23",
    "crop_padding=2",
    "norm_bias_lr=64",
    "lookahead=true",
    "shift_average=true",
    "figures=false",
]
ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
BARS = (0.80, 0.85, 0.88)
BARE_EPOCHS = 3  # the peer's first epochs; per-epoch time does not depend on the LR


def time_to(epochs: list[dict], bar: float) -> str:
    reached = [e["seconds"] for e in epochs if e["val_accuracy"] >= bar]
    return f"{reached[0]:.0f} s" if reached else "—"


def bare_loop(overrides: list[str], epochs: int) -> list[dict]:
    """The lab's model and recipe (its whole schedule), trained without the Trainer for the first
    `epochs` epochs: per-epoch records."""
    config = apply_overrides(l101_objects10.Config(), overrides)
    torch.manual_seed(config.seed)
    data = get_dataset(config.dataset, config.data_dir)
    model = l101_objects10.model_for(config, data).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config, l101_objects10.lr_scales_for(config, model))
    steps = -(-len(data.train) // config.batch_size)
    scheduler = make_schedule(optimizer, config, total_steps=config.epochs * steps)
    lookahead = Lookahead(model, total_steps=config.epochs * steps) if config.lookahead else None
    augment = photo_augmentation(config.augment, padding=config.crop_padding)
    bf16 = resolve_precision(config.precision, gpu=False) == "bf16"

    def accuracy(split) -> float:
        model.eval()
        right = 0
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            for index in torch.arange(len(split)).split(1024):
                x = split.inputs[index].contiguous(memory_format=torch.channels_last)
                right += int((model(x).argmax(1) == split.targets[index]).sum())
        return right / len(split)

    records, clock, step = [], 0.0, 0
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        for index in torch.randperm(len(data.train)).split(config.batch_size):
            x = augment(data.train.inputs[index]) if augment else data.train.inputs[index]
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                logits = model(x.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(
                logits.float(), data.train.targets[index], label_smoothing=config.label_smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if lookahead is not None:
                lookahead.step(step)
        clock += time.perf_counter() - start
        validation = accuracy(data.validation)
        records.append({"epoch": epoch, "seconds": clock, "val_accuracy": validation})
        print(f"  bare loop epoch {epoch + 1}: {records[-1]}", flush=True)
    return records


def part_cifar10(store: RunStore, archive: Path) -> str:
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(archive) as packed:
            packed.extractall(folder, filter="data")
        overrides = [*CIFAR_SETTINGS, f"data_dir={folder}"]
        run = run_lab(LAB, overrides, store=store, show_progress=True)
        ours = run.history("epoch")
        ours_test = run.summary["metrics"]["test_accuracy"]
        bare = bare_loop(overrides, BARE_EPOCHS)
    minutes = ours[-1]["seconds"] / 60
    rows = [[*[time_to(ours, b) for b in BARS], f"{minutes:.1f} min", f"{ours_test:.2%}"]]
    verdict = "✓" if ours_test >= 0.88 and minutes <= 15 else "✗"
    # the same first epochs, the same schedule: the ratio of training times is the overhead
    mine, theirs = ours[BARE_EPOCHS - 1]["seconds"], bare[-1]["seconds"]
    return (
        f"`{' '.join(CIFAR_SETTINGS)}` and the lab's defaults, on the JPEG copy of CIFAR-10 "
        "(45,000 train / 5,000 validation / 10,000 test). Times are the Trainer's clock "
        "(training and the per-epoch validation).\n\n"
        + table([*[f"to {b:.0%} validation" for b in BARS], "all epochs", "test accuracy"], rows)
        + f"\n\n**Test accuracy {ours_test:.2%} after {minutes:.1f} minutes of training** "
        f"(target ≥ 88 % within 15 minutes: {verdict}).\n\n"
        f"Overhead: the first {BARE_EPOCHS} epochs took {mine:.0f} s in the Trainer against "
        f"{theirs:.0f} s in a bare loop of the same model, recipe and schedule "
        f"(**{mine / theirs:.3f}×**; the bare loop's validation is off its clock, the "
        "Trainer's on it, with its per-step records and checkpoints).\n"
    )


def part_fashion(store: RunStore) -> str:
    run = run_lab(LAB, [], store=store, show_progress=True)
    metrics, epochs = run.summary["metrics"], run.history("epoch")
    verdict = "✓" if metrics["test_accuracy"] >= 0.93 else "✗"
    row = [
        f"{metrics['test_accuracy']:.2%}",
        f"{epochs[-1]['seconds']:.0f} s",
        f"{run.summary['wall_seconds']:.0f} s",
    ]
    return (
        "`deepscape run vision/101/objects10` (the defaults: Fashion-MNIST from Debian's package, "
        f"{len(epochs)} epochs at batch 256).\n\n"
        + table(["test accuracy", "training", "whole run"], [row])
        + f"\n\nTarget ≥ 93 %: {verdict}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["cifar10", "fashion"])
    parser.add_argument("--cifar-archive", type=Path, default=ARCHIVE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(Path(home))
        # each part owns its section of docs/benchmarks.md: one can be re-run alone
        if "cifar10" in args.parts and not args.cifar_archive.is_file():
            print(f"skipping cifar10: {args.cifar_archive} not found")
        elif "cifar10" in args.parts:
            body = part_cifar10(store, args.cifar_archive)
            write_section("vision_101_objects10", "vision/101/objects10 on CIFAR-10", body)
        if "fashion" in args.parts:
            body = part_fashion(store)
            write_section(
                "vision_101_objects10_fashion", "vision/101/objects10 on Fashion-MNIST", body
            )


if __name__ == "__main__":
    main()
