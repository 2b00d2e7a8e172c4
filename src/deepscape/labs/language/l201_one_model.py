"""language/201/one-model — one small instruct LLM asked to do everything, and where it falls short.

SmolLM2-135M-Instruct gets every task as a chat: an instruction, a text, and the answer it
gives. Classification (sentiment, TREC question types, AG News topics) is read as the label it
finds likeliest to say first; questions (a country's capital from memory, a figure read out of
a Factbook entry, "where is Mary?" in a bAbI story), sums and one-sentence summaries are
generated greedily (`generated`: prompts of any length in one batch, the start they share read
once) and judged by exact match or ROUGE-L (`l201_one_model_tasks`). Each task is asked in the
same ladder of ways:

- zero-shot, then 1, 4 and 8 demonstrations from the task's own pool (earlier turns of the
  chat; the same for every test item, the first k of one seeded draw);
- calibrated (classification; Zhao et al. 2021): the label probabilities the model gives a
  content-free input ("N/A", "", "[MASK]") with the same prompt measure its lean, and each
  answer's probabilities are divided by them before the argmax;
- fine-tuned (`lora=true`, language/201/fine-tuning's `deepscape.tuning`): one LoRA per task,
  and one LoRA on all the tasks' examples mixed, with the same steps in all (each task's LoRA
  `lora_steps`, the shared one that many times the number of tasks). Asked zero-shot after.

The table of task × method is the lesson (figures/task_by_method.png). Beside it, where
docs/benchmarks.md holds one, the task-specific model of language/101 on the same test set
(read from the benchmarks, never typed in). A relative score divides a method's score on a task
by the per-task LoRA's; its mean over the tasks says how much of the specialists one model keeps.

Measured on MR's 40 held-out sentences (tasks=sentiment n=40 shots=0,4 lora=false): zero-shot
65 % (32 of 40 answered "positive"), calibrated 72.5 %; with 4 demonstrations 50 % — every
answer "positive" — and calibration cannot help there: with the demonstrations before it, "N/A"
leans less to "positive" than any review does. A small model's few-shot prompt is a lean to
measure, not a free gain. Generation shows the other half: zero-shot it answers "The capital of
Uruguay is Montevideo." — right, and a miss by exact match — until demonstrations show the form.

The default run (5 offline tasks, 20 items each; threads=1, 20 minutes on 2 cores that 4 to 5
other jobs shared, load ≈ 5), zero-shot → best prompt → LoRA per task (8 steps of 8) → shared
LoRA (40 steps): sentiment 55 → 70 → 80 → 60 %, capitals 0 → 15 → 40 → 35 %, extraction 0 → 70
→ 100 → 100 %, sums 0 → 15 → 30 → 40 %, summaries (ROUGE-L) 0.16 → 0.17 → 0.16 → 0.16. A
LoRA of 64 examples teaches the form a prompt only hints at; the shared one kept the tasks
(mean relative score 0.99, target ≥ 0.95), but 20 items move a cell 5 points an answer: its
sums beat the specialist's by 2 answers and its sentiment lost 4.

With 40 items and twice the steps (n=40 shots=0 lora_steps=16; 25 minutes at load ≈ 5), per
task → shared: sentiment 75 → 50 % (chance), capitals 30 → 25 %, extraction 100 → 100 %, sums
62.5 → 67.5 %, summaries 0.17 → 0.17: mean relative score 0.91, the target missed — by the
one classification, whose labels the shared LoRA lost among four generative tasks. With seed=1
it kept them (82.5 → 80 %) and the mean was 0.99: the seed decides, and two seeds cannot say.

    deepscape run language/201/one-model                           # 5 tasks offline, 20 items each
    deepscape run language/201/one-model data_dir=../shared/data   # + SST-2, TREC, AG News, bAbI
    deepscape run language/201/one-model tasks=arithmetic,capital shots=0,8 lora=false
    deepscape run language/201/one-model n=40 shots=0 lora_steps=16      # 0.91 (seed=1: 0.99)
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from deepscape import distributed
from deepscape.config import ConfigError, closest, option
from deepscape.labs.language.l101_transfer import CONTENT_FREE, reading
from deepscape.labs.language.l201_one_model_figures import task_by_method
from deepscape.labs.language.l201_one_model_tasks import NAMES, Item, Task, available, load
from deepscape.loop import track
from deepscape.models.language import load_llm
from deepscape.papers import BENCHMARKS, FromBenchmarks, measure
from deepscape.runs import Run, RunStore
from deepscape.tuning import Example, add_lora, label_scores, normalise, save_adapter
from deepscape.tuning import train as train_lora

TaskName = Literal["sentiment", "trec", "ag-news", "capital", "extraction", "babi", "summary",
                   "arithmetic"]  # fmt: skip
# language/101's task-specific models, as docs/benchmarks.md records them (the dataset each needs)
SPECIALISTS = {
    "sentiment (SST-2)": FromBenchmarks(
        "language_101_transfer", "6,920", "MiniLM fine-tuned on all 6,920 SST-2 sentences",
        {"labelled sentences": "MiniLM fine-tuned"}),
    "question type (TREC)": FromBenchmarks(
        "language_101_sentence_cnn", "test", "Kim's CNN on GloVe + MiniLM vectors, TREC",
        {"dataset": "trec", "embeddings": "glove+minilm embedding_lr=0.3"}),
}  # fmt: skip


GLOBAL_BATCH = True  # its LoRAs train through deepscape.tuning.train: see its docstring


@dataclass
class Config:
    seed: int = option(0, "random seed: test items, demonstrations, LoRA batches")
    threads: int = option(0, "CPU threads for PyTorch (0: all cores)")
    tasks: tuple[TaskName, ...] = option((), "tasks to ask (empty: every task whose data is here)")
    data_dir: str | None = option(
        None, "folder with sentclf/, ag_news/, babi-qa1/ (../shared/data)"
    )
    n: int = option(20, "test items per task (fewer where a set has fewer)")
    shots: tuple[int, ...] = option((0, 1, 4, 8), "demonstrations shown, one column for each")
    calibrate: bool = option(True, "contextual calibration of the classifications")
    digits: int = option(2, "digits of each number in the arithmetic task's sums")
    llm: str = option("SmolLM2-135M-Instruct", "the instruct LLM (offline: SmolLM2)")
    # fine-tuning
    lora: bool = option(True, "train a LoRA per task and one on all tasks, then compare")
    lora_steps: int = option(8, "steps of each task's LoRA (the shared one: this × tasks)")
    lora_rank: int = option(8, "LoRA rank, on every attention and MLP projection")
    batch_size: int = option(8, "examples per LoRA step")
    lr: float = option(1e-3, "peak learning rate of the LoRAs (AdamW)")


def check(config: Config) -> None:
    """One-line errors for what cannot run, before the model is read."""
    for name in config.tasks:
        if name not in NAMES:
            raise ConfigError(f"task {name!r} is not one of {', '.join(NAMES)}"
                              f"{closest(name, NAMES)}")  # fmt: skip
    if config.n < 1:
        raise ConfigError(f"n={config.n}: give at least 1 test item per task")
    if not config.shots or any(k < 0 or k > 32 for k in config.shots):
        raise ConfigError(f"shots={list(config.shots)}: give demonstrations between 0 and 32")
    if config.digits < 1:
        raise ConfigError(f"digits={config.digits}: sums need numbers of at least 1 digit")
    if config.lora and config.lora_steps < 1:
        raise ConfigError(f"lora_steps={config.lora_steps}: give ≥ 1 step, or lora=false")
    if config.lora and config.lora_rank < 1:
        raise ConfigError(f"lora_rank={config.lora_rank}: give a rank ≥ 1 (4 to 16 is usual)")


def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    data_dir = Path(config.data_dir) if config.data_dir else None
    names = list(config.tasks) or available(data_dir)
    tasks = {name: load(name, data_dir, config.n, config.seed, config.digits) for name in names}
    run.update_summary(tasks={t.name: {"test": len(t.test), "pool": len(t.pool),
                                       "metric": t.metric, "source": t.source}
                              for t in tasks.values()})  # fmt: skip
    with reading(f"reading {config.llm} (a GGUF file takes ~20 s)", run.show_progress):
        llm = load_llm(config.llm)

    # 1. One model, prompted: the ladder of shots, and calibration where there are labels.
    table: dict[str, dict[str, float]] = {t.name: {} for t in tasks.values()}
    outputs: dict[str, dict[str, list[str]]] = {t.name: {} for t in tasks.values()}
    seconds: dict[str, float] = {}
    for task in tasks.values():
        started = time.perf_counter()
        for k, shots in demonstrations(task, config.shots, config.seed).items():
            found = ask(llm.model, llm.tokenizer, task, shots, run, f"{k}-shot",
                        calibrated=config.calibrate)  # fmt: skip
            table[task.name] |= found.scores
            outputs[task.name][f"{k}-shot"] = found.given[:5]
        seconds[task.name] = time.perf_counter() - started

    # 2. Fine-tuned: one LoRA per task against one LoRA for all of them, the same steps in all.
    lora = fine_tune(llm, list(tasks.values()), config, run) if config.lora else {}
    for name, scores in lora.items():
        table[name] |= scores

    # 3. Beside them, language/101's task-specific models where the benchmarks hold one.
    store = RunStore(run.dir.parent)
    text = BENCHMARKS.read_text() if BENCHMARKS.is_file() else ""
    specialists = {}
    for name in table:
        ref = SPECIALISTS.get(name)
        measured = measure(ref, store, text) if ref else None
        if measured and measured.value is not None:
            table[name]["101 specialist"] = measured.value / 100
            specialists[name] = {"what": ref.what, "text": measured.text, "source": measured.source}

    metrics = summarise(table, tasks, config)
    run.update_summary(table=table, specialists=specialists, sample_answers=outputs,
                       prompting_seconds=seconds,
                       llm={"name": llm.name, "source": llm.source, "precision": "fp32",
                            "threads": torch.get_num_threads()})  # fmt: skip
    title = f"{llm.name}: one model, {len(tasks)} tasks, {config.n} items each"
    task_by_method(run, table, {t.name: t.metric for t in tasks.values()}, title=title)
    return metrics


def demonstrations(task: Task, shots: tuple[int, ...], seed: int) -> dict[int, list[Example]]:
    """For each k of `shots`, the first k of one seeded draw from the task's pool: 4-shot shows
    1-shot's example and three more, so the columns differ by the shots alone."""
    drawn = task.examples(random.Random(seed).sample(task.pool, max(shots)))
    return {k: drawn[:k] for k in shots}


