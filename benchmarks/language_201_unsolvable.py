"""Benchmark of language/201/unsolvable; results go to docs/benchmarks.md.

    python benchmarks/language_201_unsolvable.py                 # the default, then LARGER
    python benchmarks/language_201_unsolvable.py threads=1       # as measured: 9 + 12 min
    python benchmarks/language_201_unsolvable.py max_steps=20 llm_questions=10 sentences=20 \\
        --no-write                                               # prove it works

Two runs of `deepscape run language/201/unsolvable`, each timed: the default (offline: MR-200's
200 sentences for the calibration) and LARGER (300 facts, longer training, 200 test sums a
length, and the first 600 of SST-2's test sentences from ../shared/data/sentclf for the
calibration). Each failure with its number: counting letters (GPT on characters vs on BPE vs
SmolLM2, on held-out words), the reversal curse (forward vs reverse recall), addition by length
(trained on 1–5 digits) and SmolLM2's expected calibration error. Target: the reversal curse,
≥ 95 % forward while ≤ 5 % reverse.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _report import as_typed, table, with_overrides, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "language/201/unsolvable"
SENTCLF = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentclf"
LARGER = ["parts=reversal,addition,calibration", "facts=300", "reversal_steps=1500",
          "addition_steps=3000", "test_sums=200", "calibration_dataset=sst2",
          f"data_dir={SENTCLF}", "sentences=600"]  # fmt: skip


def percent(value: float | None, decimals: int = 1) -> str:
    return "–" if value is None else f"{value:.{decimals}%}"


def report(run: Run, items: list[str], seconds: float, load: tuple[float, float]) -> str:
    m = run.summary["metrics"]
    config = run.config
    rows = []
    if "counting_char_held_out" in m:
        rows += [
            ["counting: GPT on characters, held-out words", percent(m["counting_char_held_out"]),
             f"seen words {percent(m['counting_char_seen'])}"],
            ["counting: GPT on BPE tokens, held-out words", percent(m["counting_bpe_held_out"]),
             f"seen words {percent(m['counting_bpe_seen'])}"],
            ["counting: always the commonest count", percent(m["counting_majority"]), ""],
        ]  # fmt: skip
        if "counting_llm_held_out" in m:
            speed = run.summary["counting_llm"]
            rows.append([f"counting: {speed['model']} asked ({config['llm_questions']} questions)",
                         percent(m["counting_llm_held_out"]),
                         f"{speed['precision']}, {speed['threads']} threads, "
                         f"{speed['tokens_per_s']:.0f} tokens/s"])  # fmt: skip
    if "forward_accuracy" in m:
        rows += [
            [f"reversal: 'A is' → B ({config['facts']} facts)", percent(m["forward_accuracy"]),
             f"likeliest of all: {percent(m['forward_choice_accuracy'])}"],
            ["reversal: 'B is' → A, trained one way", percent(m["reverse_accuracy"]),
             f"likeliest of all: {percent(m['reverse_choice_accuracy'], 2)} "
             f"(chance {percent(m['choice_chance'], 2)})"],  # 1.25 % is not 1.2 % or 1.3 %
            ["reversal: 'B is' → A, trained both ways", percent(m["reverse_both_ways_accuracy"]),
             "the control"],
        ]  # fmt: skip
    if "addition_in_length_accuracy" in m:
        lengths = [int(k.rsplit("_", 1)[1]) for k in m if k.startswith("addition_digits_")]
        rows += [[f"addition: {n} digits", percent(m[f"addition_digits_{n}"]),
                  "trained" if n <= config["train_digits"] else "longer than trained"]
                 for n in sorted(lengths)]  # fmt: skip
    if "calibration_ece" in m:
        found = run.summary["calibration"]
        speed = found["llm"]
        rows.append([f"calibration: {speed['model']} zero-shot on {found['dataset']} "
                     f"({speed['prompts']} sentences)", f"ECE {m['calibration_ece']:.3f}",
                     f"accuracy {percent(m['calibration_accuracy'])}, mean confidence "
                     f"{percent(m['calibration_confidence'])}; {speed['precision']}, "
                     f"{speed['threads']} threads, {speed['tokens_per_s']:.0f} tok/s"])  # fmt: skip
    verdict = ""
    if "forward_accuracy" in m:
        held = m["forward_accuracy"] >= 0.95 and m["reverse_accuracy"] <= 0.05
        verdict = (
            f"\n\n- the reversal curse: forward {percent(m['forward_accuracy'])} (≥ 95 %), "
            f"reverse {percent(m['reverse_accuracy'])} (≤ 5 %) {'✓' if held else '✗'}"
        )
    command = " ".join(items) if items else "(the default)"
    # the machine may be shared: its load says how far the time is the lab's own
    busy = (
        f" Load average (1 min) {load[0]:.1f} before, {load[1]:.1f} after, on "
        f"{os.cpu_count()} cores."
    )
    return (f"`deepscape run {LAB} {command}`: {seconds / 60:.1f} min in all.{busy}\n\n"
            + table(["measured", "value", "beside it"], rows) + verdict + "\n")  # fmt: skip


def timed(items: list[str], home: Path) -> tuple[Run, float, tuple[float, float]]:
    """The finished run, its seconds, and the machine's load (1 min) before and after it."""
    before = os.getloadavg()[0]
    started = time.perf_counter()
    run = run_lab(LAB, items, store=RunStore(home), show_progress=True)
    return run, time.perf_counter() - started, (before, os.getloadavg()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("overrides", nargs="*", help="key=value options for both runs")
    args = parser.parse_args()
    bodies = []
    with tempfile.TemporaryDirectory() as home:
        for name, items in (("the default", args.overrides),
                            ("larger", with_overrides(LARGER, args.overrides))):  # fmt: skip
            run, seconds, load = timed(items, Path(home) / name)
            bodies.append(f"### {name}\n\n" + report(run, items, seconds, load))
            body = "\n".join(bodies)  # written after each run: a run cut short keeps the first
            if args.no_write:
                print(as_typed(body))
            else:
                write_section("language_201_unsolvable", f"{LAB}: what small LMs cannot do", body)


if __name__ == "__main__":
    main()
