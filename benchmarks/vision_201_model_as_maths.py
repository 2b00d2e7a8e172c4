"""vision/201/model-as-maths with its defaults, its predictions against its measurements; the
tables go to docs/benchmarks.md.

    python benchmarks/vision_201_model_as_maths.py
    python benchmarks/vision_201_model_as_maths.py steps=300 memory_models=cnn,gpt   # quicker

(a) Memory of one training step (AdamW), by kind: predicted by formula from the model's shapes,
    measured from the profiler's memory records, for every model, batch size and precision.
(b) FLOPs of a forward pass by formula against FlopCounterMode; a training step's FLOP/s as a
    share of this machine's matmul peak (F.linear on square matrices), in fp32 and bf16, measured
    in the same run.
"""

from __future__ import annotations

import sys
import tempfile

from _report import table, write_section

from deepscape.lab import run_lab
from deepscape.runs import RunStore

LAB = "vision/201/model-as-maths"
KINDS = ("parameters", "gradients", "optimizer_state", "activations")


def mib(n: float) -> str:
    return f"{n / 2**20:.2f}"


def main() -> None:
    overrides = ["threads=2", *sys.argv[1:]]
    with tempfile.TemporaryDirectory() as home:
        run = run_lab(LAB, overrides, store=RunStore(home), show_progress=False)
        metrics = run.summary["metrics"]
        memory, flops = run.history("memory"), run.history("flops")
        hand = run.history("hand-cnn")[-1]

    rows, worst = [], 0.0
    for r in memory:
        errors = [r[f"predicted_{k}"] / r[f"measured_{k}"] - 1 for k in KINDS]
        worst = max(worst, *(abs(e) for e in errors))
        cells = [f"{mib(r[f'predicted_{k}'])} / {mib(r[f'measured_{k}'])}" for k in KINDS]
        rows.append([r["model"], r["batch"], r["precision"], *cells,
                     f"{max(errors, key=abs):+.1%}", mib(r["peak"])])  # fmt: skip
    memory_table = table(
        ["model", "batch", "precision", "parameters MiB (predicted / measured)", "gradients",
         "optimizer state", "activations", "worst error", "measured peak MiB"],
        rows,
    )  # fmt: skip
    peaks = {p: metrics[f"matmul_peak_gflops_{p}"] for p in ("fp32", "bf16")
             if f"matmul_peak_gflops_{p}" in metrics}  # fmt: skip
    flop_rows = [
        [r["model"], r["batch"], f"{r['formula'] / 1e6:,.1f}", f"{r['counted'] / 1e6:,.1f}",
         *(f"{1000 * r[f'seconds_{p}']:.1f} ms · {r[f'mfu_{p}']:.1%}" for p in peaks)]
        for r in flops
    ]  # fmt: skip
    flops_table = table(
        ["model", "batch", "forward MFLOPs, formula", "FlopCounterMode",
         *(f"training step {p} · share of peak" for p in peaks)],
        flop_rows,
    )  # fmt: skip
    difference = metrics["hand_backward_weight_difference"]
    body = (
        f"Hand-written layers: gradcheck {metrics['gradcheck_passed']:.0%} passed; the hand CNN's"
        f" weights differ from autograd's by at most {difference:.1e} after 100 steps (target"
        f" ≤ 1e-5: {'✓' if difference <= 1e-5 else '✗'}); it reaches "
        f"{hand['test_accuracy']:.2%} test accuracy on the digits in {hand['seconds']:.1f} s.\n\n"
        "**(a) Memory of one training step (AdamW)**, predicted / measured (the profiler's memory"
        " records; activations: the bytes the forward pass leaves for backward).\n\n"
        f"{memory_table}\n\nWorst error of any kind: **{worst:.1%}** (target ≤ 10 %: "
        f"{'✓' if worst <= 0.10 else '✗'}).\n\n"
        "**(b) FLOPs and utilisation.** Matmul peak (F.linear, square): "
        + ", ".join(f"{p} {v:.1f} GFLOP/s" for p, v in peaks.items())
        + ". A training step counts 3× the forward FLOPs by formula. FlopCounterMode does not"
        " count PyTorch's fused CPU attention kernel, so the GPTs are counted with attention"
        " written out as matmuls.\n\n"
        f"{flops_table}\n"
    )
    write_section("model-as-maths", "vision/201/model-as-maths: memory and FLOPs", body)


if __name__ == "__main__":
    main()
