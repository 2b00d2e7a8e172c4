"""language/301/multi-llm's figure: accuracy against compute per method, and the router."""

from __future__ import annotations

from typing import Any


def figure(run: Any, table: dict[str, Any], kinds: list[str]) -> Any:
    """Left: each method's accuracy against the LLM tokens it spent per question (log scale);
    right: the router's confusion matrix (true kind × routed kind)."""
    import matplotlib.pyplot as plt

    from deepscape.figures import save

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6),
                                      gridspec_kw={"width_ratios": [1.5, 1]})  # fmt: skip
    for method, tokens in table["tokens"].items():
        accuracy = table["accuracy"][method]
        left.scatter(tokens, accuracy, s=60, zorder=3)
        seconds = table["seconds"][method]
        left.annotate(f"{method}\n{accuracy:.0%}, {seconds:.2f} s", (tokens, accuracy),
                      textcoords="offset points", xytext=(6, -4), fontsize=8)  # fmt: skip
    for reference, style in (("oracle routing", ":"), ("any sample right", "--")):
        if reference in table["accuracy"]:
            left.axhline(table["accuracy"][reference], color="gray", linestyle=style, lw=1,
                         label=f"{reference}: {table['accuracy'][reference]:.0%}")  # fmt: skip
    left.set_xscale("log")
    left.set_xlabel("LLM tokens per question (read + generated)")
    left.set_ylabel("accuracy")
    left.set_ylim(0, 1.05)
    left.set_title("Accuracy against compute")
    if left.get_legend_handles_labels()[0]:
        left.legend(loc="lower right", fontsize=8)
    confusion = table["confusion"]
    if confusion:
        right.imshow(confusion, cmap="Blues")
        most = max(map(max, confusion)) or 1
        for a, row in enumerate(confusion):
            for b, count in enumerate(row):
                right.text(b, a, str(count), ha="center", va="center", fontsize=10,
                           color="white" if count > most / 2 else "black")  # fmt: skip
        right.set_xticks(range(len(kinds)), kinds, rotation=20)
        right.set_yticks(range(len(kinds)), kinds)
        right.set_xlabel("routed to")
        right.set_ylabel("true kind")
        shares = sum(confusion[i][i] for i in range(len(kinds))) / max(1, sum(map(sum, confusion)))
        right.set_title(f"The router: {shares:.0%} routed right")
    else:
        right.axis("off")
    return save(fig, run.figure_path("multi_llm"))
