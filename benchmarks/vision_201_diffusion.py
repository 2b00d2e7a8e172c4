"""Benchmark of vision/201/diffusion; results go to docs/benchmarks.md.

    python benchmarks/vision_201_diffusion.py                    # the full-scale run on MNIST
    python benchmarks/vision_201_diffusion.py max_steps=20 --no-write   # prove it works

`deepscape run vision/201/diffusion` with FULL (full MNIST from ../shared/data/mnist; a judge
trained first as a vision/101/digits run): every sampler × guidance scale with the judge's accuracy
on the class asked for, the FID on its penultimate features and the seconds per image, beside the
real-vs-real FID floors. Targets: at w = 2, ≥ 95 % of DDIM-50's digits judged the class asked
for, DDIM-50 within 2 points of DDPM-1000 on the same starting noise, within 20 minutes of
training on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _report import as_typed, table, with_overrides, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "vision/201/diffusion"
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
FULL = ["dataset=mnist", f"data_dir={MNIST}", "channels=16,32,32", "max_steps=2000",
        "batch_size=128", "eval_every=500", "samples=200", "reference_samples=50",
        "judge_steps=860"]  # fmt: skip
MINUTES = 20


def report(run: Run, items: list[str]) -> str:
    m, sampling = run.summary["metrics"], run.summary["sampling"]
    rows = [[r["sampler"], f"{r['guidance']:g}", f"{r['images']:,}", f"{r['accuracy']:.1%}",
             f"{r['fid']:.2f}", f"{r['seconds_per_image'] * 1000:.0f} ms"]
            for r in sampling["table"]]  # fmt: skip
    floors = sampling["fid_floors"]
    rows.append(["real test digits, two halves", "–", "–", "–", f"{floors['halves']:.2f}", "–"])
    rows.append([f"{sampling['samples']:,} real training digits", "–", "–", "–",
                 f"{floors['same_size']:.2f}", "–"])  # fmt: skip
    config = run.config
    shown, main = config["shown_guidance"], config["samplers"][-1]
    gap = m.get(f"gap_to_reference_{main.replace('-', '')}")
    minutes = m["train_seconds"] / 60
    verdicts = [
        f"- {main} at w = {shown:g}: {m['class_accuracy']:.1%} judged the class asked for "
        f"(target ≥ 95 %) {'✓' if m['class_accuracy'] >= 0.95 else '✗'}",
        f"- training {minutes:.1f} min (target ≤ {MINUTES}) {'✓' if minutes <= MINUTES else '✗'}",
    ]
    if gap is not None:
        verdicts.insert(1, f"- {config['reference']} − {main} on the same "
                        f"{sampling['reference_samples']} starts: {gap * 100:+.1f} points "
                        f"(target within 2) {'✓' if abs(gap) <= 0.02 else '✗'}")  # fmt: skip
    return (
        f"`deepscape run {LAB} {' '.join(items)}`: a U-Net of "
        f"{run.summary['costs']['parameters']:,} parameters, {config['max_steps']:,} steps of "
        f"{config['batch_size']}; judged by run {run.summary['judge']['run']} (vision/101/digits' "
        f"CNN, test accuracy {m['judge_test_accuracy']:.2%}); FID on its penultimate features "
        "against the test split.\n\n"
        + table(["sampler", "guidance w", "images", "judged right", "FID", "per image"], rows)
        + "\n\n"
        + "\n".join(verdicts)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("overrides", nargs="*", help="key=value options after FULL's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        items = with_overrides(FULL, args.overrides)
        run = run_lab(LAB, items, store=RunStore(Path(home)), show_progress=True)
        body = report(run, items)
    if args.no_write:
        print(as_typed(body))
    else:
        write_section("vision_201_diffusion", f"{LAB}: DDPM on MNIST, judged", body)


if __name__ == "__main__":
    main()