# -- asking: label scores or generated answers -----------------------------------------------------
@dataclass
class Asked:
    scores: dict[str, float]  # method → score on the task
    given: list[str]  # the answers, as the model gave them (classification: the label)


def ask(model: Any, tokenizer: Any, task: Task, shots: list[Example], run: Run, method: str,
        *, calibrated: bool) -> Asked:  # fmt: skip
    """`task`'s test items asked with `shots` before each: its score as `method`, and as
    `method` calibrated when the task has labels and `calibrated` is asked for."""
    prompts = [task.prompt(item.text) for item in task.test]
    description = f"{task.name}, {method}"
    if not task.classification:
        given = generated(model, tokenizer, prompts, shots=shots,
                          max_new_tokens=task.max_new_tokens, progress=run.show_progress,
                          description=description)  # fmt: skip
        return Asked({method: judge(task, given)}, given)
    scores = label_scores(model, tokenizer, prompts, task.labels, shots=shots,
                          progress=run.show_progress, description=description)  # fmt: skip
    truth = torch.tensor([task.labels.index(item.answers[0]) for item in task.test])
    found = {method: float((scores.argmax(1) == truth).float().mean())}
    if calibrated:
        lean = label_scores(model, tokenizer, [task.prompt(t) for t in CONTENT_FREE],
                            task.labels, shots=shots, progress=False)  # fmt: skip
        found[f"{method} calibrated"] = float((calibrate(scores, lean).argmax(1) == truth)
                                              .float().mean())  # fmt: skip
    return Asked(found, [task.labels[i] for i in scores.argmax(1).tolist()])


