"""`deepscape.tuning.train` on a tiny random Llama with SmolLM2's tokenizer, for
tests/test_distributed.py: run directly (one process) or under `torchrun` (several). Each process
saves its trained weights (the LoRA's, or with `full-shard` after the folder every weight,
fine-tuned in shards), its losses and what it held as `rank<R>.safetensors` in the folder it is
given."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from deepscape import distributed, tuning
from deepscape.models.language import SMOLLM_GGUF, SMOLLM_PACKAGE, package_folder
from deepscape.tuning import Example

STEPS, BATCH = 3, 4
# 9 examples in batches of 4: the third batch has one row, and leaves the second process none
SUMS = [(1, 2), (3, 4), (5, 6), (7, 8), (2, 9), (4, 4), (6, 1), (8, 3), (9, 9)]
EXAMPLES = [Example(f"What is {a} plus {b}?" + " Think." * (a % 3), str(a + b)) for a, b in SUMS]


def tokenizer():
    """SmolLM2's tokenizer (and chat template), read from the offline GGUF; None without it."""
    from transformers import AutoTokenizer

    gguf = package_folder(SMOLLM_PACKAGE, SMOLLM_GGUF)
    return None if gguf is None else AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def train(
    tokens, lora_seed: int, *, full: bool = False, shard: bool = False
) -> tuple[dict[str, torch.Tensor], tuning.TrainResult]:
    """The same base model on every process; the LoRA initialised from `lora_seed`, or (`full`)
    every weight trained."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=32, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=True)  # fmt: skip
    model = LlamaForCausalLM(config)
    if not full:
        torch.manual_seed(lora_seed)
        model = tuning.add_lora(model, rank=4, targets=("q_proj", "v_proj"))
        with torch.no_grad():  # B starts at zero: start it elsewhere, so that A learns too
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.05)
    result = tuning.train(model, tokens, EXAMPLES, steps=STEPS, batch_size=BATCH,
                          lr=1e-3 if full else 1e-2, warmup=0.0, progress=False,
                          shard=shard)  # fmt: skip
    # (a tied embedding is one tensor under two names: saved once)
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return trained, result


if __name__ == "__main__":
    torch.set_num_threads(1)
    if distributed.processes() > 1:
        distributed.start(cpu=True)
    full_shard = sys.argv[2:] == ["full-shard"]
    weights, result = train(tokenizer(), lora_seed=100 + distributed.rank(), full=full_shard,
                            shard=full_shard)  # fmt: skip
    out = Path(sys.argv[1]) / f"rank{distributed.rank()}.safetensors"
    metadata = {"losses": json.dumps(result.losses), "memory_mb": json.dumps(result.memory_mb)}
    save_file(weights, str(out), metadata=metadata)
