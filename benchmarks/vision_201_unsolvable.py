"""Benchmarks of vision/201/unsolvable; results go to docs/benchmarks.md (--no-write: print only).

    python benchmarks/vision_201_unsolvable.py                       # all, noise, cifar10
    python benchmarks/vision_201_unsolvable.py --parts all
    python benchmarks/vision_201_unsolvable.py --parts noise cifar10 --no-write memorise_epochs=5

(all) `deepscape run vision/201/unsolvable` with the lab's defaults: accuracy against ε under
    FGSM and PGD for the digits and objects10 models and the share of photos the ImageNet models
    still name right; random against true labels (target: random-label test accuracy ≤ 12 % with
    ≥ 99 % training accuracy on mnist-5k); the 3×3 table of digit styles and the corruption
    sweeps; coloured MNIST against grey digits.
(noise) part=memorisation with 0, 20, … 100 % of the labels replaced: held-out accuracy against
    label noise, and the epochs each took to fit its training images.
(cifar10) part=memorisation on 1,000 CIFAR-10 images (`../shared/data/cifar10-jpg.tar.gz`,
    unpacked to a temporary folder): the map's bar there is the same ≤ 12 %.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
from pathlib import Path

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "vision/201/unsolvable"
ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
NOISES = "label_noises=0,0.2,0.4,0.6,0.8,1"
FITTED, CHANCE_BAR = 0.99, 0.12


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def adversarial_section(run: Run) -> str:
    found = run.summary["adversarial"]
    epsilons, photo_epsilons = found["epsilons"], found["photo_epsilons_255"]
    rows = [[f"{name}, {attack.upper()}", *map(percent, values)]
            for name, curve in found["accuracy"].items()
            for attack, values in curve.items()]  # fmt: skip
    text = table(["test accuracy", *[f"ε={e:g}" for e in epsilons]], rows)
    photo_rows = [[f"{name}, {attack.upper()}", *map(percent, values)]
                  for name, curve in found["photos_named_right"].items()
                  for attack, values in curve.items()]  # fmt: skip
    if photo_rows:
        m = run.summary["metrics"]
        targeted = ", ".join(f"{name} {m[f'{name}_targeted_success']:.0%}"
                             for name in found["photos_named_right"])  # fmt: skip
        text += ("\n\nscikit-image's 6 photos of ImageNet classes, named right at top-1:\n\n"
                 + table(["photos named right", *[f"ε={e:g}/255" for e in photo_epsilons]],
                         photo_rows)
                 + f"\n\nTargeted PGD at ε={photo_epsilons[-1]:g}/255 reached "
                 f"'{run.config['photo_target']}' on: {targeted}.")  # fmt: skip
    for name, why in found["skipped"].items():
        text += f"\n\nSkipped {name}: {why}"
    return text


def memorisation_rows(run: Run) -> list[list[str]]:
    m, rows = run.summary["metrics"], []
    for named, label in (("true_label", "true labels"), ("random_label", "random labels")):
        if f"{named}_test_accuracy" in m:
            rows.append([label, percent(m[f"{named}_train_accuracy"]),
                         percent(m[f"{named}_test_accuracy"]),
                         str(m[f"{named}_epochs_to_fit"] or "not fitted")])  # fmt: skip
    return rows


def memorisation_verdict(run: Run, dataset: str) -> str:
    m = run.summary["metrics"]
    train, test = m["random_label_train_accuracy"], m["random_label_test_accuracy"]
    met = train >= FITTED and test <= CHANCE_BAR
    return (f"Random labels on {dataset}: training accuracy {train:.1%} (≥ 99 %), test accuracy "
            f"{test:.1%} (≤ 12 %): {'✓' if met else '✗'}")  # fmt: skip


def shift_section(run: Run) -> str:
    found = run.summary["shift"]
    tested = list(next(iter(found["table"].values())))
    rows = [[f"trained on {name}", *map(percent, row.values())]
            for name, row in found["table"].items()]  # fmt: skip
    text = table(["", *[f"tested on {t}" for t in tested]], rows)
    for sweep, levels in found["levels"].items():
        row = ["MNIST test accuracy", *map(percent, found["accuracy"][sweep])]
        text += "\n\n" + table([sweep, *[f"{level:g}" for level in levels]], [row])
    return text


def spurious_section(run: Run) -> str:
    m = run.summary["metrics"]
    rows = [
        ["CNN on coloured digits", percent(m["coloured_train_accuracy"]),
         percent(m["coloured_agreeing_test_accuracy"]), percent(m["coloured_test_accuracy"])],
        ["CNN on grey digits", percent(m["grey_train_accuracy"]),
         percent(m["grey_test_accuracy"]), percent(m["grey_test_accuracy"])],
    ]  # fmt: skip
    return (table(["", "training", "test, colours as in training", "test, colours at random"],
                  rows)
            + f"\n\nThe coloured CNN names the colour's digit on {m['colour_follow_rate']:.1%} "
            "of the test digits.")  # fmt: skip


MEMORISED = ["labels", "training accuracy", "test accuracy", "epochs to fit (≥ 99 %)"]


def part_all(store: RunStore, overrides: list[str]) -> str:
    run = run_lab(LAB, overrides, store=store, show_progress=True)
    config = run.config
    parts = [
        f"`deepscape run {' '.join([LAB, *overrides])}`: every model trained here, "
        f"{run.summary['wall_seconds'] / 60:.1f} minutes in all.",
        f"**Adversarial examples** (PGD: {config['pgd_steps']} steps; "
        f"{config['attack_images']} test images a model)",
        adversarial_section(run),
        f"**Memorisation** ({config['memorise_model']} of width {config['memorise_width']}, "
        f"{config['memorise_images']:,} {config['dataset']} images, "
        f"{config['memorise_epochs']} epochs)",
        table(MEMORISED, memorisation_rows(run)),
        memorisation_verdict(run, config["dataset"]),
        "**Distribution shift** (test accuracy)",
        shift_section(run),
        f"**Coloured MNIST** (colour agrees with the label for "
        f"{config['colour_agreement']:.0%} of the training digits)",
        spurious_section(run),
    ]
    return "\n\n".join(parts) + "\n"


def part_noise(store: RunStore, overrides: list[str]) -> str:
    items = ["part=memorisation", NOISES, *overrides]
    run = run_lab(LAB, items, store=store, show_progress=True)
    m = run.summary["metrics"]
    noises = [float(n) for n in NOISES.partition("=")[2].split(",")]
    trained = {r.config["label_noise"]: r.summary["metrics"]
               for r in store.list(lab=LAB, where={"part": "train"})}  # fmt: skip
    rows = [[f"{n:.0%}", percent(trained[n]["train_accuracy"]),
             percent(m[f"noise_{round(100 * n)}_test_accuracy"]),
             str(trained[n]["epochs_to_fit"] or "not fitted")] for n in noises]  # fmt: skip
    headers = ["labels replaced", "training accuracy (labels given)", "test accuracy",
               "epochs to fit (≥ 99 %)"]  # fmt: skip
    return f"`deepscape run {LAB} {' '.join(items)}`\n\n{table(headers, rows)}\n"


def part_cifar10(store: RunStore, archive: Path, overrides: list[str]) -> str:
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(archive) as packed:
            packed.extractall(folder, filter="data")
        images = Path(folder) / "cifar10-images"  # the archive's own folder
        items = ["part=memorisation", "dataset=cifar10", f"data_dir={images}", *overrides]
        run = run_lab(LAB, items, store=store, show_progress=True)
    rows = table(MEMORISED, memorisation_rows(run))
    verdict = memorisation_verdict(run, "CIFAR-10")
    return f"`deepscape run {LAB} {' '.join(items)}`\n\n{rows}\n\n{verdict}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["all", "noise", "cifar10"])
    parser.add_argument("--cifar-archive", type=Path, default=ARCHIVE)
    parser.add_argument("--no-write", action="store_true", help="print, leave docs/ as it is")
    parser.add_argument("overrides", nargs="*", help="key=value options for every run")
    args = parser.parse_args()

    def report(name: str, title: str, body: str) -> None:
        if args.no_write:
            print(f"## {title}\n\n{body}")
        else:
            write_section(name, title, body)

    with tempfile.TemporaryDirectory() as home:
        if "all" in args.parts:
            report("vision_201_unsolvable", f"{LAB}: four failures measured",
                   part_all(RunStore(Path(home) / "all"), args.overrides))  # fmt: skip
        if "noise" in args.parts:
            report("vision_201_unsolvable_noise", f"{LAB}: held-out accuracy against label noise",
                   part_noise(RunStore(Path(home) / "noise"), args.overrides))  # fmt: skip
        if "cifar10" in args.parts and not args.cifar_archive.is_file():
            print(f"skipping cifar10: {args.cifar_archive} not found")
        elif "cifar10" in args.parts:
            report("vision_201_unsolvable_cifar10", f"{LAB}: random labels on CIFAR-10",
                   part_cifar10(RunStore(Path(home) / "cifar10"), args.cifar_archive,
                                args.overrides))  # fmt: skip


if __name__ == "__main__":
    main()
