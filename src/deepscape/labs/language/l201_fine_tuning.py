"""language/201/fine-tuning — teach a pretrained LLM a task: prompting, LoRA, full fine-tuning.

One small instruct LLM (SmolLM2-135M-Instruct, read offline from its GGUF file, de-quantised to
float32), four ways to make it do a task:
1. zero-shot: ask it. Its answer is read, not parsed: the likeliest label's probability as the
   first word of its reply (classification), or its greedy reply (bAbI, exact match).
2. few-shot: the same, after `shots` solved examples as earlier turns of the chat.
3. LoRA (Hu et al. 2021): freeze the 135 M weights; beside each attention and MLP projection W
   learn a low-rank update (alpha/rank)·B·A. At rank 8 that is 2.4 M parameters (1.8 %); the
   adapter is all a run keeps (adapter.safetensors, 9.8 MB).
4. full fine-tuning: every weight learns, at a much lower LR; gradients and AdamW's two moments
   for 135 M weights cost 1.6 GB more memory than LoRA's.
Both trainings see the same examples, the same steps: each a chat (template, prompt, answer),
the loss on the answer tokens alone (`deepscape.tuning`: loss masking). Measured for each way:
accuracy or exact match, trainable parameters, seconds per step, tokens per second, the memory
training's tensors need at the peak (weights, gradients, AdamW's moments, and the activations
kept for the backward pass, counted through autograd's saved-tensor hooks), and forgetting:
perplexity on general text (gensim's Lee news stories, never trained on) before and after.

Measured (SmolLM2-135M-Instruct, fp32): on SST-2, a rank-8 LoRA (1.8 % of the weights) trained
for 23 minutes alone on 2 cores (455 steps of 16 sentences, 3.0 s a step, 397 tokens/s) reaches
92.6 % test accuracy on the 1,821 test sentences (language/101's fine-tuned MiniLM: 87.3 %), its
perplexity on news text 36.7 → 37.3. At the same 100 steps of 8 (500 test sentences, 1 thread):
LoRA 91.2 %, full fine-tuning 89.6 % at 2.8× LoRA's seconds a step. On MR-200 offline (40 test
sentences, 30 steps of 8): zero-shot 65 %, 4-shot 50 % (chance: shots do not help a model this
small), LoRA 82.5 %, full fine-tuning 90 %; the tensors of full fine-tuning need 2.3 GB, LoRA's
0.7 GB. On bAbI task 1 (200 of its test questions, 1 thread): zero-shot 0 % exact match (it
answers in whole sentences, "Mary journeyed to the bathroom."), 4-shot 43 %, LoRA after 200
steps of 8 stories 99.5 %, its perplexity on news 36.7 → 41.5.

Tasks: sentiment of a movie review, the label as the next token (`dataset=` mr-200 offline, or
SST-2 from data_dir), and bAbI task 1 (`dataset=babi-qa1 data_dir=../shared/data`): where is a
person, after a story of moves — answered in one word, judged by exact match.

    deepscape run language/201/fine-tuning                                    # MR-200, offline
    deepscape run language/201/fine-tuning dataset=sst2 data_dir=../shared/data/sentclf \\
        methods=lora max_steps=5000 seconds=1380 batch_size=16 threads=2      # the target
    deepscape run language/201/fine-tuning dataset=babi-qa1 data_dir=../shared/data
    deepscape run language/201/fine-tuning methods=lora rank=4 targets=q_proj,v_proj
    torchrun --nproc_per_node 2 $(which deepscape) run language/201/fine-tuning \
        methods=full shard=true                       # in 2 shards: half the state each (FSDP)
    deepscape generate RUN "a gorgeous, witty, seductive movie."              # the LoRA answers
    deepscape serve RUN
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib.pyplot as plt
import torch

from deepscape import distributed, figures, tuning
from deepscape.config import ConfigError, TrainConfig, option
from deepscape.data import get_dataset
from deepscape.data.corpus import load_corpus
from deepscape.data.qa import load_babi
from deepscape.labs.language.l101_transfer import SENTIMENT, reading
from deepscape.models.language import LanguageModel, load_llm
from deepscape.runs import Run
from deepscape.tuning import Example

Method = Literal["zero-shot", "few-shot", "lora", "full"]
METHODS: tuple[Method, ...] = ("zero-shot", "few-shot", "lora", "full")
# every linear projection of a Llama block, as tuning.LORA_TARGETS (spelled out: the CLI reads
# Config from this file's source without importing torch; a test checks the two agree)
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LABELS = ["negative", "positive"]
BABI_INSTRUCTION = "Read the story, then answer the question with one word."
ADAPTER = "adapter.safetensors"


GLOBAL_BATCH = True  # its LoRA trains through deepscape.tuning.train: see its docstring


@dataclass
class Config(TrainConfig):
    dataset: Literal["mr-200", "sst2", "sst2-phrases", "mr", "babi-qa1"] = option(
        "mr-200", "sentiment (mr-200 offline; sst2… from data_dir) or bAbI task 1 (data_dir)"
    )
    data_dir: str | None = option(None, "folder with the dataset's files")
    llm: str = option("SmolLM2-135M-Instruct", "the instruct LLM (offline: SmolLM2's GGUF)")
    methods: tuple[Method, ...] = option(METHODS, "the ways compared, in order")
    shots: int = option(4, "solved examples before each question (few-shot)")
    # LoRA
    rank: int = option(8, "LoRA rank (4 to 16 is usual)")
    alpha: float = option(16.0, "LoRA scale numerator: the update is (alpha / rank)·B·A")
    targets: tuple[str, ...] = option(PROJECTIONS, "projections that get an adapter")
    # training (both trainings: the same examples, the same steps)
    max_steps: int = option(30, "optimisation steps of each training")
    seconds: float = option(0.0, "each training ends after this many seconds too (0: no limit)")
    batch_size: int = option(8, "examples per step")
    lr: float = option(1e-3, "LoRA's peak learning rate")
    full_lr: float = option(5e-5, "full fine-tuning's peak learning rate")
    warmup: float = option(0.1, "fraction of steps warming the LR up (then linear to zero)")
    max_length: int = option(512, "tokens an example may have (prompt and answer)")
    # measuring
    max_test: int = option(0, "test examples measured (0: all)")
    forgetting_tokens: int = option(4096, "tokens of general text for perplexity (0: skip)")
    figures: bool = option(True, "draw the figures")


def check(config: Config) -> None:
    """One-line errors before the LLM is read."""
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown or not config.methods:
        raise ConfigError(f"methods={','.join(config.methods)}: name some of {', '.join(METHODS)}")
    if config.rank <= 0:
        raise ConfigError(f"LoRA rank={config.rank}: give a rank ≥ 1 (4 to 16 is usual)")
    if config.dataset == "babi-qa1" and not config.data_dir:
        raise ConfigError("dataset=babi-qa1 reads bAbI's files: pass data_dir=../shared/data")


def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))

    # 1. The task as prompt → answer examples: an instruction, then the text.
    train, test, instruction = examples(config)
    if config.max_test:
        test = test[: config.max_test]
    generative = config.dataset == "babi-qa1"
    run.update_summary(data={"name": config.dataset, "train": len(train), "test": len(test),
                             "instruction": instruction})  # fmt: skip

    # 2. The LLM, and how well it reads general text before any training.
    with reading(f"reading {config.llm} (a GGUF file takes ~20 s)", run.show_progress):
        llm = load_llm(config.llm)
    general = general_text(config)
    before = forgetting(llm.model, llm.tokenizer, general, config)
    about = {"name": llm.name, "source": llm.source, "precision": "fp32",
             "threads": torch.get_num_threads()}  # fmt: skip
    run.update_summary(llm=about, perplexity_before=before)

    # 3. The four ways, each measured the same way on the same test examples.
    results: dict[str, dict[str, Any]] = {}
    for method in config.methods:
        model, trained = llm.model, None
        if method in ("lora", "full"):
            model, trained = fine_tune(llm, train, method, config, run)
        shots = few_shots(train, config.shots, config.seed) if method == "few-shot" else ()
        results[method] = {**measure(model, llm, test, shots, generative, run),
                           **(trained or {})}  # fmt: skip
        if trained and general:
            results[method]["perplexity"] = forgetting(model, llm.tokenizer, general, config)
        if method == "lora":
            tuning.save_adapter(model, run.dir / ADAPTER)
        run.update_summary(methods=results)
        del model

    # 4. What it learned: loss curves, the ways side by side, forgetting.
    if config.figures:
        plot_losses(run, results, config)
        plot_methods(run, results, before, generative=generative)
    return metrics_of(results, before, generative=generative)


# -- data ------------------------------------------------------------------------------------------
def examples(config: Config) -> tuple[list[Example], list[Example], str]:
    """(train, test) examples and the instruction that starts each prompt."""
    if config.dataset == "babi-qa1":
        splits = load_babi(Path(config.data_dir or "."), task=1)
        instruction = BABI_INSTRUCTION

        def babi(split: str) -> list[Example]:
            return [Example(user_message(instruction, "\n".join([*q.story, q.question])), q.answer)
                    for q in splits[split]]  # fmt: skip

        return babi("train"), babi("test"), instruction
    data = get_dataset(config.dataset, config.data_dir)
    instruction = SENTIMENT.question

    def labelled(split: Any) -> list[Example]:
        return [Example(user_message(instruction, text), data.classes[int(y)])
                for text, y in zip(split.texts, split.targets, strict=True)]  # fmt: skip

    return labelled(data.train), labelled(data.test), instruction


def user_message(instruction: str, text: str) -> str:
    """The user's message: the instruction, a blank line, the text (as `prompt_ids` asks)."""
    return f"{instruction}\n\n{text}"


