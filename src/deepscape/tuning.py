"""Fine-tuning a causal LLM on prompt → answer examples: full, or with LoRA adapters.

An example is a user's prompt and the assistant's answer. It becomes one sequence of token ids:
the chat template around the prompt (as `deepscape.models.language.prompt_ids` builds it, the
assistant's turn open), then the answer's tokens and the end-of-turn token. The loss is the
cross-entropy of the answer's tokens only — the prompt is given, not learned — so each row's
labels are -100 (ignored) everywhere else. Only the positions that predict an answer token go
through the LM head (transformers' `logits_to_keep` with a boolean mask): with a 49k-token
vocabulary the head over every position would cost as much as the rest of the model.

LoRA (Hu et al. 2021) freezes the model and learns, beside each chosen projection W (d_out × d_in),
a low-rank update (alpha / rank) · B·A with A: rank × d_in, B: d_out × rank, B starting at zero (the
model starts as it was). At rank 8 on every attention and MLP projection of SmolLM2-135M that is
2.4 M parameters, 1.8 % of the model; on the attention projections alone 0.7 %. `peft` does
the wrapping; the adapter alone is saved (safetensors, its settings in the file's metadata).

Measured with it: label accuracy (log P(label | prompt) of each label, as zero-shot
classification reads an LLM, the likeliest wins), exact match of greedy answers
(`deepscape.generate`), and perplexity on general text (what fine-tuning made the model forget).

    llm = load_llm()
    model = add_lora(copy.deepcopy(llm.model), rank=8)        # peft changes the model in place
    result = train(model, llm.tokenizer, examples, steps=100, batch_size=8, lr=1e-3)
    accuracy = label_accuracy(model, llm.tokenizer, test_examples, ["negative", "positive"])
    save_adapter(model, run.dir / "adapter.safetensors")
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from deepscape import distributed, sharding
from deepscape.config import ConfigError
from deepscape.generate import as_lm, common_prefix, generate, last_position, prefix_cache
from deepscape.loop import track
from deepscape.models.language import label_logprobs

IGNORE = -100  # the label of a position whose token is not learned (cross-entropy's ignore_index)
# every linear projection of a Llama block (SmolLM2's): attention, then the SwiGLU MLP
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
LORA_TARGETS = ATTENTION + MLP


@dataclass(frozen=True)
class Example:
    """One thing to learn: the user's `prompt` and the assistant's `answer` to it."""

    prompt: str
    answer: str


@dataclass
class Encoded:
    """An example as token ids: `ids` (prompt, answer, end of turn) and `labels`, the same ids
    where the answer and end of turn are, IGNORE on the prompt."""

    ids: list[int]
    labels: list[int]

    @property
    def answer_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


@dataclass
class Batch:
    """Encoded examples padded on the right to one length: ids and labels "b t"; the first
    `shared` tokens are the same in every row (and learned in none)."""

    ids: Tensor
    labels: Tensor
    shared: int = 0


@dataclass
class TrainResult:
    """What `train` did: the loss of every step (mean over its answer tokens), the seconds it
    took, the tokens it read (prompts and answers, no padding), and the memory its tensors
    needed in MB: weights, gradients, AdamW's two moments, and the activations kept for the
    backward pass (the largest step's), each counted from the tensors themselves."""

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens: int = 0
    memory_mb: dict[str, float] = field(default_factory=dict)

    @property
    def peak_memory_mb(self) -> float:
        """The memory training needs at its peak (the parts of `memory_mb` added up)."""
        return sum(self.memory_mb.values())

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, self.steps)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


# -- token ids ------------------------------------------------------------------------------------
def end_of_turn(tokenizer: Any) -> int:
    """The token that ends the assistant's turn (SmolLM2: <|im_end|>, also its EOS)."""
    return int(tokenizer.eos_token_id)


def chat_prompt_ids(
    tokenizer: Any, prompt: str, *, shots: Sequence[Example] = (), max_length: int = 0
) -> list[int]:
    """Token ids of the chat: the user says `prompt`, the assistant's turn is open (its next
    token is the first of the answer). `shots` are earlier turns, each a user's prompt and the
    assistant's answer: few-shot prompting as a chat. Raises ConfigError when the ids are more
    than `max_length` (> 0)."""
    messages = []
    for shot in shots:
        messages += [{"role": "user", "content": shot.prompt},
                     {"role": "assistant", "content": shot.answer}]  # fmt: skip
    messages.append({"role": "user", "content": prompt})
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    ids = list(ids)
    if max_length and len(ids) > max_length:
        raise ConfigError(
            f"a prompt of {len(ids)} tokens is longer than the context of {max_length}: "
            "shorten the prompt (fewer shots) or raise max_length"
        )
    return ids


