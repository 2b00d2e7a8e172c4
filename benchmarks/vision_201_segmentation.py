"""Benchmarks of vision/201/segmentation; results go to docs/benchmarks.md.

    python benchmarks/vision_201_segmentation.py                     # scenes, isbi
    python benchmarks/vision_201_segmentation.py --parts isbi
    python benchmarks/vision_201_segmentation.py --parts scenes --encoders scratch

(scenes) `deepscape run vision/201/segmentation` with the lab's defaults (the built scenes), the
    U-Net from scratch and on EfficientNet-Lite0: mIoU, Dice, pixel accuracy, IoU per class and
    training time, with Otsu's threshold + morphology on the same test split. Target: mIoU ≥ 0.85
    within 15 minutes on 2 cores.
(isbi) The ISBI 2012 membrane stack (`../shared/data/isbi-membrane`; images 24–29 held out for
    test) with ISBI_SETTINGS: membrane IoU of the U-Net against Otsu + morphology, pixel
    accuracy. Targets: the U-Net's membrane IoU ≥ the baseline's + 0.15, pixel accuracy ≥ 0.92,
    within 15 minutes.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "vision/201/segmentation"
ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi-membrane"
ISBI_SETTINGS = ["crop=256", "batch_size=4", "max_steps=600", "eval_every=100"]
MINUTES = 15


def row(name: str, run: Run, classes: list[str]) -> list[str]:
    m = run.summary["metrics"]
    return [
        name,
        f"{m['test_miou']:.3f}",
        f"{m['test_dice']:.3f}",
        f"{m['test_pixel_accuracy']:.2%}",
        *[f"{m[f'test_iou_{c}']:.3f}" for c in classes],
        f"{m['test_object_iou']:.3f}",
        f"{m['train_seconds'] / 60:.1f} min",
    ]


def part_scenes(store: RunStore, encoders: list[str], overrides: list[str]) -> str:
    runs = {e: run_lab(LAB, [f"encoder={e}", *overrides], store=store, show_progress=True)
            for e in encoders}  # fmt: skip
    first = next(iter(runs.values()))
    classes = first.summary["data"]["classes"]
    baseline = first.summary["metrics"]
    headers = ["model", "mIoU", "Dice", "pixel accuracy", *[f"IoU {c}" for c in classes],
               "object IoU", "training"]  # fmt: skip
    rows = [row(f"U-Net, {e} encoder", run, classes) for e, run in runs.items()]
    rows.append([f"Otsu + morphology ({first.summary['baseline']})", "–", "–",
                 f"{baseline['baseline_pixel_accuracy']:.2%} (object vs background)",
                 *["–"] * len(classes), f"{baseline['baseline_object_iou']:.3f}", "0"])  # fmt: skip
    verdicts = []
    for e, run in runs.items():
        m = run.summary["metrics"]
        met = m["test_miou"] >= 0.85 and m["train_seconds"] <= MINUTES * 60
        verdicts.append(f"- {e}: mIoU {m['test_miou']:.3f} in {m['train_seconds'] / 60:.1f} min "
                        f"(target ≥ 0.85 in ≤ {MINUTES} min) {'✓' if met else '✗'}")  # fmt: skip
    data = first.summary["data"]
    return (
        f"`deepscape run {LAB} encoder=E` (the built scenes: {data['train']:,} training, "
        f"{data['test']:,} test scenes of 64², Fashion-MNIST items on scikit-image's textures; "
        f"{first.config['epochs']} epochs of batch {first.config['batch_size']}). Object IoU: "
        "any item against the background, what a threshold can be compared on.\n\n"
        + table(headers, rows)
        + "\n\n"
        + "\n".join(verdicts)
        + "\n"
    )


def part_isbi(store: RunStore, overrides: list[str]) -> str:
    if not ISBI.is_dir():
        return f"Skipped: {ISBI} not found."
    items = ["dataset=isbi-membrane", f"data_dir={ISBI}", *ISBI_SETTINGS, *overrides]
    run = run_lab(LAB, items, store=store, show_progress=True)
    m = run.summary["metrics"]
    lead = m["test_iou_membrane"] - m["baseline_object_iou"]
    minutes = m["train_seconds"] / 60
    rows = [
        ["U-Net, scratch encoder", f"{m['test_iou_membrane']:.3f}", f"{m['test_iou_cell']:.3f}",
         f"{m['test_pixel_accuracy']:.2%}", f"{minutes:.1f} min"],
        [f"Otsu + morphology ({run.summary['baseline']})", f"{m['baseline_object_iou']:.3f}",
         f"{m['baseline_background_iou']:.3f}", f"{m['baseline_pixel_accuracy']:.2%}", "0"],
    ]  # fmt: skip
    met_lead = "✓" if lead >= 0.15 else "✗"
    met_accuracy = "✓" if m["test_pixel_accuracy"] >= 0.92 else "✗"
    met_time = "✓" if minutes <= MINUTES else "✗"
    return (
        f"`deepscape run {LAB} dataset=isbi-membrane data_dir=../shared/data/isbi-membrane "
        f"{' '.join(ISBI_SETTINGS)}`: 21 training images (random 256² crops), 3 for validation, "
        "images 24–29 for test (whole 512² images).\n\n"
        + table(["model", "IoU membrane", "IoU cell", "pixel accuracy", "training"], rows)
        + f"\n\n- membrane IoU over the baseline: {lead:+.3f} (target ≥ +0.15) {met_lead}\n"
        f"- pixel accuracy {m['test_pixel_accuracy']:.2%} (target ≥ 92 %) {met_accuracy}\n"
        f"- training {minutes:.1f} min (target ≤ {MINUTES}) {met_time}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["scenes", "isbi"])
    parser.add_argument("--encoders", nargs="+", default=["scratch", "efficientnet-lite0"])
    parser.add_argument("overrides", nargs="*", help="key=value options for every run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(Path(home))
        if "scenes" in args.parts:
            write_section("vision_201_segmentation_scenes", f"{LAB}: the built scenes",
                          part_scenes(store, args.encoders, args.overrides))  # fmt: skip
        if "isbi" in args.parts:
            write_section("vision_201_segmentation_isbi", f"{LAB}: ISBI 2012 membranes",
                          part_isbi(store, args.overrides))  # fmt: skip


if __name__ == "__main__":
    main()
