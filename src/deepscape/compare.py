"""Comparing runs side by side: what differs between them, and what it did.

`comparison(runs)` keeps only the config keys whose values differ and orders the runs by their
lab's target metric. The figures overlay every run's curves (labelled by what differs) and plot the
target metric against each swept parameter, mean ± spread over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepscape import landscape, metrics
from deepscape.runs import Run

IGNORED = {"seed", "threads"}  # differ between runs of one sweep without being what it studies


@dataclass
class Comparison:
    runs: list[Run]
    keys: list[str]  # config keys whose values differ between the runs
    metric: str  # the target metric the runs are sorted by
    rows: list[dict[str, Any]]  # one per run: id, status, differing config values, metrics

    def label(self, run: Run) -> str:
        config = run.config
        return ", ".join(f"{k}={config.get(k)}" for k in self.keys) or run.id


def comparison(runs: list[Run]) -> Comparison:
    if not runs:
        raise ValueError("nothing to compare: give run ids or a sweep id")
    labs = {run.summary["lab"] for run in runs}
    if len(labs) > 1:
        raise ValueError(f"runs of different labs cannot be compared: {', '.join(sorted(labs))}")
    target = landscape.load().lab(labs.pop()).target
    configs = [run.config for run in runs]
    all_keys = list(dict.fromkeys(k for c in configs for k in c))
    keys = [k for k in all_keys if k not in IGNORED and len({repr(c.get(k)) for c in configs}) > 1]
    if not keys and len({c.get("seed") for c in configs}) > 1:
        keys = ["seed"]  # runs that differ only by seed: show the seed
    rows = []
    for run, config in zip(runs, configs, strict=True):
        summary = run.summary
        rows.append(
            {
                "id": run.id,
                "status": run.status,
                **{k: config.get(k) for k in keys},
                **summary.get("metrics", {}),
            }
        )
    best_first = metrics.sort_key(target.metric)
    order = sorted(range(len(runs)), key=lambda i: best_first(rows[i].get(target.metric)))
    return Comparison([runs[i] for i in order], keys, target.metric, [rows[i] for i in order])


def curves_figure(result: Comparison, path: Path) -> Path:
    """Validation (solid) and train (dashed) loss and monitored metric (an accuracy as its error
    rate) per evaluation of every run, overlaid; runs that differ only by seed share a colour."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from deepscape.figures import log_axis, save

    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(15, 4.8))
    labels = list(dict.fromkeys(result.label(run) for run in result.runs))
    palette = (
        plt.cm.tab10.colors
        if len(labels) <= 10
        else plt.cm.viridis([i / len(labels) for i in range(len(labels))])
    )
    colour = dict(zip(labels, palette, strict=False))
    losses, errors, labelled = [], [], set()
    monitored = metrics.base_name(result.runs[0].summary.get("monitor", "val_loss"))
    info = metrics.get(monitored)
    as_error = info.higher_is_better and "%" in info.format  # an accuracy: draw 1 − accuracy
    by_epoch = True
    for run in result.runs:
        evaluations = run.evaluations()
        if not evaluations:
            continue
        by_epoch = evaluations[0]["kind"] == "epoch"
        x = [e["epoch"] + 1 if by_epoch else e["step"] for e in evaluations]
        label = result.label(run)
        legend = None if label in labelled else label
        labelled.add(label)
        for ax, key, values in (
            (ax_loss, "loss", losses),
            (ax_err, monitored, errors),
        ):
            if f"val_{key}" not in evaluations[0]:
                continue
            val = [e[f"val_{key}"] for e in evaluations]
            train = [e.get(f"train_{key}", math.nan) for e in evaluations]
            if key != "loss" and as_error:
                val, train = [1 - v for v in val], [1 - v for v in train]
            ax.plot(x, val, color=colour[label], label=legend)
            ax.plot(x, train, color=colour[label], ls="--", alpha=0.6)
            values += [v for v in val + train if not math.isnan(v)]
    x_label = "epoch" if by_epoch else "step"
    ax_loss.set(xlabel=x_label, ylabel="loss", title="Loss")
    error_label = f"error rate (1 − {monitored})" if as_error else monitored
    ax_err.set(xlabel=x_label, ylabel=error_label, title="Error" if as_error else monitored)
    log_axis(ax_loss, losses)
    log_axis(ax_err, errors)
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_err.legend(  # outside the axes: never over a curve
        fontsize=8,
        title="validation (solid)\ntrain (dashed)",
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
    )
    fig.suptitle(f"{len(result.runs)} runs compared, labelled by what differs")
    return save(fig, path)


def metric_vs_parameters_figure(
    result: Comparison, path: Path, *, log_keys: set[str] = frozenset()
) -> Path | None:
    """The target metric against each differing numeric parameter: mean ± spread over seeds."""
    import matplotlib.pyplot as plt

    from deepscape.figures import fixed_margins, save

    numeric = [
        k
        for k in result.keys
        if all(
            isinstance(r.get(k), int | float) and not isinstance(r.get(k), bool)
            for r in result.rows
        )
    ]
    categorical = [k for k in result.keys if k not in numeric]
    keys = numeric + categorical
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        groups: dict[Any, list[float]] = defaultdict(list)
        for row in result.rows:
            if result.metric in row:
                value = row[key]  # a tuple option comes back from config.json as a list
                groups[tuple(value) if isinstance(value, list) else value].append(
                    row[result.metric]
                )
        xs = sorted(groups, key=lambda v: (isinstance(v, str), v))
        means = [statistics.mean(groups[x]) for x in xs]
        spread = [statistics.stdev(groups[x]) if len(groups[x]) > 1 else 0.0 for x in xs]
        positions = xs if key in numeric else list(range(len(xs)))
        ax.errorbar(positions, means, yerr=spread, fmt="o-" if key in numeric else "o", capsize=4)
        for x, values in zip(positions, (groups[v] for v in xs), strict=True):
            ax.scatter([x] * len(values), values, s=10, alpha=0.4, color="grey")
        if key in categorical:
            ax.set_xticks(positions, [str(x) for x in xs])
        elif key in log_keys or (min(xs) > 0 and max(xs) / min(xs) >= 100):
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel=result.metric, title=f"{result.metric} vs {key}")
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Mean ± standard deviation over seeds (grey: each run)")
    fixed_margins(fig, left=0.8, bottom=0.6, top=0.6, wspace=0.35)
    return save(fig, path, tight=False)
