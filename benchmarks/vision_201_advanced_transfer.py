"""Benchmark of vision/201/advanced-transfer; results go to docs/benchmarks.md.

    python benchmarks/vision_201_advanced_transfer.py threads=1            # everything (hours)
    python benchmarks/vision_201_advanced_transfer.py --domains digits --sizes 100,1000
    python benchmarks/vision_201_advanced_transfer.py --parts mobilenet
    python benchmarks/vision_201_advanced_transfer.py --parts lora --lora-lrs 1,5 threads=2

(domains) `deepscape run vision/201/advanced-transfer dataset=D sizes=S` for CIFAR-10 (the JPEG
    copy, unpacked to a temporary folder: near ImageNet), Fashion-MNIST (further) and 8×8 digits
    (far): every arm — linear probe, full fine-tuning, layer-wise LR decay, gradual unfreezing,
    LoRA, and the probe and fine-tuning again with AdaBN statistics — at every size, with its
    test accuracy, trainable share, measured step memory and training time. Beside them, the
    same labels learnt from scratch: vision/101/transfer's CNN (method=scratch, the same steps,
    validation and test images) for the photos and clothes; vision/101/digits' CNN (its own
    recipe, train_fraction = labels / 1,293) for the digits. The target: at 1,000 labels LoRA
    with ≤ 5 % of the parameters trained within 1 point of full fine-tuning.
(mobilenet) The same comparison with torchvision's MobileNetV2 on Fashion-MNIST at 1,000 labels.
(lora) LoRA's learning rate: on every domain at 1,000 labels, full fine-tuning once and the LoRA
    arm at each of `--lora-lrs` (lora_lr: the adapters' LR as a share of the head's), each a
    single-arm run from the same linear probe; the gap to full fine-tuning at each.
"""

from __future__ import annotations

import argparse
import dataclasses
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.labs.vision.l101_transfer import Config as TransferConfig
from deepscape.runs import Run, RunStore

LAB = "vision/201/advanced-transfer"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
DOMAINS = ("cifar10", "fashion-mnist", "digits")  # nearest to ImageNet first
DIGITS_TRAIN = 1293  # the digits' training split: train_fraction of the from-scratch reference
ARMS = {
    "scratch": "CNN from scratch",
    "probe": "linear probe",
    "probe_adabn": "linear probe + AdaBN",
    "finetune": "full fine-tuning (LP-FT)",
    "finetune_adabn": "full fine-tuning + AdaBN",
    "llrd": "layer-wise LR decay",
    "gradual": "gradual unfreezing + LR decay",
    "lora": "LoRA on the 1×1 convolutions",
}


def domain_overrides(domain: str, folder: str, archive: Path) -> list[str]:
    if domain != "cifar10":
        return [f"dataset={domain}"]
    with tarfile.open(archive) as packed:
        packed.extractall(folder, filter="data")
    return ["dataset=cifar10", f"data_dir={Path(folder) / 'cifar10-images'}"]


def from_scratch(
    store: RunStore, domain: str, data: list[str], sizes: list[int], overrides: list[str]
) -> dict[int, dict[str, Any]]:
    """Test accuracy of a CNN trained from scratch on the same labels, by size."""
    threads = [o for o in overrides if o.startswith("threads=")]
    known = {f.name for f in dataclasses.fields(TransferConfig)}
    overrides = [o for o in overrides if o.partition("=")[0] in known]  # this lab's own: dropped
    found = {}
    for n in sizes:
        if domain == "digits":
            items = [f"train_fraction={min(1.0, n / DIGITS_TRAIN):.6f}", "figures=false", *threads]
            run = run_lab("vision/101/digits", items, store=store, show_progress=True)
        else:
            items = [*data, "method=scratch", f"labelled={n}", *overrides]
            run = run_lab("vision/101/transfer", items, store=store, show_progress=True)
        found[run.summary["data"]["train"] if domain != "digits" else n] = run.summary["metrics"]
    return found


def compare(store: RunStore, data: list[str], sizes: str, overrides: list[str]) -> Run:
    items = [*data, "method=compare", f"sizes={sizes}", *overrides]
    return run_lab(LAB, items, store=store, show_progress=True)


