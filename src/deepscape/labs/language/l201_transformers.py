"""language/201/transformers — a GPT from scratch: attention, then the model, then a tokenizer.

The lesson, in the order of the code:
1. Attention. Each token asks a question (query), every earlier token offers a key and a value;
   softmax(QKᵀ/√d) says how much of each value to take. Causal: a token never sees the future,
   so one sequence trains every position at once. Written out in `deepscape.models.gpt`
   (`attention=written`), checked there against PyTorch's fused kernel (the default).
2. The GPT. Token and position embeddings, then blocks of attention and an MLP, each added to
   the residual stream, then logits over the next token. Training is next-token prediction:
   the loss is the cross-entropy of the true next token, at every position.
3. The tokenizer. Characters (65 symbols in tiny-shakespeare) or a byte-level BPE written out in
   `l201_bpe` (merges of the most frequent pair of tokens, as GPT-2's): fewer tokens per line,
   so the same context sees more text. Bits per character compare the two fairly.
4. Sampling. The model gives a distribution; temperature, top-k and top-p shape how we draw from
   it (`deepscape.generate`): the samples figure shows the same prompt at several temperatures.

Figures: the loss curves, every head's attention on a real line of the validation text, and
samples at several temperatures.

    deepscape run language/201/transformers                        # Shakespeare's works, offline
    deepscape run language/201/transformers max_steps=300          # a 2-minute look
    deepscape run language/201/transformers tokenizer=bpe vocab_size=512
    deepscape run language/201/transformers data_dir=../shared/data/tinyshakespeare  # the target
    deepscape generate RUN "ROMEO:"                                # a trained run continues text
    deepscape serve RUN                                            # a page to try it
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from deepscape import figures
from deepscape.config import ConfigError, TrainConfig, option
from deepscape.data.shakespeare import (
    CharTokenizer,
    TokenWindows,
    load_text,
    train_validation,
)
from deepscape.generate import generate
from deepscape.labs.language.l201_bpe import BytePairTokenizer
from deepscape.models.gpt import GPT, GPTConfig
from deepscape.runs import Run
from deepscape.tasks import LanguageModeling
from deepscape.train import Trainer

Tokenizer = CharTokenizer | BytePairTokenizer
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Config(TrainConfig):
    # data
    dataset: Literal["shakespeare", "tiny-shakespeare"] = option(
        "shakespeare", "Shakespeare's works (offline, 5 M characters) or tiny-shakespeare (1 M)"
    )
    data_dir: str | None = option(
        None, "folder with tiny-shakespeare's input.txt (implies dataset=tiny-shakespeare)"
    )
    max_chars: int = option(0, "characters of the corpus to use (0: all); a quick look")
    tokenizer: Literal["char", "bpe"] = option("char", "characters, or byte-level BPE")
    vocab_size: int = option(512, "tokens the BPE learns (256 bytes + merges)")
    # the model: every hyperparameter in one place
    # llama by default: on 2 CPU cores it is faster per step (no GELU) and better per token
    style: Literal["gpt2", "llama"] = option(
        "llama", "gpt2: learned positions, LayerNorm, GELU; llama: RoPE, RMSNorm, SwiGLU"
    )
    n_layer: int = option(4, "transformer blocks")
    n_head: int = option(4, "attention heads per block")
    n_embd: int = option(128, "width of the residual stream")
    block_size: int = option(128, "context: tokens the model sees at once")
    dropout: float = option(0.0, "dropout (only worth it once the model overfits)")
    attention: Literal["sdpa", "written"] = option(
        "sdpa", "fused attention, or the written-out softmax(QKᵀ/√d)V (same numbers, slower)"
    )
    # training, counted in steps
    # 2,000 steps took 611 s of training on 2 AMD EPYC cores (1.493): 1,950 fit in 10 minutes
    max_steps: int = option(1950, "optimisation steps (~10 minutes on 2 CPU cores)")
    batch_size: int = option(32, "windows of block_size tokens per step")
    lr: float = option(2e-3, "peak learning rate")
    schedule: Literal["constant", "cosine", "onecycle"] = option("cosine", "LR schedule")
    warmup: float = option(0.03, "fraction of steps spent warming the LR up")
    weight_decay: float = option(0.1, "decoupled weight decay on weight matrices")
    betas: tuple[float, float] = option((0.9, 0.99), "AdamW's averaging of gradients")
    grad_clip: float = option(1.0, "clip the gradients' global norm to this")
    eval_every: int = option(500, "steps between validation estimates")
    eval_batches: int = option(8, "batches of evenly spaced validation windows an estimate uses")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = option(
        "auto", "bf16 where the hardware computes it natively, else fp32"
    )
    # what the figures and the summary show
    prompt: str = option("ROMEO:", "the start of the samples")
    temperatures: tuple[float, ...] = option((0.5, 0.8, 1.2), "sampling temperatures to show")
    sample_tokens: int = option(300, "tokens per sample")

    def __post_init__(self) -> None:
        if self.data_dir:  # only tiny-shakespeare is read from a folder
            self.dataset = "tiny-shakespeare"


def run(config: Config, run: Run) -> dict[str, Any]:
    # 1. Text, nanoGPT's split: the first 90 % to learn from, the last 10 % to validate on.
    text = load_text(config.dataset, config.data_dir)
    if config.max_chars:
        text = text[: config.max_chars]
    train_text, val_text = train_validation(text)

    # 2. Tokens: characters or BPE merges learnt from the training text, kept with the run.
    tokenizer = tokenizer_for(config, train_text)
    tokenizer.save(run.dir / TOKENIZER_FILE)
    train_ids = torch.tensor(tokenizer.encode(train_text))
    val_ids = torch.tensor(tokenizer.encode(val_text))
    run.update_summary(data={"name": config.dataset, "characters": len(text),
                             "train_tokens": len(train_ids), "validation_tokens": len(val_ids),
                             "vocabulary": tokenizer.vocab_size})  # fmt: skip

    # 3. The GPT.
    model = GPT(model_config(config, tokenizer.vocab_size))
    run.update_summary(parameters=model.num_parameters())

    # 4. Next-token prediction on random windows (one per step and row, as nanoGPT draws them),
    #    estimated every eval_every steps on evenly spaced validation windows.
    steps = config.max_steps * config.grad_accum
    train = TokenWindows.random(
        train_ids, config.block_size, steps * config.batch_size, config.seed
    )
    estimate = TokenWindows.tiled(
        val_ids, config.block_size, config.eval_batches * config.batch_size
    )
    trainer = Trainer(config, run, task=LanguageModeling())
    run.update_summary(precision=trainer.precision)
    model = trainer.fit(model, train, estimate)

    # 5. The whole validation text, every token predicted once.
    val = trainer.evaluate(model, TokenWindows.tiled(val_ids, config.block_size))
    bits_per_char = val["loss"] * len(val_ids) / len(val_text) / math.log(2)

    # 6. What it learned: curves, attention on a real line, samples.
    model.eval()
    figures.training_curves(run, title=f"GPT ({config.tokenizer}) on {config.dataset}: loss")
    line = tokenizer.encode(next(x for x in val_text.splitlines() if len(x) >= 32))[:32]
    figures.attention_maps(
        run, model.attention_maps(torch.tensor(line)), [tokenizer.decode([i]) for i in line],
        title="What each head of the trained GPT attends to (row: a token; column: earlier ones)",
    )  # fmt: skip
    samples = sample_texts(model, tokenizer, config)
    figures.text_samples(run, {f"temperature {t}": s for t, s in samples.items()},
                         title=f"Samples after {config.prompt!r}")  # fmt: skip
    run.update_summary(samples=samples)

    evaluations = run.evaluations()
    return {
        "val_loss": val["loss"],
        "val_bits_per_char": bits_per_char,
        "train_loss": evaluations[-1]["train_loss"],
        "train_seconds": evaluations[-1]["seconds"],
        "parameters": model.num_parameters(),
        "tokens_trained": steps * config.batch_size * config.block_size,
    }


def tokenizer_for(config: Config, train_text: str) -> Tokenizer:
    if config.tokenizer == "char":
        return CharTokenizer.from_text(train_text)
    if config.vocab_size <= 256:
        raise ConfigError(f"vocab_size={config.vocab_size}: BPE starts from 256 bytes, ask more")
    return BytePairTokenizer().train(train_text, config.vocab_size)


def model_config(config: Config, vocab_size: int) -> GPTConfig:
    return GPTConfig(
        vocab_size=vocab_size,
        block_size=config.block_size,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_embd=config.n_embd,
        dropout=config.dropout,
        bias=False,
        style=config.style,
        attention=config.attention,
    )


def sample_texts(model: GPT, tokenizer: Tokenizer, config: Config) -> dict[str, str]:
    """The prompt continued once at each temperature (seeded: the same run draws the same)."""
    prompt = tokenizer.encode(config.prompt)
    samples = {}
    for temperature in config.temperatures:
        generator = torch.Generator().manual_seed(config.seed)
        new = generate(model, prompt, max_new_tokens=config.sample_tokens,
                       temperature=temperature, generator=generator)  # fmt: skip
        samples[f"{temperature:g}"] = config.prompt + tokenizer.decode(new[0].tolist())
    return samples


# -- a trained run, back: `deepscape generate` and `deepscape serve` -----------------------------
@dataclass
class TrainedLM:
    model: GPT
    tokenizer: Tokenizer
    config: Config

    def complete(
        self, prompt: str, *, max_new_tokens: int = 300, temperature: float = 0.8,
        top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
    ) -> str:  # fmt: skip
        """`prompt` and the model's continuation of it."""
        try:
            ids = self.tokenizer.encode(prompt)
        except ValueError as error:  # a character the training text never had
            raise ConfigError(
                f"{error}: this model knows only its training text's characters"
            ) from None
        if not ids:
            raise ConfigError("the prompt is empty: give some text to continue")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        new = generate(self.model, ids, max_new_tokens=max_new_tokens,
                       temperature=temperature, top_k=top_k, top_p=top_p,
                       greedy=temperature == 0, generator=generator)  # fmt: skip
        return prompt + self.tokenizer.decode(new[0].tolist())


def language_model_for(run: Run) -> TrainedLM:
    """A finished run's GPT and tokenizer (safetensors and JSON: nothing is unpickled)."""
    from deepscape.inside import load_weights, no_weights

    if not run.weights_path.is_file():
        raise no_weights(run)
    config = run.config_as(Config)
    path = Path(run.dir / TOKENIZER_FILE)
    tokenizer: Tokenizer = (
        CharTokenizer.load(path) if config.tokenizer == "char" else BytePairTokenizer.load(path)
    )
    model = GPT(model_config(config, tokenizer.vocab_size))
    load_weights(run, model)
    return TrainedLM(model.eval(), tokenizer, config)
