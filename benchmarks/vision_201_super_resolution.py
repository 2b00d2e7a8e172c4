"""Benchmarks of vision/201/super-resolution; results go to docs/benchmarks.md.

    python benchmarks/vision_201_super_resolution.py                    # target, then ladder
    python benchmarks/vision_201_super_resolution.py --parts target --threads 2

Both train on the 80 photos of Sun & Hays (../shared/data/sr/Sun_Hays80, 2 held out for
validation) and test on Set5 and Set14 at ×3, bicubic measured on the same images in the same run
(PSNR and SSIM on the Y channel, 3 pixels of border cut, as the published tables).
(target) the small EDSR with TARGET_SETTINGS, the map's check: Set5 ≥ bicubic + 2.0 dB and Set14 ≥
    bicubic + 1.0 dB after ≤ 15 minutes of training on 2 CPU cores.
(ladder) method=ladder: srcnn, espcn and edsr, each with the lab's default budget.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.runs import RunStore

LAB = "vision/201/super-resolution"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sr"
TARGET_SETTINGS = ["blocks=6", "patch_size=72", "patches=16000", "epochs=10"]
PUBLISHED = (
    "published ×3 (Set5 / Set14): bicubic 30.39 / 27.54, SRCNN 32.39 / 29.00, ESPCN 32.55 / 29.08"
)


def row(name: str, metrics: dict, *, prefix: str = "") -> list[str]:
    def cell(test: str) -> str:
        psnr, ssim = metrics[f"{prefix}{test}_psnr_db"], metrics[f"{prefix}{test}_ssim"]
        if name == "bicubic":
            return f"{psnr:.2f} dB / {ssim:.4f}"
        return f"{psnr:.2f} dB / {ssim:.4f} ({metrics[f'{prefix}{test}_psnr_gain_db']:+.2f})"

    if name == "bicubic":
        return [name, cell("set5"), cell("set14"), "—", "—"]
    minutes = metrics[f"{prefix}train_seconds"] / 60
    return [name, cell("set5"), cell("set14"), f"{metrics[f'{prefix}parameters']:,}",
            f"{minutes:.1f} min"]  # fmt: skip


def bicubic_row(metrics: dict) -> list[str]:
    plain = {f"{test}_{key}": metrics[f"{test}_bicubic_{key}"]
             for test in ("set5", "set14") for key in ("psnr_db", "ssim")}  # fmt: skip
    return row("bicubic", plain)


HEADERS = ["method", "Set5 PSNR / SSIM (gain)", "Set14 PSNR / SSIM (gain)", "parameters",
           "training"]  # fmt: skip


def part_target(store: RunStore, threads: int) -> str:
    overrides = [f"data_dir={DATA}", "dataset=set5", *TARGET_SETTINGS, f"threads={threads}"]
    run = run_lab(LAB, overrides, store=store, show_progress=True)
    metrics = run.summary["metrics"]
    minutes = metrics["train_seconds"] / 60
    set5, set14 = metrics["set5_psnr_gain_db"], metrics["set14_psnr_gain_db"]
    verdict = "✓" if set5 >= 2.0 and set14 >= 1.0 and minutes <= 15 else "✗"
    return (
        f"`deepscape run {LAB} data_dir=../shared/data/sr dataset=set5 "
        f"{' '.join(TARGET_SETTINGS)} threads={threads}`\n\n"
        + table(HEADERS, [bicubic_row(metrics), row("edsr", metrics)])
        + f"\n\n**×3: {set5:+.2f} dB over bicubic on Set5, {set14:+.2f} dB on Set14, after "
        f"{minutes:.1f} minutes of training** (target +2.0 / +1.0 dB within 15 minutes: "
        f"{verdict}). Whole run {run.summary['wall_seconds'] / 60:.1f} min; {PUBLISHED}.\n"
    )


def part_ladder(store: RunStore, threads: int) -> str:
    overrides = [f"data_dir={DATA}", "dataset=set5", "method=ladder", f"threads={threads}"]
    run = run_lab(LAB, overrides, store=store, show_progress=True)
    metrics = run.summary["metrics"]
    rows = [bicubic_row(metrics)]
    rows += [row(m, metrics, prefix=f"{m}_") for m in ("srcnn", "espcn", "edsr")
             if f"{m}_set5_psnr_db" in metrics]  # fmt: skip
    return (
        f"`deepscape run {LAB} data_dir=../shared/data/sr dataset=set5 method=ladder "
        f"threads={threads}`: each rung the lab's default budget "
        f"({run.summary['wall_seconds'] / 60:.0f} minutes in all).\n\n"
        + table(HEADERS, rows)
        + f"\n\n{PUBLISHED}.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["target", "ladder"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: it holds Sun_Hays80/, Set5/ and Set14/")
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(Path(home))
        if "target" in args.parts:
            body = part_target(store, args.threads)
            write_section("vision_201_super_resolution_target", f"{LAB} ×3, the target", body)
        if "ladder" in args.parts:
            body = part_ladder(store, args.threads)
            write_section("vision_201_super_resolution_ladder", f"{LAB} ×3, the ladder", body)


if __name__ == "__main__":
    main()
