"""language/101/experiments — parametric experiments on the sentence CNN: what is worth tuning?

The lesson tunes language/101/sentence-cnn one question at a time, each asked on top of the best
answer so far: the embeddings (their initialisation is a hyper-parameter too), the filter widths,
the number of filters, dropout, the learning rate — with the sweep machinery of
vision/101/experiments. Every configuration runs at several seeds, because on a small text set
two seeds of one configuration can differ by more than two configurations: the seed spread is
the yardstick, and an effect counts only when it clears it. Each sweep leaves its overlaid
curves and metric-vs-parameter plots; the configuration chosen on validation is confirmed on
test, once, against the default.

    deepscape run language/101/experiments                   # 200 MR sentences, ~3 min
    deepscape run language/101/experiments dataset=sst2 data_dir=path/to/sentclf seeds=1 jobs=2
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

from deepscape import figures
from deepscape.compare import comparison, curves_figure, metric_vs_parameters_figure
from deepscape.config import ConfigError, option
from deepscape.labs.language import l101_sentence_cnn
from deepscape.labs.vision.l101_experiments import verdict_figure
from deepscape.runs import Run
from deepscape.sweep import stage

TUNED = "language/101/sentence-cnn"
CNN_DEFAULT = l101_sentence_cnn.Config()
# Each question and the answers it tries; the sentence CNN's default is among them.
QUESTIONS = {
    "embeddings": "random,glove-static,glove-tuned",
    "widths": "3,2-3-4,3-4-5,3-4-5-6",
    "filters": "25,100,200",
    "dropout": "0.2,0.5,0.7",
    "lr": "3e-4,1e-3,3e-3",
}


@dataclass
class Config:
    seed: int = option(0, "unused: every run of the lab's sweeps runs seeds 0 … seeds−1")
    dataset: Literal["mr-200", "sst2", "mr", "trec"] = option("mr-200", "sentences to tune on")
    data_dir: str | None = option(None, "folder with the sentence files (label first)")
    questions: str = option(",".join(QUESTIONS), "what to tune, in this order")
    seeds: int = option(3, "seeds per configuration: the yardstick of what counts as an effect")
    epochs: int = option(0, "epochs of every run (0: the sentence CNN's own choice)")
    jobs: int = option(1, "runs at a time, each in its own process")
    threads: int = option(0, "CPU threads per run (0: all cores / jobs)")


def run(config: Config, run: Run) -> dict[str, Any]:
    questions = [q.strip() for q in config.questions.split(",") if q.strip()]
    unknown = [q for q in questions if q not in QUESTIONS]
    if unknown or not questions:
        raise ConfigError(
            f"questions={config.questions!r}: choose from {', '.join(QUESTIONS)} (comma-separated)"
        )
    base = [f"dataset={config.dataset}", "figures=false", f"epochs={config.epochs}"]
    base += [f"data_dir={config.data_dir}"] if config.data_dir else []
    base += [f"threads={config.threads}"] if config.threads else []

    def sweep(name: str, *items: str) -> list[Run]:
        runs = stage(run, name, TUNED, l101_sentence_cnn.Config, [*base, *items],
                     seeds=config.seeds, jobs=config.jobs)  # fmt: skip
        failed = [r for r in runs if r.status != "finished"]
        if failed:
            raise RuntimeError(
                f"run {failed[0].id} of the {name} sweep {failed[0].status}: "
                f"{failed[0].summary.get('error', 'see deepscape runs show')}"
            )
        return runs

    # 1. The default, at every seed: its spread is the yardstick for every effect below.
    default_runs = sweep("default")
    spread = seed_spread(default_runs)

    # 2. One question at a time, each asked on top of the best answers so far.
    chosen: dict[str, str] = {}
    effects: dict[str, dict[str, Any]] = {}
    for step, question in enumerate(questions, start=1):
        fixed = [f"{key}={value}" for key, value in chosen.items()]
        runs = sweep(question, f"{question}={QUESTIONS[question]}", *fixed)
        result = comparison(runs)
        curves_figure(result, run.figure_path(f"{step}_{question}_curves"))
        metric_vs_parameters_figure(result, run.figure_path(f"{step}_{question}"))
        means = mean_by(runs, question, "val_accuracy")
        chosen[question] = best_answer(means, current=str(getattr(CNN_DEFAULT, question)))
        effects[question] = {
            "validation_by_value": means,
            "chosen": chosen[question],
            "effect": max(means.values()) - min(means.values()),
            "tuned_runs": [r for r in runs if str(r.config[question]) == chosen[question]],
        }

    # 3. Choose on validation; only then look at test, once (means over the seeds).
    tuned_runs = effects[questions[-1]]["tuned_runs"]
    default_m = mean_metrics(default_runs)
    tuned_m = mean_metrics(tuned_runs)
    wins = (
        tuned_m["val_accuracy"] > default_m["val_accuracy"]
        and tuned_m["test_accuracy"] > default_m["test_accuracy"]
    )
    verdict_figure(default_m, tuned_m, run.figure_path(f"{len(questions) + 2}_tuned_vs_default"))
    conclusions = conclude(effects, spread)
    effects_figure(effects, spread, run.figure_path(f"{len(questions) + 1}_effects"))
    run.update_summary(
        tuned_config=chosen,
        conclusions=conclusions,
        effects={q: {k: v for k, v in e.items() if k != "tuned_runs"} for q, e in effects.items()},
    )
    return {
        "tuned_beats_default": float(wins),
        "seed_spread": spread,
        "default_val_accuracy": default_m["val_accuracy"],
        "tuned_val_accuracy": tuned_m["val_accuracy"],
        "default_test_accuracy": default_m["test_accuracy"],
        "tuned_test_accuracy": tuned_m["test_accuracy"],
        "runs": len(default_runs)
        + config.seeds * sum(len(QUESTIONS[q].split(",")) for q in questions),
    }


def best_answer(means: dict[str, float], *, current: str) -> str:
    """The answer with the best mean validation accuracy; the current one unless another beats
    it (by more than float noise), so that a tie never changes the configuration."""
    best = max(means, key=means.get)
    return current if current in means and means[best] - means[current] < 1e-6 else best


def mean_metrics(runs: list[Run]) -> dict[str, float]:
    """Validation and test accuracy of the trained models (their last epoch), mean over seeds."""
    return {
        "val_accuracy": statistics.mean(r.summary["metrics"]["val_accuracy"] for r in runs),
        "test_accuracy": statistics.mean(r.summary["metrics"]["test_accuracy"] for r in runs),
    }


def mean_by(runs: list[Run], key: str, metric: str) -> dict[str, float]:
    """`metric` of the trained models averaged over seeds, per value of `key`."""
    groups: dict[str, list[float]] = {}
    for r in runs:
        groups.setdefault(str(r.config[key]), []).append(r.summary["metrics"][metric])
    return {value: statistics.mean(scores) for value, scores in groups.items()}


def seed_spread(runs: list[Run]) -> float:
    """How far the same configuration lands from itself: the standard deviation of validation
    accuracy over seeds (0 with one seed: then nothing can be told from noise)."""
    scores = [r.summary["metrics"]["val_accuracy"] for r in runs]
    return statistics.stdev(scores) if len(scores) > 1 else 0.0


def conclude(effects: dict[str, dict[str, Any]], spread: float) -> list[str]:
    """One sentence per question: did its answers differ by more than the seeds do?"""
    lines = []
    for question, effect in effects.items():
        size = effect["effect"]
        verdict = (
            "a real effect" if spread > 0 and size > 2 * spread
            else "within the seed noise: no conclusion" if spread > 0
            else "one seed: cannot tell from noise"
        )  # fmt: skip
        lines.append(
            f"{question}: best {effect['chosen']}, answers span {size:.1%} of validation "
            f"accuracy against a seed spread of {spread:.1%} — {verdict}"
        )
    return lines


def effects_figure(effects: dict[str, dict[str, Any]], spread: float, path) -> None:
    """How much each question moved validation accuracy, against twice the seed spread."""
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(effects)
    sizes = [effects[q]["effect"] for q in names]
    colours = ["#2ca02c" if spread and s > 2 * spread else "#999999" for s in sizes]
    bars = ax.bar(names, sizes, color=colours)
    ax.bar_label(bars, labels=[f"{s:.1%}\n→ {effects[q]['chosen']}" for q, s in zip(names, sizes,
                 strict=True)], fontsize=8)  # fmt: skip
    if spread:
        ax.axhline(
            2 * spread, color="#d62728", ls="--", label=f"2 × seed spread ({2 * spread:.1%})"
        )
        ax.legend(fontsize=8)
    ax.set_ylim(0, max([*sizes, 2 * spread]) * 1.35 or 0.01)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(ylabel="spread of validation accuracy over the answers",
           title="Which questions mattered? (green: beyond the seed noise)")  # fmt: skip
    figures.save(fig, path)
