"""Benchmark of language/201/text-cnn on SST-2 phrases; results go to docs/benchmarks.md.

    python benchmarks/language_201_text_cnn.py                         # 150 s each, all four
    python benchmarks/language_201_text_cnn.py seconds=5 --no-write    # prove it works
    python benchmarks/language_201_text_cnn.py models=char-cnn,dilated-cnn,transformer

`deepscape run language/201/text-cnn dataset=sst2-phrases data_dir=../shared/data seconds=150`:
the character CNN, the dilated word CNN, the transformer encoder and language/101's Kim CNN,
each trained for the same 150 seconds on SST-2's 67,349 training phrases (GLUE), validated on the
872 dev sentences and tested on the 1,821 test sentences. Two tables: speed and accuracy (test
accuracy, within and beyond each receptive field, training examples/s, inference sentences/s),
and accuracy by sentence length. Target: the contestant best on validation ≥ 84 % test accuracy.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _report import as_typed, table, with_overrides, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "language/201/text-cnn"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FULL = ["dataset=sst2-phrases", f"data_dir={DATA}", "seconds=150"]
TARGET = 0.84


def field_text(field: dict) -> str:
    if field["computed"] is None:
        return "whole sentence"
    words = "" if field["unit"] == "words" else f" (≈ {field['in_words']:.0f} words)"
    return f"{field['computed']} {field['unit']}{words}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def report(run: Run, items: list[str]) -> str:
    store = RunStore(run.dir.parent)
    contestants = {name: store.get(i) for name, i in run.summary["contestants"].items()}
    speed_rows, length_rows = [], []
    for name, child in contestants.items():
        m, field = child.summary["metrics"], child.summary["receptive_field"]
        speed_rows.append([
            name, percent(m["test_accuracy"]), field_text(field),
            f"{percent(m.get('within_field_accuracy'))} ({m['within_field_share']:.0%})",
            percent(m.get("beyond_field_accuracy")), f"{m['parameters']:,}", f"{m['steps']:,}",
            f"{m['train_seconds']:.0f}", f"{m['train_examples_per_s']:,.0f}",
            f"{m['test_sentences_per_s']:,.0f}",
        ])  # fmt: skip
        length_rows.append([name, *(percent(r["accuracy"]) for r in child.summary["by_length"])])
    buckets = next(iter(contestants.values())).summary["by_length"]
    best = run.summary["best_model"]
    accuracy = run.summary["metrics"]["test_accuracy"]
    met = "✓" if accuracy >= TARGET else "✗"
    data = next(iter(contestants.values())).summary["data"]
    speed_headers = ["model", "test accuracy", "receptive field", "within field (share)",
                     "beyond field", "parameters", "steps", "training s", "train examples/s",
                     "inference sentences/s"]  # fmt: skip
    length_headers = ["model", *(f"{b['words']} words ({b['sentences']})" for b in buckets)]
    return (
        f"`deepscape run {LAB} {' '.join(items)}`: {data['train']:,} training, "
        f"{data['validation']:,} validation, {data['test']:,} test sentences; each contestant "
        f"trained for the same {run.config['seconds']:g} s (its steps timed on this machine "
        "first), inference in batches of 256.\n\n"
        + table(speed_headers, speed_rows)
        + "\n\nTest accuracy by sentence length (test sentences in each bucket):\n\n"
        + table(length_headers, length_rows)
        + f"\n\n- best on validation: {best}, {accuracy:.1%} test accuracy "
        f"(target ≥ {TARGET:.0%}) {met}\n"
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
        write_section("language_201_text_cnn", f"{LAB}: convolution and attention at equal time",
                      body)  # fmt: skip


if __name__ == "__main__":
    main()
