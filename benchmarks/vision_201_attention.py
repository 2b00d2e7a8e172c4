"""Benchmarks of vision/201/attention; results go to docs/benchmarks.md.

    python benchmarks/vision_201_attention.py                        # fashion, cifar10, sizes
    python benchmarks/vision_201_attention.py --parts fashion        # the map's check alone
    python benchmarks/vision_201_attention.py --parts sizes --sizes-dataset cifar10
    python benchmarks/vision_201_attention.py --parts stem           # patches vs convolutions

(fashion) `deepscape run vision/201/attention` with the lab's defaults (the ViT on Fashion-MNIST):
    test accuracy, training time (the Trainer's clock), the model's measured cost, and the CNN
    trained beside it for the Grad-CAM figure. Target: ≥ 91 % within 10 minutes of training.
(cifar10) The ViT on the JPEG copy of CIFAR-10 (unpacked to a temporary folder) with CIFAR_SETTINGS.
    Target: ≥ 70 % within 15 minutes.
(stem) The ViT's tokens from one linear map a patch (stem=patches) against the default
    convolutional stem, at the default epochs (`--stem-epochs`), one after the other in one process.
(sizes) method=sizes: the ViT and the CNN of about its size at every training-set size, the same
    steps each; test accuracy per size and the CNN's lead.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
from pathlib import Path

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.labs.vision.l201_attention import Config as AttentionConfig
from deepscape.runs import Run, RunStore

LAB = "vision/201/attention"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
CIFAR_SETTINGS = [
    "dataset=cifar10", "patch_size=4", "stem=convolutions", "epochs=15", "crop_padding=4",
    "figures=false",
]  # fmt: skip


def unpacked(archive: Path, folder: str) -> str:
    with tarfile.open(archive) as packed:
        packed.extractall(folder, filter="data")
    return str(Path(folder) / "cifar10-images")


def one_run(run: Run, *, bar: float, minutes: float) -> str:
    metrics = run.summary["metrics"]
    trained = metrics["train_seconds"] / 60
    rows = [[
        f"{metrics['test_accuracy']:.2%}",
        f"{trained:.1f} min",
        f"{run.summary['wall_seconds'] / 60:.1f} min",
        f"{metrics['parameters']:,}",
        f"{metrics['forward_flops'] / 1e6:.1f} M",
    ]]  # fmt: skip
    verdict = "✓" if metrics["test_accuracy"] >= bar and trained <= minutes else "✗"
    text = (
        table(["test accuracy", "training", "whole run", "parameters", "FLOPs / image"], rows)
        + f"\n\n**Test accuracy {metrics['test_accuracy']:.2%} after {trained:.1f} minutes of "
        f"training** (target ≥ {bar:.0%} within {minutes:.0f} minutes: {verdict}). "
        f"Attention written out vs PyTorch (float64, max |difference|): "
        f"{run.summary['attention_check']['vs_sdpa']:.1e} against scaled_dot_product_attention, "
        f"{run.summary['attention_check']['vs_multihead_attention']:.1e} against "
        "nn.MultiheadAttention.\n"
    )
    if cnn := run.summary.get("cnn"):
        text += (
            f"\nThe CNN beside it (Grad-CAM figure; {cnn['parameters']:,} parameters, "
            f"{cnn['train_seconds']:.0f} s of training): {cnn['test_accuracy']:.2%}.\n"
        )
    return text


def part_fashion(store: RunStore) -> str:
    run = run_lab(LAB, [], store=store, show_progress=True)
    return "`deepscape run vision/201/attention` (the defaults).\n\n" + one_run(
        run, bar=0.91, minutes=10
    )


def part_cifar10(store: RunStore, archive: Path) -> str:
    with tempfile.TemporaryDirectory() as folder:
        overrides = [*CIFAR_SETTINGS, f"data_dir={unpacked(archive, folder)}"]
        run = run_lab(LAB, overrides, store=store, show_progress=True)
    return f"`{' '.join(CIFAR_SETTINGS)}` on the JPEG copy of CIFAR-10.\n\n" + one_run(
        run, bar=0.70, minutes=15
    )


def part_stem(store: RunStore, epochs: int) -> str:
    rows = []
    for stem in ("patches", "convolutions"):
        overrides = [f"stem={stem}", f"epochs={epochs}", "figures=false"]
        metrics = run_lab(LAB, overrides, store=store, show_progress=True).summary["metrics"]
        met = metrics["test_accuracy"] >= 0.91 and metrics["train_seconds"] <= 600
        rows.append([f"`{' '.join(overrides)}`", f"{metrics['test_accuracy']:.2%}",
                     f"{metrics['train_seconds'] / 60:.1f} min", f"{metrics['parameters']:,}",
                     f"{metrics['forward_flops'] / 1e6:.1f} M", "✓" if met else "✗"])  # fmt: skip
    headers = ["`deepscape run vision/201/attention …`", "test accuracy", "training",
               "parameters", "FLOPs / image", "≥ 91 % within 10 min"]  # fmt: skip
    return (
        "The same ViT (4 blocks of 128 numbers, 16 tokens of Fashion-MNIST's 28×28 images), its "
        "tokens made two ways, at the same epochs, one run after the other.\n\n"
        + table(headers, rows)
        + "\n"
    )


def part_sizes(store: RunStore, dataset: str, archive: Path) -> str:
    with tempfile.TemporaryDirectory() as folder:
        overrides = ["method=sizes", f"dataset={dataset}"]
        if dataset == "cifar10":  # 7×7 patches do not tile 32×32 images
            overrides += ["patch_size=4", f"data_dir={unpacked(archive, folder)}"]
        run = run_lab(LAB, overrides, store=store, show_progress=True)
    shown = [item for item in overrides if not item.startswith("data_dir=")]  # a scratch folder
    metrics, config = run.summary["metrics"], run.config
    sizes = sorted({int(key.split("_")[1]) for key in metrics if key.startswith("vit_")})
    rows = [
        [f"{n:,}", f"{metrics[f'vit_{n}']:.2%}", f"{metrics[f'cnn_{n}']:.2%}",
         f"{100 * metrics[f'cnn_lead_{n}']:+.1f} points"]
        for n in sizes
        if f"cnn_lead_{n}" in metrics
    ]  # fmt: skip
    return (
        f"`deepscape run vision/201/attention {' '.join(shown)}`: each arm "
        f"{config['steps']} steps of batch {config['batch_size']} at every size "
        f"({run.summary['wall_seconds'] / 60:.0f} minutes in all). Figure: "
        f"`{run.dir.name}/figures/inductive_bias.png`.\n\n"
        + table(["training images", "ViT", "CNN", "CNN's lead"], rows)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["fashion", "cifar10", "sizes"])
    parser.add_argument("--cifar-archive", type=Path, default=ARCHIVE)
    parser.add_argument("--sizes-dataset", default="fashion-mnist")
    parser.add_argument("--stem-epochs", type=int, default=AttentionConfig().epochs)
    args = parser.parse_args()
    store = RunStore(Path(tempfile.mkdtemp(prefix="attention-")))  # kept: the runs' figures
    print(f"runs in {store.root}", flush=True)
    # each part owns its section of docs/benchmarks.md: one can be re-run alone
    if "fashion" in args.parts:
        body = part_fashion(store)
        write_section("vision_201_attention_fashion", f"{LAB} on Fashion-MNIST", body)
    if "cifar10" in args.parts and not args.cifar_archive.is_file():
        print(f"skipping cifar10: {args.cifar_archive} not found")
    elif "cifar10" in args.parts:
        body = part_cifar10(store, args.cifar_archive)
        write_section("vision_201_attention_cifar10", f"{LAB} on CIFAR-10", body)
    if "stem" in args.parts:
        body = part_stem(store, args.stem_epochs)
        title = f"{LAB}: patches or a convolutional stem ({args.stem_epochs} epochs)"
        write_section("vision_201_attention_stem", title, body)
    if "sizes" in args.parts:
        body = part_sizes(store, args.sizes_dataset, args.cifar_archive)
        name = f"vision_201_attention_sizes_{args.sizes_dataset.replace('-', '_')}"
        title = f"{LAB}: ViT vs CNN over training-set sizes ({args.sizes_dataset})"
        write_section(name, title, body)


if __name__ == "__main__":
    main()
