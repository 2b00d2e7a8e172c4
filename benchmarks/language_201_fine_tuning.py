"""Benchmark of language/201/fine-tuning; results go to docs/benchmarks.md, one section a part.

    python benchmarks/language_201_fine_tuning.py sst2       # the target: LoRA on SST-2, 2 cores
    python benchmarks/language_201_fine_tuning.py babi       # bAbI task 1, zero-shot vs LoRA
    python benchmarks/language_201_fine_tuning.py compare    # the four ways at equal steps (MR)
    python benchmarks/language_201_fine_tuning.py sst2 max_steps=5 max_test=50 --no-write

Each part is one `deepscape run language/201/fine-tuning …` on SmolLM2-135M-Instruct (its GGUF
de-quantised to float32), on the cores the command gives it (`threads=`). The table gives, for
each way: the test score, trainable parameters, steps, seconds per step, training tokens/s (prompt
and answer tokens read, padding not counted), the memory training's tensors need at the peak
(weights + gradients + AdamW's moments + activations kept for backward, counted from the tensors),
the test pass's prompt tokens/s, and perplexity on gensim's Lee news text before and after
(forgetting). Run a part alone (`flock -x`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _report import as_typed, table, with_overrides, write_section

from deepscape.lab import run_lab
from deepscape.runs import Run, RunStore

LAB = "language/201/fine-tuning"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# the target: 23 minutes of LoRA training (the LR schedule follows the clock), then the test
# pass, all within 30 minutes on 2 cores
PARTS = {
    "sst2": (
        "the target: LoRA on SST-2",
        ["dataset=sst2", f"data_dir={DATA}/sentclf", "methods=lora", "max_steps=5000",
         "seconds=1380", "batch_size=16", "threads=2"],
    ),
    "babi": (
        "bAbI task 1, exact match",
        ["dataset=babi-qa1", f"data_dir={DATA}", "methods=zero-shot,few-shot,lora",
         "max_steps=200", "batch_size=8", "max_test=300", "threads=2"],
    ),
    "compare": (
        "four ways at equal steps",
        ["dataset=sst2", f"data_dir={DATA}/sentclf", "max_steps=100", "batch_size=8",
         "max_test=500", "threads=2"],
    ),
}  # fmt: skip
TARGET = 0.88
BABI_TARGET = 0.90  # the bar for the generative task after fine-tuning


def report(run: Run, items: list[str]) -> str:
    summary, metrics = run.summary, run.summary["metrics"]
    llm, data = summary["llm"], summary["data"]
    generative = "test_exact_match" in metrics
    name = "exact_match" if generative else "accuracy"
    before = summary.get("perplexity_before")
    rows = []
    for method, r in summary["methods"].items():
        trained = "trainable_parameters" in r
        rows.append([
            method, f"{r[name]:.1%}",
            f"{r['trainable_parameters']:,} ({r['trainable_fraction']:.2%})" if trained else "0",
            f"{r['steps']:,}" if trained else "–",
            f"{r['seconds_per_step']:.2f}" if trained else "–",
            f"{r['train_tokens_per_second']:,.0f}" if trained else "–",
            f"{r['peak_memory_mb']:,.0f}" if trained else "–",
            f"{r['eval_tokens_per_second']:,.0f}",
            f"{r['perplexity']:.2f}" if "perplexity" in r else (f"{before:.2f}" if before else "–"),
        ])  # fmt: skip
    headers = ["way", f"test {name.replace('_', ' ')}", "trainable parameters", "steps",
               "s/step", "train tokens/s", "training memory MB", "test tokens/s",
               "perplexity (Lee news)"]  # fmt: skip
    lines = [
        f"`deepscape run {LAB} {' '.join(items)}`: {data['train']:,} training, "
        f"{data['test']:,} test examples. Model {llm['name']} ({llm['source'].split('/')[-1]}), "
        f"{llm['precision']}, {llm['threads']} thread{'s' if llm['threads'] > 1 else ''}; "
        f"wall time {summary['wall_seconds']:.0f} s.",
        "",
        table(headers, rows),
        "",
    ]
    if "lora" in summary["methods"] and "dataset=sst2" in items and "methods=lora" in items:
        accuracy = metrics["test_accuracy"]
        met = "✓" if accuracy >= TARGET and summary["wall_seconds"] <= 1800 else "✗"
        lines.append(f"- LoRA: {accuracy:.1%} test accuracy in {summary['wall_seconds'] / 60:.1f} "
                     f"minutes (target ≥ {TARGET:.0%} within 30) {met}")  # fmt: skip
    if "lora" in summary["methods"] and generative:
        lora, zero = summary["methods"]["lora"], summary["methods"].get("zero-shot")
        met = "✓" if lora["exact_match"] >= BABI_TARGET else "✗"
        beside = f", zero-shot {zero['exact_match']:.1%}" if zero else ""
        lines.append(f"- LoRA: {lora['exact_match']:.1%} exact match (target ≥ "
                     f"{BABI_TARGET:.0%}) {met}{beside}")  # fmt: skip
    if before is not None:
        after = ", ".join(f"{m} {r['perplexity']:.2f}" for m, r in summary["methods"].items()
                          if "perplexity" in r)  # fmt: skip
        lines.append(f"- forgetting: perplexity on Lee news {before:.2f} before; after {after}")
    if "lora_minus_full_accuracy" in metrics:
        gap, share = metrics["lora_minus_full_accuracy"], summary["methods"]["lora"]
        met = "✓" if gap >= -0.01 and share["trainable_fraction"] <= 0.02 else "✗"
        lines.append(f"- LoRA − full fine-tuning: {gap:+.1%} at the same steps, with "
                     f"{share['trainable_fraction']:.2%} of the weights trainable (target: "
                     f"within 1 point, ≤ 2 %) {met}")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(PARTS), help="which measurement")
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("--home", help="keep the run in this folder (default: a scratch one)")
    parser.add_argument("overrides", nargs="*", help="key=value options after the part's")
    args = parser.parse_args()
    title, full = PARTS[args.part]
    with tempfile.TemporaryDirectory() as scratch:
        items = with_overrides(full, args.overrides)
        store = RunStore(Path(args.home or scratch))
        run = run_lab(LAB, items, store=store, show_progress=True)
        body = report(run, items)
    if args.no_write:
        print(as_typed(body))
    else:
        write_section(f"language_201_fine_tuning_{args.part}", f"{LAB}: {title}", body)


if __name__ == "__main__":
    main()
