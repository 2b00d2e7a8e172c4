"""Benchmark of language/201/transformers on tiny-shakespeare; results go to docs/benchmarks.md.

    python benchmarks/language_201_gpt.py                      # nanoGPT's CPU recipe vs the lab
    python benchmarks/language_201_gpt.py --target             # also the 10-minute target run
    python benchmarks/language_201_gpt.py --data-dir ../shared/data/tinyshakespeare

(a) nanoGPT's CPU recipe (its README: 4 layers, 4 heads, 128 dims, block 64, batch 12, lr 1e-3,
    2,000 iterations, dropout 0; the rest from config/train_shakespeare_char.py and train.py:
    AdamW β2 0.99, weight decay 0.1 on matrices, 100 warm-up iterations, cosine to 1e-4, gradient
    clip 1, estimate_loss of 20 batches every 250 iterations) as a bare loop, faithful to
    nanoGPT's train.py, over the same GPT file the lab uses. Its wall time T, evaluations
    included, is the budget.
(b) The lab's recipe, with as many steps as fit in T on this machine (measured from a short
    calibration run), through `deepscape run`. The lab must reach a validation loss lower by
    ≥ 0.20. Both are measured the same way at the end: every token of the validation text (the
    last 10 %) predicted once, in windows of the model's context.
(c) --target: the lab's defaults (1,950 steps, just under 10 minutes of training here); the map's
    target is validation loss ≤ 1.50 within 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from _report import table, write_section

from deepscape.data.shakespeare import CharTokenizer, TokenWindows, load_text, train_validation
from deepscape.lab import run_lab
from deepscape.models.gpt import GPT, GPTConfig
from deepscape.runs import RunStore

LAB = "language/201/transformers"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare"
# the lab's recipe for a short CPU budget (its step count is set from the budget): more, smaller
# steps of a shallower model than the lab's 10-minute defaults
SHORT = ["style=llama", "n_layer=2", "n_head=4", "n_embd=128", "block_size=64", "batch_size=16",
         "lr=3e-3", "warmup=0.05", "eval_every=0", "sample_tokens=200", "threads=2"]  # fmt: skip


def nanogpt_cpu_recipe(train_ids: torch.Tensor, val_ids: torch.Tensor) -> tuple[GPT, float]:
    """nanoGPT's train.py with its README's CPU settings, as a bare loop: (model, seconds)."""
    block, batch, iters, lr, min_lr, warmup = 64, 12, 2000, 1e-3, 1e-4, 100
    torch.manual_seed(1337)
    model = GPT(
        GPTConfig(
            vocab_size=65,
            block_size=block,
            n_layer=4,
            n_head=4,
            n_embd=128,
            dropout=0.0,
            bias=False,
        )
    )
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.99),
    )

    def get_batch(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(data) - block, (batch,))
        return (
            torch.stack([data[i : i + block] for i in ix]),
            torch.stack([data[i + 1 : i + 1 + block] for i in ix]),
        )

    def get_lr(it: int) -> float:
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        ratio = (it - warmup) / (iters - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    @torch.no_grad()
    def estimate_loss() -> None:
        model.eval()
        for data in (train_ids, val_ids):
            for _ in range(20):
                model(*get_batch(data))
        model.train()

    start = time.perf_counter()
    for it in range(iters + 1):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(it)
        if it % 250 == 0:
            estimate_loss()
        x, y = get_batch(train_ids)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model, time.perf_counter() - start


@torch.no_grad()
def validation_loss(model: GPT, val_ids: torch.Tensor) -> float:
    """Every validation token predicted once (tiled windows), as the lab measures it."""
    model.eval()
    windows = TokenWindows.tiled(val_ids, model.config.block_size)
    total, count = 0.0, 0
    for start in range(0, len(windows), 64):
        x, y = windows.__getitems__(list(range(start, min(start + 64, len(windows)))))
        _, loss = model(x, y)
        total, count = total + float(loss) * len(x), count + len(x)
    return total / count


def lab_run(data_dir: Path, recipe: list[str], overrides: list[str], home: str) -> dict:
    run = run_lab(
        LAB,
        [f"data_dir={data_dir}", *recipe, *overrides],
        store=RunStore(Path(home)),
        show_progress=True,
    )
    return {**run.summary["metrics"], "id": run.id, "steps": len(run.history("step"))}


def steps_for(seconds: float, data_dir: Path, recipe: list[str], home: str) -> int:
    """How many of the recipe's steps fit in `seconds` of training on this machine."""
    calibration = lab_run(data_dir, recipe, ["max_steps=40", "sample_tokens=1"], home)
    return int(seconds / (calibration["train_seconds"] / 40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--target", action="store_true", help="also the 10-minute target run")
    args = parser.parse_args()
    torch.set_num_threads(2)
    text = load_text("tiny-shakespeare", args.data_dir)
    train_text, val_text = train_validation(text)
    chars = CharTokenizer.from_text(train_text)
    train_ids, val_ids = (
        torch.tensor(chars.encode(train_text)),
        torch.tensor(chars.encode(val_text)),
    )

    nano, budget = nanogpt_cpu_recipe(train_ids, val_ids)
    nano_loss = validation_loss(nano, val_ids)
    print(f"nanoGPT's CPU recipe: {budget:.0f} s, validation loss {nano_loss:.3f}", flush=True)
    rows = [
        [
            "nanoGPT's CPU recipe (bare loop)",
            "4 × 128, block 64, batch 12",
            2000,
            f"{budget:.0f}",
            f"{nano_loss:.3f}",
        ]
    ]
    with tempfile.TemporaryDirectory() as home:
        steps = steps_for(budget, args.data_dir, SHORT, home)
        ours = lab_run(args.data_dir, SHORT, [f"max_steps={steps}"], home)
        rows.append(
            [
                "the lab's recipe, same wall time",
                "Llama-style 2 × 128, block 64, batch 16",
                steps,
                f"{ours['train_seconds']:.0f}",
                f"{ours['val_loss']:.3f}",
            ]
        )
        gap = nano_loss - ours["val_loss"]
        verdict = f"**{gap:.3f} lower** (≥ 0.20: {'✓' if gap >= 0.20 else '✗'})"
        if args.target:
            target = lab_run(args.data_dir, [], [], home)  # the lab's defaults: the check
            rows.append(
                [
                    "the lab's defaults (the target)",
                    "Llama-style 4 × 128, block 128, batch 32",
                    target["steps"],
                    f"{target['train_seconds']:.0f}",
                    f"{target['val_loss']:.3f}",
                ]
            )
            in_time = target["val_loss"] <= 1.50 and target["train_seconds"] <= 600
            reached = "✓" if in_time else "✗"
            verdict += (
                f"; the lab's defaults: **{target['val_loss']:.3f}** in "
                f"{target['train_seconds']:.0f} s of training (target ≤ 1.50 within 10 minutes: "
                f"{reached})"
            )
    body = (
        f"tiny-shakespeare (`data_dir={args.data_dir}`), character level, nanoGPT's 90/10 split. "
        "Validation loss: every token of the last 10 % predicted once. The lab's options: "
        f"short budget `{' '.join(SHORT)}`; the target: the lab's defaults "
        f"(`deepscape run {LAB} data_dir=…`).\n\n"
        + table(["run", "model", "steps", "training s", "validation loss"], rows)
        + f"\n\nThe lab against nanoGPT's CPU recipe at equal wall time: {verdict}.\n"
    )
    write_section("language_201_gpt", "language/201/transformers: a GPT on tiny-shakespeare", body)


if __name__ == "__main__":
    main()