def encode(tokenizer: Any, example: Example, *, max_length: int = 0) -> Encoded:
    """`example` as ids and labels, the loss masked to the answer and its end-of-turn token.
    Raises ConfigError when the whole is more than `max_length` (> 0) tokens."""
    prompt = chat_prompt_ids(tokenizer, example.prompt)
    answer = [*tokenizer.encode(example.answer, add_special_tokens=False), end_of_turn(tokenizer)]
    ids = prompt + answer
    if max_length and len(ids) > max_length:
        raise ConfigError(
            f"an example of {len(ids)} tokens (prompt and answer) is longer than the context of "
            f"{max_length}: shorten the prompt or raise max_length"
        )
    return Encoded(ids, [IGNORE] * len(prompt) + answer)


def collate(encoded: Sequence[Encoded], pad_id: int = 0) -> Batch:
    """Examples padded on the right with `pad_id` (labels with IGNORE). No attention mask is
    needed: causal attention never looks right, so padding changes no real position."""
    longest = max(len(e.ids) for e in encoded)
    ids = torch.full((len(encoded), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), longest), IGNORE, dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
    # the shared start ends before any row's last prompt token (which predicts an answer token)
    prompts = min(e.labels.index(next(x for x in e.labels if x != IGNORE)) for e in encoded)
    shared = min(common_prefix([e.ids for e in encoded]), prompts - 1) if len(encoded) > 1 else 0
    return Batch(ids, labels, max(0, shared))


def unwrapped(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft model (its LoRA layers are in it), else `model`:
    called directly, it takes the same arguments without peft's wrapper in between."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextlib.contextmanager
def merged(model: nn.Module) -> Iterator[nn.Module]:
    """`model` to measure with, in eval mode: a peft model's adapters merged into its weights
    (W + (alpha / rank)·B·A: as fast as the model without them), unmerged afterwards."""
    was_training = model.training
    model.eval()
    merging = hasattr(model, "merge_adapter")
    if merging:
        model.merge_adapter()
    try:
        yield unwrapped(model)
    finally:
        if merging:
            model.unmerge_adapter()
        model.train(was_training)


def answer_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Mean cross-entropy of the answer tokens of `batch`. The LM head runs only at the
    positions that predict one (position p predicts token p + 1). The rows' shared start
    (system prompt, instruction) goes through the model once, its keys and values repeated for
    every row: the same gradients as reading it b times, for a fraction of the work."""
    lm = as_lm(unwrapped(model))
    device = next(model.parameters()).device
    targets = batch.labels[:, 1:]
    learned = targets != IGNORE
    keep = torch.zeros_like(batch.labels, dtype=torch.bool)
    keep[:, :-1] = learned
    cache = lm.new_cache(batch.ids.shape[1])
    start = batch.shared
    if start:
        prefix = batch.ids[:1, :start].to(device)
        lm(prefix, cache, last_position(prefix))  # for its keys and values, with their gradients
        cache.inner.batch_repeat_interleave(batch.ids.shape[0])
    # a boolean "b t" mask: logits "n vocab" of the kept positions, in row-major order
    logits = lm(batch.ids[:, start:].to(device), cache, keep[:, start:].to(device))
    return F.cross_entropy(logits.float(), targets[learned].to(device))


# -- LoRA -----------------------------------------------------------------------------------------
def projection_names(model: nn.Module) -> list[str]:
    """The names (last part) of the linear layers inside `model`'s blocks: what LoRA can target
    (the LM head, tied to the embeddings, is left out)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and ".layers." in f".{name}"}  # fmt: skip
    return sorted(names)