def accuracy_table(results: dict[str, dict[str, dict[int, dict[str, Any]]]]) -> str:
    """Rows: arms; columns: domain × labels."""
    columns = [(domain, n) for domain, arms in results.items()
               for n in sorted({n for by_size in arms.values() for n in by_size})]  # fmt: skip
    rows = []
    for arm, label in ARMS.items():
        cells = [results[d].get(arm, {}).get(n, {}).get("test_accuracy") for d, n in columns]
        if any(c is not None for c in cells):
            rows.append([label, *[f"{c:.1%}" if c is not None else "–" for c in cells]])
    return table(["method", *[f"{d} {n:,}" for d, n in columns]], rows)


def cost_table(results: dict[str, dict[str, dict[int, dict[str, Any]]]], domain: str) -> str:
    """What each trained arm costs at its domain's most labels: measured, in the same runs."""
    rows = []
    for arm, label in ARMS.items():
        by_size = results[domain].get(arm)
        if not by_size or arm == "scratch":
            continue
        n = max(by_size)
        m = by_size[n]
        peak = f"{m['step_peak_mb']:.0f} MB" if "step_peak_mb" in m else "– (L-BFGS on features)"
        state = "–"
        if "step_gradients_mb" in m:
            state = f"{m['step_gradients_mb'] + m['step_optimizer_state_mb']:.1f} MB"
        seconds = f"{m['train_seconds']:.0f} s" if "train_seconds" in m else "–"
        rows.append([label, f"{m['trainable_parameters']:,}", f"{m['trainable_share']:.2%}",
                     peak, state, seconds])  # fmt: skip
    headers = ["method", "trained parameters", "share", "step peak memory",
               "gradients + AdamW state", "training (steps + validation)"]  # fmt: skip
    return table(headers, rows)


def verdicts(runs: dict[str, Run]) -> str:
    lines = []
    for domain, run in runs.items():
        metrics = run.summary["metrics"]
        gap, share = metrics.get("lora_gap_to_full_finetune"), metrics.get("lora_trainable_share")
        if gap is None or share is None:
            lines.append(f"- {domain}: LoRA or fine-tuning missing, no verdict")
            continue
        met = "✓" if gap <= 0.01 and share <= 0.05 else "✗"
        gains = ", ".join(f"{k.removeprefix('adabn_gain_')} {v * 100:+.1f}"
                          for k, v in metrics.items() if k.startswith("adabn_gain_"))  # fmt: skip
        lines.append(
            f"- {domain}: full fine-tuning minus LoRA ({share:.1%} of the parameters trained): "
            f"{gap * 100:+.1f} points at {metrics['compared_at']:,} labels {met}; AdaBN's gain "
            f"in points ({gains or 'not run'}); whole comparison "
            f"{run.summary['wall_seconds'] / 60:.0f} min"
        )
    return "\n".join(lines)


def part_domains(
    store: RunStore, domains: list[str], sizes: str, archive: Path, overrides: list[str]
) -> str:
    results: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    runs: dict[str, Run] = {}
    for domain in domains:
        if domain == "cifar10" and not archive.is_file():
            print(f"skipping cifar10: {archive} not found")
            continue
        with tempfile.TemporaryDirectory() as folder:
            data = domain_overrides(domain, folder, archive)
            run = compare(store, data, sizes, overrides)
            arms = {name: {int(n): m for n, m in by_size.items()}
                    for name, by_size in run.summary["arms"].items()}  # fmt: skip
            arms["scratch"] = from_scratch(store, domain, data, sorted(
                {n for by_size in arms.values() for n in by_size}), overrides)  # fmt: skip
        results[domain], runs[domain] = arms, run
    if not runs:
        return "No domain had its data."
    config = next(iter(runs.values())).config
    largest = {d: max(n for by_size in arms.values() for n in by_size)
               for d, arms in results.items()}  # fmt: skip
    return (
        f"`deepscape run {LAB} dataset=D sizes={sizes}` with {config['backbone']} at "
        f"{config['image_size']} px, every arm {config['steps']} steps of batch "
        f"{config['batch_size']} from the same linear probe; test accuracy on each domain's "
        "whole test split (digits: 360 images, so ±1.5 points is noise). From scratch: "
        "vision/101/transfer's CNN (method=scratch) on the photos and clothes, vision/101/digits' "
        "CNN on its own recipe for the digits.\n\n"
        + accuracy_table(results)
        + "\n\n"
        + "\n\n".join(
            f"What each arm costs on {d} at {largest[d]:,} labels (measured in the same runs; "
            "step memory: PyTorch's profiler over one AdamW step of a batch, "
            "deepscape.costs.training_step_memory; gradual unfreezing measured with every group "
            "unfrozen, its last phase):\n\n" + cost_table(results, d)
            for d in results
        )
        + "\n\n**LoRA against full fine-tuning** (target: ≤ 1 point below, ≤ 5 % trained):\n\n"
        + verdicts(runs)
        + "\n"
    )