def few_shots(train: list[Example], k: int, seed: int) -> list[Example]:
    """k training examples, drawn with the seed, the answers taking turns (no label leads)."""
    by_answer: dict[str, list[Example]] = {}
    for example in random.Random(seed).sample(train, min(len(train), 50 * max(1, k))):
        by_answer.setdefault(example.answer, []).append(example)
    groups = list(by_answer.values())
    return [groups[i % len(groups)][i // len(groups)] for i in range(k)
            if i // len(groups) < len(groups[i % len(groups)])]  # fmt: skip


def general_text(config: Config) -> list[str]:
    """General text the model never trains on (news stories): forgetting shows in its
    perplexity."""
    if not config.forgetting_tokens:
        return []
    return load_corpus("lee").documents


def forgetting(
    model: torch.nn.Module, tokenizer: Any, general: list[str], config: Config
) -> float | None:
    """Perplexity of `model` on the first `forgetting_tokens` tokens of the general text."""
    if not general:
        return None
    return tuning.perplexity(model, tokenizer, general, max_tokens=config.forgetting_tokens)


# -- the ways --------------------------------------------------------------------------------------
def fine_tune(
    llm: LanguageModel, train: list[Example], method: str, config: Config, run: Run
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A copy of the LLM trained with LoRA or in full, and what training cost."""
    model = copy.deepcopy(llm.model)  # load_llm's is shared: it stays as read
    if method == "lora":
        model = tuning.add_lora(model, rank=config.rank, alpha=config.alpha,
                                targets=config.targets)  # fmt: skip
    else:
        model.requires_grad_(True)
    trainable, total = tuning.trainable_parameters(model)

    def logged(step: int, loss: float) -> None:
        run.log({"kind": "step", "method": method, "step": step, "loss": loss})

    result = tuning.train(
        model, llm.tokenizer, train, steps=config.max_steps, batch_size=config.batch_size,
        lr=config.lr if method == "lora" else config.full_lr, warmup=config.warmup,
        max_length=config.max_length, seconds=config.seconds, seed=config.seed,
        progress=run.show_progress, description=f"{method} fine-tuning", on_step=logged,
        shard=config.shard,
    )  # fmt: skip
    run.commit_history()
    return model, {
        "trainable_parameters": trainable,
        "parameters": total,
        "trainable_fraction": trainable / total,
        "steps": result.steps,
        "train_seconds": result.seconds,
        "seconds_per_step": result.seconds_per_step,
        "train_tokens_per_second": result.tokens_per_second,
        "peak_memory_mb": result.peak_memory_mb,
        "memory_mb": result.memory_mb,
        "losses": result.losses,
    }


def measure(
    model: torch.nn.Module,
    llm: LanguageModel,
    test: list[Example],
    shots: Any,
    generative: bool,
    run: Run,
) -> dict[str, Any]:
    """Accuracy (the likeliest label) or exact match (the greedy answer) on `test`, with the
    seconds it took and the prompt tokens read per second."""
    tokenizer = llm.tokenizer
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if generative:
        result["exact_match"], given = tuning.exact_match(
            model, tokenizer, test, shots=shots, max_new_tokens=8, progress=run.show_progress
        )
        result["examples"] = [{"answer": e.answer, "given": g}
                              for e, g in zip(test[:5], given[:5], strict=True)]  # fmt: skip
    else:
        result["accuracy"] = tuning.label_accuracy(
            model, tokenizer, test, LABELS, shots=shots, progress=run.show_progress
        )
    seconds = time.perf_counter() - started
    tokens = sum(len(tuning.chat_prompt_ids(tokenizer, e.prompt, shots=shots)) for e in test)
    return {**result, "eval_seconds": seconds, "eval_tokens_per_second": tokens / seconds}


def metrics_of(
    results: dict[str, dict[str, Any]], before: float | None, *, generative: bool
) -> dict[str, Any]:
    """The run's metrics: each way's score, and LoRA's costs against full fine-tuning's."""
    name = "exact_match" if generative else "accuracy"
    found: dict[str, Any] = {f"{m.replace('-', '_')}_{name}": r[name] for m, r in results.items()}
    best = "lora" if "lora" in results else max(results, key=lambda m: results[m][name])
    found[f"test_{name}"] = results[best][name]
    for method in ("lora", "full"):
        if method in results:
            r = results[method]
            found[f"{method}_trainable_fraction"] = r["trainable_fraction"]
            found[f"{method}_seconds_per_step"] = r["seconds_per_step"]
            found[f"{method}_peak_memory_mb"] = r["peak_memory_mb"]
            if before is not None:
                found[f"{method}_perplexity_change"] = r["perplexity"] / before - 1
    if "lora" in results and "full" in results:
        found[f"lora_minus_full_{name}"] = results["lora"][name] - results["full"][name]
    if before is not None:
        found["perplexity_before"] = before
    return found


# -- figures ---------------------------------------------------------------------------------------
def plot_losses(run: Run, results: dict[str, dict[str, Any]], config: Config) -> None:
    trained = {m: r["losses"] for m, r in results.items() if "losses" in r}
    if not trained:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, losses in trained.items():
        share = results[method]["trainable_fraction"]
        ax.plot(range(1, len(losses) + 1), losses, alpha=0.3)
        window = max(1, len(losses) // 20)  # a running mean shows the trend through the noise
        smooth = torch.tensor(losses).unfold(0, window, 1).mean(1).tolist()
        ax.plot(range(window, len(losses) + 1), smooth, color=ax.lines[-1].get_color(),
                label=f"{method} ({share:.1%} of weights trained)")  # fmt: skip
    title = f"Fine-tuning on {config.dataset}: {config.batch_size} examples a step"
    ax.set(xlabel="step", ylabel="cross-entropy of the answer tokens (nats)", yscale="log",
           title=title)  # fmt: skip
    ax.legend()
    figures.save(fig, run.figure_path("loss_curves"))


def plot_methods(
    run: Run, results: dict[str, dict[str, Any]], before: float | None, *, generative: bool
) -> None:
    name = "exact_match" if generative else "accuracy"
    methods = list(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    bars = left.bar(methods, [results[m][name] for m in methods], color="tab:blue")
    left.bar_label(bars, labels=[f"{results[m][name]:.1%}" for m in methods])
    left.set(ylim=(0, 1.08), ylabel=f"test {name.replace('_', ' ')}", title="The four ways")
    shown = [m for m in methods if "perplexity" in results[m]]
    if before is not None:
        values = [before, *[results[m]["perplexity"] for m in shown]]
        bars = right.bar(["before", *shown], values, color=["tab:gray"] + ["tab:red"] * len(shown))
        right.bar_label(bars, labels=[f"{v:.1f}" for v in values])
    right.set(ylabel="perplexity on news text (lower: less forgotten)",
              title="Forgetting: general text before and after")  # fmt: skip
    figures.save(fig, run.figure_path("methods"))


# -- a fine-tuned run, back: `deepscape generate` and `deepscape serve` --------------------------
@dataclass
class FineTunedLM:
    model: torch.nn.Module
    llm: LanguageModel
    instruction: str

    def complete(
        self, prompt: str, *, max_new_tokens: int = 32, temperature: float = 0.0,
        top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
    ) -> str:  # fmt: skip
        """`prompt` (the text: a review, or a story and its question) and the fine-tuned
        model's answer, asked as in training (the instruction first, in the chat template)."""
        from deepscape.generate import generate

        if not prompt.strip():
            raise ConfigError("the prompt is empty: give a text for the model to answer")
        tokenizer = self.llm.tokenizer
        context = int(self.llm.model.config.max_position_embeddings)
        ids = tuning.chat_prompt_ids(tokenizer, user_message(self.instruction, prompt),
                                     max_length=context - max_new_tokens)  # fmt: skip
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        with tuning.merged(self.model) as model:
            new = generate(model, ids, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_k=top_k, top_p=top_p, greedy=temperature == 0, generator=generator,
                           stop_tokens=[tuning.end_of_turn(tokenizer)])  # fmt: skip
        answer = tokenizer.decode(new[0].tolist(), skip_special_tokens=True)
        return f"{prompt}\n\n→ {answer.strip()}"


def language_model_for(run: Run) -> FineTunedLM:
    """A finished run's LLM with its LoRA adapter (safetensors: nothing is unpickled)."""
    from deepscape.inside import InspectError

    path = run.dir / ADAPTER
    if not path.is_file():
        raise InspectError(
            f"run {run.id} kept no LoRA adapter ({run.status}): run "
            "`deepscape run language/201/fine-tuning methods=lora` and use that run"
        )
    config = run.config_as(Config)
    llm = load_llm(config.llm)
    model = tuning.load_adapter(copy.deepcopy(llm.model), path)
    instruction = (run.summary.get("data") or {}).get("instruction") or SENTIMENT.question
    return FineTunedLM(model, llm, instruction)