def add_lora(
    model: nn.Module,
    *,
    rank: int = 8,
    alpha: float = 16.0,
    targets: Sequence[str] = LORA_TARGETS,
    dropout: float = 0.0,
) -> nn.Module:
    """`model` with LoRA adapters of `rank` on every projection named in `targets` (a peft
    PeftModel; only the adapters train). The update is scaled by alpha / rank. peft replaces
    the projections in place: pass a copy of a model that is used elsewhere (`load_llm`'s).
    Raises ConfigError for rank ≤ 0 or a target the model lacks (naming those it has)."""
    from peft import LoraConfig, get_peft_model

    if rank <= 0:
        raise ConfigError(f"LoRA rank={rank}: give a rank ≥ 1 (4 to 16 is usual)")
    if not targets:
        raise ConfigError(f"give LoRA at least one target module, of {', '.join(LORA_TARGETS)}")
    known = projection_names(model)
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise ConfigError(
            f"unknown LoRA target module {', '.join(map(repr, unknown))}: this model's "
            f"projections are {', '.join(known)}"
        )
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets),
                        lora_dropout=dropout, bias="none")  # fmt: skip
    with warnings.catch_warnings():  # peft asks transformers a deprecated question: not ours
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config)


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, all) parameters of `model`, a shared (tied) tensor counted once."""
    seen = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in seen if p.requires_grad), sum(p.numel() for p in seen)


def save_adapter(model: nn.Module, path: Path) -> Path:
    """The LoRA adapter of `model` (a peft model) alone, as safetensors at `path`; its rank,
    alpha and targets go in the file's metadata."""
    from peft import get_peft_model_state_dict

    config = model.peft_config["default"]
    settings = {
        "rank": config.r,
        "alpha": config.lora_alpha,
        "targets": sorted(config.target_modules),
        "dropout": config.lora_dropout,
    }
    state = get_peft_model_state_dict(model, save_embedding_layers=False)  # LoRA's A and B only
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    save_file(tensors, str(path), metadata={"lora": json.dumps(settings)})
    return path


def load_adapter(model: nn.Module, path: Path) -> nn.Module:
    """`model` (pass a copy of a shared one: it changes in place) with the LoRA adapter saved
    at `path` by `save_adapter`. Nothing is unpickled."""
    from peft import set_peft_model_state_dict

    with safe_open(str(path), framework="pt") as file:
        settings = json.loads((file.metadata() or {})["lora"])
        tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    lora = add_lora(model, rank=settings["rank"], alpha=settings["alpha"],
                    targets=settings["targets"], dropout=settings["dropout"])  # fmt: skip
    result = set_peft_model_state_dict(lora, tensors)
    if result.unexpected_keys:
        raise ConfigError(f"{path} does not fit this model: {result.unexpected_keys[:3]}…")
    return lora.eval()


# -- training -------------------------------------------------------------------------------------
def length_grouped(
    lengths: Sequence[int], batch_size: int, generator: random.Random
) -> Iterator[list[int]]:
    """Batches of indices, forever: each pass shuffled, then sorted by length within pools of 50
    batches (little padding, still random), the batches' order shuffled again."""
    while True:
        order = list(range(len(lengths)))
        generator.shuffle(order)
        pool = 50 * batch_size
        batches = []
        for start in range(0, len(order), pool):
            part = sorted(order[start : start + pool], key=lengths.__getitem__)
            batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        generator.shuffle(batches)
        yield from batches


def tensor_megabytes(tensors: Iterator[Tensor] | Sequence[Tensor]) -> float:
    """Megabytes held by `tensors`, each storage counted once."""
    sizes = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(sizes.values()) / 2**20


class SavedForBackward:
    """Counts the megabytes of the tensors a forward pass keeps for the backward pass (the
    activations; the weights it also keeps are not counted again), through autograd's hooks."""

    def __init__(self, parameters: Sequence[Tensor]):
        self.skip = {p.untyped_storage().data_ptr() for p in parameters}
        self.sizes: dict[int, int] = {}

    def pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.skip:
            self.sizes[storage.data_ptr()] = storage.nbytes()
        return tensor

    def __enter__(self) -> SavedForBackward:
        self.sizes = {}
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hooks.__exit__(*exc)

    @property
    def megabytes(self) -> float:
        return sum(self.sizes.values()) / 2**20


