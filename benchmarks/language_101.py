"""Benchmarks of language 101's targets; results go to docs/benchmarks.md.

    python benchmarks/language_101.py                           # every part
    python benchmarks/language_101.py --parts cnn experiments   # some of them

Parts (each writes its own section):
  words        language/101/word-meaning on ~1.5 M words of the sentence-classification files:
               our skip-gram against gensim's Word2Vec, same stream and wall-clock budget —
               WordSim-353 ρ within 0.05 of gensim's, and both throughputs (words/s).
  cnn          language/101/sentence-cnn on SST-2, MR and TREC: test accuracy (≥ 85 %, 79 %,
               90 %) and training time (≤ 5 minutes on 2 CPU cores).
  phrases      language/101/sentence-cnn trained on SST-2's phrases: ≥ 86 % test in ≤ 10 minutes.
  transfer     language/101/transfer on SST-2: MiniLM frozen and fine-tuned against the CNN from
               scratch over 50 … all labels (≥ +10 points with ≤ 200), and the zero-shot LLM.
  experiments  language/101/experiments on SST-2: the tuned CNN against the default.

The data is `../shared/data/sentclf` (SST-2, MR, TREC in the files of Kim (2014)), which exists
only beside this repository; the benchmark refuses to run without it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.runs import RunStore

SENTCLF = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentclf"
BARS = {"sst2": 0.85, "mr": 0.79, "trec": 0.90}
# each embedding with its recipe: MiniLM's big table is fine-tuned gently, 50-d GloVe at full LR
CNN_EMBEDDINGS = {"glove-tuned": [], "glove+minilm": ["embedding_lr=0.3"]}
CNN_SEEDS = (0, 1, 2)
SHARED = SENTCLF.parent  # sst2-phrases/ beside sentclf/
PHRASES_BAR = 0.86
PHRASE_RECIPES = ([], ["embeddings=glove+minilm", "embedding_lr=0.3", "epochs=2"])


def lab(store: RunStore, name: str, overrides: list[str]):
    run = run_lab(name, overrides, store=store, show_progress=True)
    if run.status != "finished":
        sys.exit(f"{name} {run.status}: {run.summary.get('error')}")
    return run


def part_words(store: RunStore) -> str:
    overrides = ["corpus=file", f"data_dir={SENTCLF}", "strip_labels=true"]
    run = lab(store, "language/101/word-meaning", overrides)
    m = run.summary["metrics"]
    gap = m["wordsim353_gap_to_gensim"]
    rows = [
        [
            "deepscape skip-gram",
            f"{m['wordsim353']:.3f}",
            f"{m['simlex999']:.3f}",
            f"{m['analogy_accuracy']:.1%}",
            f"{m['words_per_second']:,.0f}",
        ],
        [
            "gensim Word2Vec (peer)",
            f"{m['gensim_wordsim353']:.3f}",
            f"{m['gensim_simlex999']:.3f}",
            f"{m['gensim_analogy_accuracy']:.1%}",
            f"{m['gensim_words_per_second']:,.0f}",
        ],
        [
            "GloVe 6B-50d (pretrained)",
            f"{m['glove_wordsim353']:.3f}",
            f"{m['glove_simlex999']:.3f}",
            f"{m['glove_analogy_accuracy']:.1%}",
            "—",
        ],
    ]
    return (
        f"`deepscape run language/101/word-meaning {' '.join(overrides)}` — "
        f"{run.summary.get('corpus', {}).get('words', 0):,} words; "
        f"{run.summary['wall_seconds'] / 60:.1f} minutes in all.\n\n"
        + table(["vectors", "WordSim-353 ρ", "SimLex-999 ρ", "analogies", "words/s"], rows)
        + f"\n\n**WordSim-353 gap to gensim: {gap:+.3f}** (target ≤ 0.05: "
        f"{'✓' if gap <= 0.05 else '✗'}); throughput ours / gensim's: "
        f"{m['words_per_second'] / m['gensim_words_per_second']:.2f}×.\n"
    )


def part_cnn(store: RunStore) -> str:
    rows = []
    for dataset, bar in BARS.items():
        for embeddings, recipe in CNN_EMBEDDINGS.items():
            runs = [
                lab(
                    store,
                    "language/101/sentence-cnn",
                    [
                        f"dataset={dataset}",
                        f"data_dir={SENTCLF}",
                        f"embeddings={embeddings}",
                        f"seed={seed}",
                        "figures=false",
                        *recipe,
                    ],
                )
                for seed in CNN_SEEDS
            ]
            tests = [r.summary["metrics"]["test_accuracy"] for r in runs]
            validations = [r.summary["metrics"]["val_accuracy"] for r in runs]
            seconds = max(r.history("epoch")[-1]["seconds"] for r in runs)
            mean = statistics.mean(tests)
            verdict = "✓" if mean >= bar and seconds <= 300 else "✗"
            rows.append(
                [
                    dataset,
                    " ".join([embeddings, *recipe]),
                    f"{runs[0].summary['data']['train']:,}",
                    runs[0].summary["epochs"],
                    f"{statistics.mean(validations):.1%}",
                    f"**{mean:.1%}** ({min(tests):.1%}–{max(tests):.1%})",
                    f"≥ {bar:.0%}",
                    f"{seconds:.0f} s",
                    verdict,
                ]
            )
    return (
        "`deepscape run language/101/sentence-cnn dataset=D data_dir=sentclf embeddings=E "
        f"seed=S` for seeds {', '.join(map(str, CNN_SEEDS))} (otherwise the defaults: widths "
        "3-4-5 × 100 filters, dropout 0.5, AdamW one-cycle, batch 50). `glove-tuned` (the "
        "default) is GloVe 6B-50d fine-tuned; `glove+minilm` puts MiniLM's word-piece vectors "
        "(384-d, from its input table, no context) beside GloVe's, fine-tuned at 0.3× the LR "
        "(`embedding_lr=0.3`). Test accuracy: the mean over "
        "the seeds (lowest–highest); training: the slowest seed.\n\n"
        + table(
            [
                "dataset",
                "embeddings",
                "train",
                "epochs",
                "validation",
                "test",
                "target",
                "training",
                "",
            ],
            rows,
        )
        + "\n"
    )


def part_phrases(store: RunStore) -> str:
    """The check of the phrase-level training set: the lab's own command, as a learner types it,
    and the recipe the card recommends beside it."""
    rows = []
    for recipe in PHRASE_RECIPES:
        overrides = ["dataset=sst2-phrases", f"data_dir={SHARED}", *recipe]
        run = lab(store, "language/101/sentence-cnn", overrides)
        m, epochs = run.summary["metrics"], run.history("epoch")
        wall = run.summary["wall_seconds"]
        verdict = "✓" if m["test_accuracy"] >= PHRASES_BAR and wall <= 600 else "✗"
        rows.append(
            [
                f"`{' '.join(overrides[2:]) or '(defaults)'}`",
                f"{run.summary['data']['train']:,}",
                run.summary["epochs"],
                f"{max(e['val_accuracy'] for e in epochs):.1%} / {m['val_accuracy']:.1%}",
                f"**{m['test_accuracy']:.1%}**",
                f"{epochs[-1]['seconds']:.0f} s",
                f"{wall:.0f} s",
                verdict,
            ]
        )
    return (
        f"`deepscape run language/101/sentence-cnn dataset=sst2-phrases data_dir=../shared/data "
        "[recipe]`: trained on GLUE's 67,349 SST-2 phrases, validated on the 872 dev sentences, "
        "tested once on the 1,821 test sentences. Target: test accuracy ≥ "
        f"{PHRASES_BAR:.0%} (Kim 2014, CNN-static with 300-d word2vec: 86.8 %) in ≤ 10 minutes "
        "on 2 cores, the whole command.\n\n"
        + table(
            ["recipe", "train", "epochs", "validation best / last", "test", "training", "wall", ""],
            rows,
        )
        + "\n"
    )


def part_transfer(store: RunStore) -> str:
    overrides = ["dataset=sst2", f"data_dir={SENTCLF}"]
    run = lab(store, "language/101/transfer", overrides)
    m = run.summary["metrics"]
    sizes = sorted({int(k.rsplit("_", 1)[1]) for k in m if k.startswith("scratch_")})
    labels = {
        "scratch": "CNN from scratch",
        "probe": "MiniLM frozen + linear head",
        "finetune": "MiniLM fine-tuned",
    }
    rows = [
        [label, *[f"{m[f'{arm}_{n}']:.1%}" if f"{arm}_{n}" in m else "—" for n in sizes]]
        for arm, label in labels.items()
    ]
    gain = m["pretrained_gain_at_200"]
    zero = ", ".join(f"{k} {v:.1%}" for k, v in m.items() if k.startswith("zero_shot"))
    return (
        f"`deepscape run language/101/transfer {' '.join(overrides)}` — "
        f"{run.summary['wall_seconds'] / 60:.0f} minutes in all; test accuracy on SST-2's test "
        "split.\n\n"
        + table(["labelled sentences", *[f"{n:,}" for n in sizes]], rows)
        + f"\n\nZero-shot (no labels): {zero}.\n\n**Pretrained gain at ≤ 200 labels: "
        f"{gain:+.1%}** (target ≥ +10 points: {'✓' if gain >= 0.10 else '✗'}).\n"
    )


def part_experiments(store: RunStore) -> str:
    overrides = ["dataset=sst2", f"data_dir={SENTCLF}", "seeds=1", "jobs=2", "threads=1"]
    run = lab(store, "language/101/experiments", overrides)
    m = run.summary["metrics"]
    rows = [
        ["default", f"{m['default_val_accuracy']:.1%}", f"{m['default_test_accuracy']:.1%}"],
        [
            "tuned on validation",
            f"{m['tuned_val_accuracy']:.1%}",
            f"{m['tuned_test_accuracy']:.1%}",
        ],
    ]
    conclusions = "\n".join(f"- {line}" for line in run.summary["conclusions"])
    return (
        f"`deepscape run language/101/experiments {' '.join(overrides)}` — {m['runs']} runs, "
        f"{run.summary['wall_seconds'] / 60:.0f} minutes.\n\n"
        + table(["sentence CNN", "validation", "test"], rows)
        + f"\n\nTuned setting: `{run.summary['tuned_config']}`. **tuned_beats_default = "
        f"{m['tuned_beats_default']:.0f}** (target 1).\n\n{conclusions}\n"
    )


PARTS = {
    "words": (
        "language_101_words",
        "language/101/word-meaning: skip-gram against gensim",
        part_words,
    ),
    "cnn": ("language_101_sentence_cnn", "language/101/sentence-cnn: SST-2, MR, TREC", part_cnn),
    "phrases": (
        "language_101_sentence_cnn_phrases",
        "language/101/sentence-cnn: SST-2 trained on its phrases",
        part_phrases,
    ),
    "transfer": ("language_101_transfer", "language/101/transfer on SST-2", part_transfer),
    "experiments": (
        "language_101_experiments",
        "language/101/experiments on SST-2",
        part_experiments,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    args = parser.parse_args()
    if not SENTCLF.is_dir():
        sys.exit(f"{SENTCLF} is missing: these benchmarks need the sentence-classification files")
    for part in args.parts:
        section, title, measure = PARTS[part]
        with tempfile.TemporaryDirectory() as home:
            body = measure(RunStore(Path(home) / "runs"))
        write_section(section, title, body)


if __name__ == "__main__":
    main()