def part_mobilenet(store: RunStore, overrides: list[str]) -> str:
    items = ["backbone=mobilenet_v2", "methods=probe,finetune,llrd,lora", "adabn_methods="]
    run = compare(store, ["dataset=fashion-mnist"], "1000", [*items, *overrides])
    arms = {name: {int(n): m for n, m in by_size.items()}
            for name, by_size in run.summary["arms"].items()}  # fmt: skip
    results = {"fashion-mnist": arms}
    return (
        f"`deepscape run {LAB} backbone=mobilenet_v2 methods=probe,finetune,llrd,lora "
        "adabn_methods= sizes=1000` (torchvision's ImageNet weights, offline).\n\n"
        + accuracy_table(results)
        + "\n\n"
        + cost_table(results, "fashion-mnist")
        + "\n\n"
        + verdicts({"fashion-mnist": run})
        + "\n"
    )


def part_lora(store: RunStore, domains: list[str], lrs: list[float], archive: Path,
              overrides: list[str]) -> str:  # fmt: skip
    rows, shares = [], set()
    for domain in domains:
        if domain == "cifar10" and not archive.is_file():
            print(f"skipping cifar10: {archive} not found")
            continue
        with tempfile.TemporaryDirectory() as folder:
            data = [*domain_overrides(domain, folder, archive), "labelled=1000", "figures=false"]
            full = run_lab(LAB, [*data, "method=finetune", *overrides], store=store,
                           show_progress=True).summary["metrics"]  # fmt: skip
            cells = [f"{full['test_accuracy']:.1%}"]
            for lr in lrs:
                lora = run_lab(LAB, [*data, "method=lora", f"lora_lr={lr:g}", *overrides],
                               store=store, show_progress=True).summary["metrics"]  # fmt: skip
                gap = full["test_accuracy"] - lora["test_accuracy"]
                shares.add(f"{lora['trainable_share']:.2%}")
                cells.append(f"{lora['test_accuracy']:.1%} ({gap * 100:+.1f}) "
                             f"{'✓' if gap <= 0.01 else '✗'}")  # fmt: skip
        rows.append([domain, *cells])
    headers = ["domain", "full fine-tuning", *[f"LoRA, lora_lr={lr:g} (gap)" for lr in lrs]]
    return (
        f"`deepscape run {LAB} dataset=D labelled=1000 method=finetune`, then `method=lora "
        f"lora_lr=X` (rank 4 on the 1×1 convolutions, {', '.join(sorted(shares))} of the "
        "parameters trained; the adapters' LR is X × the head's 1e-3), every arm 200 steps "
        "from the same linear probe. In brackets: full fine-tuning minus LoRA, in points "
        "(target ≤ 1; digits: 360 test images, one image is 0.28 points).\n\n"
        + table(headers, rows)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["domains", "mobilenet"])
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--cifar-archive", type=Path, default=ARCHIVE)
    parser.add_argument("--lora-lrs", default="1,5", help="(lora) the lora_lr values compared")
    parser.add_argument("overrides", nargs="*", help="key=value options for every run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(Path(home))
        # each part owns its section of docs/benchmarks.md: one can be re-run alone
        if "domains" in args.parts:
            body = part_domains(store, args.domains, args.sizes, args.cifar_archive, args.overrides)
            # a subset of the domains gets a section of its own rather than replacing the rest
            chosen = [d for d in DOMAINS if d in args.domains]
            suffix = "" if chosen == list(DOMAINS) else "_" + "_".join(chosen)
            write_section(
                f"vision_201_advanced_transfer{suffix}",
                f"{LAB}: method × domain × labels ({', '.join(chosen)})",
                body,
            )
        if "mobilenet" in args.parts:
            write_section(
                "vision_201_advanced_transfer_mobilenet",
                f"{LAB}: MobileNetV2 on Fashion-MNIST",
                part_mobilenet(store, args.overrides),
            )
        if "lora" in args.parts:
            lrs = [float(x) for x in args.lora_lrs.split(",")]
            write_section(
                "vision_201_advanced_transfer_lora_lr",
                f"{LAB}: LoRA's learning rate against full fine-tuning",
                part_lora(store, args.domains, lrs, args.cifar_archive, args.overrides),
            )


if __name__ == "__main__":
    main()