def train(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    warmup: float = 0.05,
    grad_clip: float = 1.0,
    max_length: int = 512,
    seconds: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    description: str = "fine-tuning",
    on_step: Callable[[int, float], None] | None = None,
    shard: bool = False,
) -> TrainResult:
    """Train `model`'s trainable parameters (all of them, or a LoRA's) on `examples` for
    `steps` steps of AdamW on `batch_size` examples, the loss on the answers only. The LR warms
    up linearly over the first `warmup` fraction of training, then decays linearly to zero.
    With `seconds` > 0, training also ends after that many seconds, and the fraction done is
    the larger of steps and seconds done: the schedule ends on time on any machine. Batches
    group examples of similar length. `on_step(step, loss)` is called after each step.
    A plain loop, not the core Trainer: that one saves the whole model in a run and needs a
    run and its config, where this is called by several labs, on a model shared in memory.

    Under a launcher (`torchrun`/`accelerate launch`, N processes) `batch_size` is the global
    batch: every process draws the same batches, reads its N-th of each, and the gradients are
    summed, each process's loss weighted by its share of the batch's answer tokens. N processes
    therefore take the steps one process takes, at the same LR, each doing 1/N of the work.
    With `shard` (FSDP, `deepscape.sharding`) a copy of the model learns in N shards, each
    process holding 1/N of the weights, gradients and AdamW state, and `model` takes its trained
    weights at the end: the same steps, for a model whose training state does not fit one device.
    (Sharded, every process computes every step; one left no rows of a short batch weighs its
    loss by 0. Activations are not measured.)"""
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps={steps}, batch_size={batch_size}: give both ≥ 1")
    if batch_size < distributed.processes():
        raise ConfigError(f"batch_size={batch_size} is shared by {distributed.processes()} "
                          "processes: give a batch_size of at least that many")  # fmt: skip
    encoded = [encode(tokenizer, e, max_length=max_length) for e in examples]
    batches = length_grouped([len(e.ids) for e in encoded], batch_size, random.Random(seed))
    distributed.same_start([p for p in model.parameters() if p.requires_grad])
    sharded = shard and distributed.processes() > 1
    device = next(model.parameters()).device
    learner = sharding.shard(copy.deepcopy(model), device) if sharded else model
    parameters = [p for p in learner.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    result = TrainResult()
    weights = [sharding.local(p) for p in learner.parameters()]
    # sharded, activations are not measured: the saved-tensor hooks would count the weights FSDP
    # gathers for each block as activations too (7.3 MB for 2.6 in the two-process test's model)
    saved, activations = None if sharded else SavedForBackward(weights), 0.0
    learner.train()
    started = time.perf_counter()
    for step in track(range(steps), description=description, transient=True,
                      disable=not progress):  # fmt: skip
        done = step / steps
        if seconds > 0:  # the main process's clock, so that every process stops at one step
            done = max(done, distributed.main_value(time.perf_counter() - started) / seconds)
            if done >= 1:
                break
        scale = min(1.0, done / warmup) if warmup > 0 and done < warmup else 1.0
        if done >= warmup:
            scale = (1 - done) / (1 - warmup)
        for group in optimizer.param_groups:  # warmed from lr/steps, never exactly zero
            group["lr"] = lr * max(scale, 1 / steps)
        rows = next(batches)  # the global batch
        mine = distributed.my_share(rows)
        answer_tokens = sum(len(encoded[i].ids) - encoded[i].labels.count(IGNORE) for i in mine)
        (all_answer_tokens,) = distributed.sum_across(answer_tokens)
        optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros(())
        if mine or sharded:  # (a short last batch may leave a process none)
            batch = collate([encoded[i] for i in mine or rows[:1]], end_of_turn(tokenizer))
            # Sharded, each row reads its own start: the backward pass through the shared start's
            # cached keys and values found a block's weights freed (FSDP gathers them again
            # before a block's backward through its outputs, which that pass does not use)
            if sharded:
                batch.shared = 0
            with saved or contextlib.nullcontext():
                loss = answer_loss(learner, batch)
            activations = max(activations, saved.megabytes if saved else 0.0)
            # this process's part of the mean over every process's answer tokens
            loss = loss * (answer_tokens / all_answer_tokens)
            # the parts are summed; FSDP averages the gradients over the processes instead
            (loss * distributed.processes() if sharded else loss).backward()
        if not sharded:
            distributed.sum_gradients(parameters)
        (batch_loss,) = distributed.sum_across(loss.item())
        if not math.isfinite(batch_loss):
            raise FloatingPointError(f"the loss is {batch_loss} at step {step}: lower lr")
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()
        result.losses.append(batch_loss)
        result.tokens += sum(len(encoded[i].ids) for i in rows)
        if on_step is not None:
            on_step(step, batch_loss)
    result.seconds = time.perf_counter() - started
    if sharded:  # what this process held: its shards
        held = sharding.state_bytes(learner, optimizer)
        result.memory_mb = {kind: size / 2**20 for kind, size in held.items()}
        sharding.whole(learner, model)
    else:
        moments = [t for state in optimizer.state.values() for t in state.values() if t.dim() > 0]
        result.memory_mb = {
            "weights": tensor_megabytes(weights),
            "gradients": tensor_megabytes([p.grad for p in parameters if p.grad is not None]),
            "optimizer": tensor_megabytes(moments),
            "activations": activations,
        }
    distributed.check_replicas(list(model.parameters()))
    model.eval()
    return result


# -- measuring ------------------------------------------------------------------------------------
@torch.inference_mode()
def label_scores(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    labels: Sequence[str],
    *,
    shots: Sequence[Example] = (),
    batch_size: int = 16,
    progress: bool = True,
    description: str = "scoring labels",
) -> Tensor:
    """log P(the answer starts with label | prompt) "n labels", read as `zero_shot_scores` reads
    an LLM (`models.language.label_logprobs`), with the chat turns of `shots` before each
    prompt and any LoRA merged into the weights while it reads."""
    ids = [chat_prompt_ids(tokenizer, p, shots=shots) for p in prompts]
    with merged(model) as measured:
        return label_logprobs(measured, tokenizer, ids, labels, batch_size=batch_size,
                              progress=progress, description=description)  # fmt: skip


def label_accuracy(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    labels: Sequence[str],
    *,
    shots: Sequence[Example] = (),
    batch_size: int = 16,
    progress: bool = True,
) -> float:
    """The share of `examples` whose answer (one of `labels`) is the likeliest label."""
    scores = label_scores(model, tokenizer, [e.prompt for e in examples], labels, shots=shots,
                          batch_size=batch_size, progress=progress)  # fmt: skip
    truth = torch.tensor([list(labels).index(e.answer) for e in examples])
    return float((scores.argmax(1) == truth).float().mean())


def answers(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    shots: Sequence[Example] = (),
    max_new_tokens: int = 16,
    progress: bool = True,
    description: str = "answering",
) -> list[str]:
    """The model's greedy answer to each prompt (`deepscape.generate`, up to the end of its
    turn), prompts of one length generated together."""
    ids = [chat_prompt_ids(tokenizer, p, shots=shots) for p in prompts]
    by_length: dict[int, list[int]] = {}
    for i, row in enumerate(ids):
        by_length.setdefault(len(row), []).append(i)
    out = [""] * len(prompts)
    stop = end_of_turn(tokenizer)
    groups = [rows[s : s + 32] for rows in by_length.values() for s in range(0, len(rows), 32)]
    # the start every prompt shares (system prompt, demonstrations) is read once
    shared = common_prefix(ids) if len(ids) > 1 else 0
    with merged(model) as measured:
        prefix = None
        if shared:
            longest = max(map(len, ids)) + max_new_tokens
            prefix = prefix_cache(measured, ids[0][:shared], max_length=longest)
        for rows in track(groups, description=description, transient=True, disable=not progress):
            prompt = torch.tensor([ids[i][shared:] for i in rows])
            new = generate(measured, prompt, max_new_tokens=max_new_tokens, greedy=True,
                           stop_tokens=[stop], prefix=prefix)  # fmt: skip
            for i, tokens in zip(rows, new.tolist(), strict=True):
                tokens = tokens[: tokens.index(stop)] if stop in tokens else tokens
                out[i] = tokenizer.decode(tokens, skip_special_tokens=True)
    return out


def normalise(answer: str) -> str:
    """An answer as exact match compares it: lower-case, without surrounding space and final
    punctuation."""
    return answer.strip().strip(".!").strip().lower()


def exact_match(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    shots: Sequence[Example] = (),
    max_new_tokens: int = 16,
    progress: bool = True,
) -> tuple[float, list[str]]:
    """The share of `examples` whose greedy answer equals theirs (after `normalise`), and the
    answers given."""
    given = answers(model, tokenizer, [e.prompt for e in examples], shots=shots,
                    max_new_tokens=max_new_tokens, progress=progress)  # fmt: skip
    hits = [normalise(g) == normalise(e.answer) for g, e in zip(given, examples, strict=True)]
    return sum(hits) / max(1, len(hits)), given


@torch.inference_mode()
def perplexity(
    model: nn.Module, tokenizer: Any, texts: Sequence[str], *, window: int = 256,
    max_tokens: int = 8192,
) -> float:  # fmt: skip
    """exp(mean cross-entropy) of the next token over `texts` (plain text, no chat template),
    read in windows of `window` tokens, the first `max_tokens` tokens in all: how well the model
    still predicts general text (forgetting shows as a rise)."""
    text = "\n\n".join(texts)[: 8 * max_tokens]  # a token is < 8 characters: enough to cut from
    ids = tokenizer.encode(text, add_special_tokens=False)[:max_tokens]
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with merged(model) as measured:
        for start in range(0, len(ids) - 1, window):
            chunk = torch.tensor([ids[start : start + window + 1]], device=device)
            if chunk.shape[1] < 2:
                break
            logits = measured(input_ids=chunk[:, :-1]).logits
            total += float(F.cross_entropy(logits[0].float(), chunk[0, 1:], reduction="sum"))
            count += chunk.shape[1] - 1
    return math.exp(total / max(1, count))