@torch.inference_mode()
def generated(model: Any, tokenizer: Any, prompts: list[str], *, shots: list[Example],
              max_new_tokens: int, tokens_per_batch: int = 16_384, progress: bool = True,
              description: str = "answering") -> list[str]:  # fmt: skip
    """Greedy answers, as `deepscape.tuning.answers` gives them, for prompts of any lengths in
    one batch. The start all prompts share (system prompt, demonstrations, instruction) is read
    once (`prefix_cache`); each prompt's own end is padded on its left, the padding masked out
    and the positions counted without it. `answers` batches only prompts of one length: a
    Factbook entry or a history has a length of its own, so there it asks one at a time.
    A batch holds at most `tokens_per_batch` tokens of keys and values (every row has its own
    copy of the shared start)."""

    from deepscape.generate import as_lm, common_prefix, prefix_cache
    from deepscape.tuning import chat_prompt_ids, end_of_turn, merged

    ids = [chat_prompt_ids(tokenizer, p, shots=shots) for p in prompts]
    shared = common_prefix(ids) if len(ids) > 1 else 0
    stop = end_of_turn(tokenizer)
    longest = max(map(len, ids)) + max_new_tokens
    rows_per_batch = max(1, min(32, tokens_per_batch // longest))
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # little padding in a batch
    batches = [order[s : s + rows_per_batch] for s in range(0, len(order), rows_per_batch)]
    out = [""] * len(ids)
    with merged(model) as measured:
        lm = as_lm(measured)
        prefix = prefix_cache(measured, ids[0][:shared], max_length=longest) if shared else None
        for rows in track(batches, description=description, transient=True,
                          disable=not progress):  # fmt: skip
            own = [ids[i][shared:] for i in rows]
            width = max(map(len, own))
            tokens = torch.full((len(rows), width), stop)
            seen = torch.zeros(len(rows), shared + width, dtype=torch.long)  # attention mask
            seen[:, :shared] = 1
            for row, end in enumerate(own):
                tokens[row, width - len(end) :] = torch.tensor(end)
                seen[row, shared + width - len(end) :] = 1
            positions = (seen.cumsum(1) - 1).clamp(min=0)[:, shared:]
            cache = (prefix.select(torch.zeros(len(rows), dtype=torch.long)).inner
                     if prefix is not None else None)  # fmt: skip
            new, ended = [], torch.zeros(len(rows), dtype=torch.bool)
            for _ in range(max_new_tokens):
                step = measured(input_ids=tokens, attention_mask=seen, position_ids=positions,
                                use_cache=True, logits_to_keep=1,
                                **{lm.cache_name: cache})  # fmt: skip
                cache = getattr(step, lm.cache_name)
                token = torch.where(ended, stop, step.logits[:, -1].argmax(-1))
                new.append(token)
                ended |= token == stop
                if bool(ended.all()):
                    break
                tokens, positions = token[:, None], positions[:, -1:] + 1
                seen = torch.cat([seen, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)
            for i, answer in zip(rows, torch.stack(new, 1).tolist(), strict=True):
                answer = answer[: answer.index(stop)] if stop in answer else answer
                out[i] = tokenizer.decode(answer, skip_special_tokens=True)
    return out


def calibrate(scores: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021): log-probabilities "n labels" (renormalised over
    the labels) less the log of the mean label probabilities "m labels" that the same prompt
    gives content-free inputs — each answer's probabilities divided by the prompt's lean."""
    lean = content_free.log_softmax(1).exp().mean(0)
    return scores.log_softmax(1) - lean.log()


def judge(task: Task, given: list[str]) -> float:
    """Exact match (any accepted answer, after `normalise`), or ROUGE-L F (pycocoevalcap's, on
    lower-cased words) for summaries."""
    if task.metric == "ROUGE-L":
        from pycocoevalcap.rouge.rouge import Rouge

        rouge = Rouge()
        return sum(rouge.calc_score([words(g)], [words(item.answers[0])])
                   for g, item in zip(given, task.test, strict=True)) / len(given)  # fmt: skip
    return sum(correct(g, item) for g, item in zip(given, task.test, strict=True)) / len(given)


def correct(given: str, item: Item) -> bool:
    return normalise(given) in {normalise(a) for a in item.answers}


def words(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split()) or "-"


# -- fine-tuning: one LoRA per task, one for all ---------------------------------------------------
def fine_tune(llm: Any, tasks: list[Task], config: Config, run: Run) -> dict[str, dict]:
    """Each task's LoRA trained on its pool for `lora_steps`, and one LoRA on all the pools mixed
    for `lora_steps` × tasks; all asked zero-shot on the test items. The shared adapter is kept
    in the run (adapter.safetensors)."""
    count = config.lora_steps * config.batch_size
    generator = random.Random(config.seed)
    examples = {t.name: t.examples(generator.choices(t.pool, k=count)) for t in tasks}
    found: dict[str, dict[str, float]] = {t.name: {} for t in tasks}
    costs: dict[str, Any] = {}

    def trained(train_on: list[Example], steps: int, what: str) -> Any:
        model = add_lora(copy.deepcopy(llm.model), rank=config.lora_rank)
        result = train_lora(model, llm.tokenizer, train_on, steps=steps,
                            batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                            progress=run.show_progress, description=f"LoRA: {what}")  # fmt: skip
        costs[what] = {"steps": result.steps, "seconds": result.seconds,
                       "tokens_per_s": result.tokens_per_second,
                       "final_loss": sum(result.losses[-5:]) / len(result.losses[-5:])}  # fmt: skip
        return model

    for task in tasks:
        model = trained(examples[task.name], config.lora_steps, task.name)
        asked = ask(model, llm.tokenizer, task, [], run, "LoRA per task", calibrated=False)
        found[task.name] |= asked.scores
        del model
    mixed = [e for task in tasks for e in examples[task.name]]
    model = trained(mixed, config.lora_steps * len(tasks), "all tasks")
    for task in tasks:
        asked = ask(model, llm.tokenizer, task, [], run, "LoRA all tasks", calibrated=False)
        found[task.name] |= asked.scores
    save_adapter(model, run.dir / "adapter.safetensors")
    run.update_summary(lora={"rank": config.lora_rank, "lr": config.lr, "costs": costs,
                             "batch_size": config.batch_size})  # fmt: skip
    return found


# -- the table's verdicts --------------------------------------------------------------------------
def slug(name: str) -> str:
    return name.split(" (")[0].replace(" ", "_")


def summarise(table: dict[str, dict[str, float]], tasks: dict[str, Task], config: Config
              ) -> dict[str, float]:  # fmt: skip
    """Every cell as a metric (`capital_8shot`, `sentiment_lora_all_tasks`…), and the means of
    the relative scores: each method against the per-task LoRA (and against 101's models)."""
    metrics = {f"{slug(task)}_{method.replace('-', '').replace(' ', '_').lower()}": value
               for task, row in table.items() for method, value in row.items()}  # fmt: skip
    prompting = [f"{k}-shot" for k in config.shots]
    # the best rung of the prompting ladder, chosen on the test items: an upper bound
    best_prompt = {task: max(v for m, v in row.items() if m.split("-")[0].isdigit())
                   for task, row in table.items()}  # fmt: skip
    metrics["best_prompting_mean"] = sum(best_prompt.values()) / len(best_prompt)
    for k in prompting:
        metrics[f"mean_{k.replace('-', '')}"] = sum(r[k] for r in table.values()) / len(table)
    if config.lora:
        relative = {task: row["LoRA all tasks"] / row["LoRA per task"]
                    for task, row in table.items() if row["LoRA per task"] > 0}  # fmt: skip
        metrics["mean_relative_score"] = sum(relative.values()) / max(1, len(relative))
        metrics["prompting_relative_to_lora"] = mean_ratio(best_prompt, table, "LoRA per task")
    if any("101 specialist" in row for row in table.values()):
        metrics["prompting_relative_to_101"] = mean_ratio(best_prompt, table, "101 specialist")
    return metrics


def mean_ratio(scores: dict[str, float], table: dict[str, dict[str, float]], against: str) -> float:
    ratios = [scores[t] / row[against] for t, row in table.items() if row.get(against, 0) > 0]
    return sum(ratios) / len(ratios) if ratios else math.nan
