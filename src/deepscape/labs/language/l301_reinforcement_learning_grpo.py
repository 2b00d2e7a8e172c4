"""language/301/reinforcement-learning, part 2: GRPO — a small GPT learns to add from a reward.

The task has answers a program can check: sums made up by the lab ('\\n23+45=' → '86\\n', the
answer least significant digit first, as in language/201/unsolvable). The policy is language
201's small GPT, first taught the answer format by supervised fine-tuning (SFT) on a few hundred
worked sums only — labelled answers are dear, a checker is cheap — so that it is right some of
the time: a policy that is never right earns reward 0 everywhere and learns nothing, one that is
always right has nothing left to learn. (A few SFT steps on fresh sums would do too, but where
this GPT learns to carry is a cliff: 600 steps leave it at 1–12 %, 800 at 22–97 %, by seed.)

GRPO (Shao et al. 2024, DeepSeekMath) is PPO without the value network. For each prompt it
samples a group of G answers and rewards each (1 if exactly right, else 0). The advantage of an
answer is its reward against its own group's, (r − mean) / (std + eps): the group's mean is the
baseline a critic would have had to learn, measured instead, and for this very prompt. A prompt
the policy always (or never) solves gives every answer advantage 0: no signal, no update. The
objective is PPO's clipped ratio over the answer's tokens, min(ρ·A, clip(ρ, 1 ± ε)·A) with
ρ = π(token) / π_old(token), so that several optimisation steps on one batch of answers cannot
move the policy far; and a penalty β·KL(π ‖ π_ref) to the frozen SFT model, estimated per token
with k3 = π_ref/π − log(π_ref/π) − 1 (≥ 0, unbiased, low variance): the policy may get better
at the task but not forget how to write an answer (reward hacking and collapse stay in reach of
the reference).

Measured: the reward and held-out accuracy (greedy decoding, exact match, on sums never trained
on, neither by SFT nor by RL) before (the SFT model) and after, the KL to the reference and the
answer's length over training. The loop is the core `Loop`: a run stopped with Ctrl-C resumes
from its checkpoint (the policy and its optimizer; the reference is the SFT run's weights).

Measured with the defaults on one thread (beside two other jobs on 2 cores), seed 0: SFT on 400
sums leaves 39.8 % of 500 held-out sums right; 2,000 GRPO steps (16 prompts × 8 answers) take it
to 86.8 % in 4.4 minutes, the KL to the SFT model ~0.4 per answer token.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import torch
from einops import rearrange, repeat
from safetensors.torch import load_model
from torch import Tensor

from deepscape import distributed, figures
from deepscape.config import ConfigError, TrainConfig
from deepscape.data.shakespeare import CharTokenizer
from deepscape.devices import resolve_device
from deepscape.generate import generate
from deepscape.labs.language import l201_unsolvable_tasks as tasks
from deepscape.labs.language.l201_unsolvable_tasks import Example
from deepscape.loop import Loop
from deepscape.models.gpt import GPT, GPTConfig
from deepscape.runs import Run, RunStore
from deepscape.tasks import LanguageModeling
from deepscape.train import Trainer

if TYPE_CHECKING:  # the lab's Config holds part 2's options; the lab imports this module
    from deepscape.labs.language.l301_reinforcement_learning import Config

STOP = "\n"  # an answer ends with its line
EPS = 1e-4  # in the advantages' denominator: a group of equal rewards has std 0
GRAD_CLIP = 1.0  # the global gradient norm of a GRPO step, as TRL and the paper's setups clip it
Reward = Callable[[Example, str], float]


# -- the task --------------------------------------------------------------------------------------
class Problems:
    """Sums of two `digits`-digit numbers: a fixed held-out set, and fresh training sums that are
    never one of them."""

    def __init__(self, options: Config, seed: int):
        self.digits, self.layout = options.digits, options.layout
        rng, held = random.Random(f"heldout {seed}"), {}
        while len(held) < options.heldout_problems:
            example = self.draw_one(rng)
            held[example.prompt] = example
        self.heldout = list(held.values())

    def draw_one(self, rng: random.Random) -> Example:
        (example,) = tasks.sums(1, [self.digits], rng, layout=self.layout, width=self.digits)
        return example

    def draw(self, n: int, rng: random.Random, *, distinct: bool = False) -> list[Example]:
        """`n` training sums, none held out (and no two alike if `distinct`)."""
        taken, drawn = {e.prompt for e in self.heldout}, []
        while len(drawn) < n:
            example = self.draw_one(rng)
            if example.prompt not in taken:
                drawn.append(example)
                if distinct:
                    taken.add(example.prompt)
        return drawn

    def longest(self) -> Example:
        top = 10**self.digits - 1
        return tasks.sum_example(top, top, layout=self.layout, width=self.digits)


def distinct_problems(digits: int) -> int:
    numbers = 10 if digits == 1 else 9 * 10 ** (digits - 1)
    return numbers**2


def exact(example: Example, said: str) -> float:
    """The verifiable reward: 1 if the answer is exactly right (its line's end included)."""
    return float(said == example.answer)


def score(reward: Reward, examples: Sequence[Example], said: Sequence[str]) -> tuple[Tensor, int]:
    """Rewards "n" of the answers, and how many the reward function failed on: such an answer
    scores 0 and the run goes on (a checker that crashes must not end a long run)."""
    rewards, errors = [], 0
    for example, answer in zip(examples, said, strict=True):
        try:
            rewards.append(float(reward(example, answer)))
        except Exception:
            rewards.append(0.0)
            errors += 1
    return torch.tensor(rewards), errors


# -- GRPO, written out -----------------------------------------------------------------------------
def group_advantages(rewards: Tensor, eps: float = EPS) -> Tensor:
    """Rewards "prompts group" → advantages "prompts group": each answer against its group."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, correction=0)
    return (rewards - mean) / (std + eps)


def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from tokens sampled from π (Schulman's k3): with
    x = π_ref/π, x − log x − 1 ≥ 0, and its mean over π is the KL exactly."""
    log_ratio = ref_logp - logp
    return log_ratio.exp() - log_ratio - 1


def grpo_loss(
    logp: Tensor, old_logp: Tensor, ref_logp: Tensor, advantages: Tensor, mask: Tensor,
    *, clip: float, kl_coef: float,
) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
    """GRPO's objective, negated to be minimised. Log-probabilities "answers tokens" of the
    sampled tokens under the policy, the policy that sampled them and the reference; advantages
    "answers"; mask "answers tokens" marks each answer's tokens (up to its stop). Each answer's
    tokens are averaged, then the answers (the paper's 1/G Σ 1/|o| Σ_t)."""
    ratio = (logp - old_logp).exp()
    advantage = advantages[:, None]
    surrogate = torch.min(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)
    kl = k3(logp, ref_logp)
    per_token = -(surrogate - kl_coef * kl)
    mask = mask.float()
    loss = ((per_token * mask).sum(1) / mask.sum(1)).mean()
    with torch.no_grad():
        stats = {
            "kl": float((kl * mask).sum() / mask.sum()),
            "clipped": float((((ratio - 1).abs() > clip).float() * mask).sum() / mask.sum()),
        }
    return loss, stats


def answer_logprobs(model: GPT, ids: Tensor, start: int, temperature: float) -> Tensor:
    """log π(token | before) "b n" of the tokens ids[:, start:] (the answer after a prompt of
    `start` tokens), of the policy at `temperature` — the distribution the answers came from."""
    logits, _ = model(ids[:, :-1])
    logits = logits[:, start - 1 :].float() / temperature
    return logits.log_softmax(-1).gather(-1, ids[:, start:, None]).squeeze(-1)


def answer_mask(answers: Tensor, stop: int) -> Tensor:
    """True at each answer's tokens up to and with its first stop (`generate` repeats it after)."""
    stops = (answers == stop).long()
    return (stops.cumsum(1) - stops) == 0


@dataclass
class Sampled:
    ids: Tensor  # prompts and answers "answers t"
    mask: Tensor  # the answers' tokens "answers n"
    rewards: Tensor  # "prompts group"
    lengths: Tensor  # tokens written before the stop "answers"
    errors: int  # answers the reward function failed on


@torch.no_grad()
def sample(
    policy: GPT, problems: list[Example], tokenizer: CharTokenizer, options: Config,
    reward: Reward, max_new_tokens: int, generator: torch.Generator,
) -> Sampled:  # fmt: skip
    """A group of answers to each problem, rewarded (every prompt of the task has one length)."""
    device = next(policy.parameters()).device
    prompts = torch.tensor([tokenizer.encode(p.prompt) for p in problems], device=device)
    prompts = repeat(prompts, "p t -> (p g) t", g=options.group_size)
    stop = tokenizer.encode(STOP)[0]
    # cloned: `generate` makes inference tensors, which autograd may not save for backward
    answers = generate(policy, prompts, max_new_tokens=max_new_tokens, stop_tokens=[stop],
                       temperature=options.temperature, generator=generator).clone()  # fmt: skip
    mask = answer_mask(answers, stop)
    lengths = mask.sum(1).tolist()
    said = [tokenizer.decode(row[:n]) for row, n in zip(answers.tolist(), lengths, strict=True)]
    asked = [p for p in problems for _ in range(options.group_size)]
    rewards, errors = score(reward, asked, said)
    lengths = mask.sum(1) - (answers == stop).any(1).long()
    return Sampled(torch.cat([prompts, answers], 1), mask,
                   rearrange(rewards, "(p g) -> p g", g=options.group_size).to(device),
                   lengths.float(), errors)  # fmt: skip


def grpo_step(
    policy: GPT, reference: GPT, optimizer: torch.optim.Optimizer, batch: Sampled,
    prompt_length: int, options: Config,
) -> dict[str, float]:  # fmt: skip
    """`grpo_updates` optimisation steps on one batch of answers: the loss and KL before the
    first, and the share of tokens the last one clipped (none in the first: there ratio = 1)."""
    advantages = group_advantages(batch.rewards).flatten()
    with torch.no_grad():  # π_old: the policy that sampled; π_ref: the SFT model, frozen
        old = answer_logprobs(policy, batch.ids, prompt_length, options.temperature)
        ref = answer_logprobs(reference, batch.ids, prompt_length, options.temperature)
    first: dict[str, float] = {}
    for _ in range(options.grpo_updates):
        logp = answer_logprobs(policy, batch.ids, prompt_length, options.temperature)
        loss, stats = grpo_loss(logp, old, ref, advantages, batch.mask, clip=options.grpo_clip,
                                kl_coef=options.kl_coef)  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), GRAD_CLIP)
        optimizer.step()
        first = first or {"loss": loss.item(), **stats}
    return {**first, "clipped": stats["clipped"]}


# -- the lab's part 2 ------------------------------------------------------------------------------
def check(options: Config) -> None:
    """Bad options, each refused in one line before anything trains."""
    check_grpo(options)
    if not 1 <= options.digits <= 9:
        raise ConfigError(f"digits={options.digits}: give sums of numbers of 1 to 9 digits")
    for name in ("heldout_problems", "sft_examples"):
        if not 1 <= getattr(options, name) <= distinct_problems(options.digits) // 2:
            raise ConfigError(f"{name}={getattr(options, name)}: give 1 to half of the "
                              f"{distinct_problems(options.digits):,} sums of {options.digits}-"
                              "digit numbers (the rest are trained on)")  # fmt: skip
    if options.gpt_width % options.gpt_heads:
        raise ConfigError(f"gpt_width={options.gpt_width} must split into "
                          f"gpt_heads={options.gpt_heads} heads")  # fmt: skip


def check_grpo(options: Config) -> None:
    """The options of GRPO itself, whatever the policy."""
    if options.group_size < 2:
        raise ConfigError(f"group_size={options.group_size}: GRPO compares answers within a "
                          "group: give ≥ 2")  # fmt: skip
    counts = (options.sft_steps, options.sft_batch_size, options.grpo_steps,
              options.prompts_per_step, options.grpo_updates, options.grpo_eval_every)  # fmt: skip
    if min(counts) < 1:
        raise ConfigError("sft_steps, sft_batch_size, grpo_steps, prompts_per_step, "
                          "grpo_updates and grpo_eval_every must be at least 1")  # fmt: skip
    if options.temperature <= 0 or options.grpo_clip <= 0 or options.kl_coef < 0:
        raise ConfigError(f"temperature={options.temperature:g}, grpo_clip={options.grpo_clip:g}, "
                          f"kl_coef={options.kl_coef:g}: give temperature > 0 (sampled answers "
                          "differ), grpo_clip > 0 and kl_coef ≥ 0")  # fmt: skip


def language_model(config: Any, run: Run, reward: Reward = exact) -> dict[str, Any]:
    """SFT, then GRPO with `reward`; `config` is the lab's Config (Config with seed,
    threads and figures)."""
    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    problems = Problems(config, config.seed)
    tokenizer = CharTokenizer.from_text(STOP + "+=0123456789")
    longest = problems.longest()
    prompt_length = len(tokenizer.encode(longest.prompt))
    max_new_tokens = len(tokenizer.encode(longest.answer)) + 1  # one more: a longer one is wrong
    shape = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=prompt_length + max_new_tokens,
                      n_layer=config.gpt_layers, n_head=config.gpt_heads,
                      n_embd=config.gpt_width, bias=False, style="llama")  # fmt: skip
    policy, sft_seconds = supervised(config, run, problems, tokenizer, shape)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.grpo_lr, betas=(0.9, 0.99),
                                  weight_decay=0.0)  # fmt: skip
    # Adam's first steps move every weight by about the LR, however small its gradient
    warmup = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / (config.grpo_warmup + 1))
    )
    device = next(policy.parameters()).device

    def evaluate(loop: Loop) -> None:
        right = tasks.exact_match(policy, problems.heldout, tokenizer.encode, tokenizer.decode,
                                  stop=STOP, max_new_tokens=max_new_tokens)  # fmt: skip
        policy.train()
        accuracy = sum(right) / len(right)
        loop.evaluated({"kind": "eval", "step": loop.step, "heldout_accuracy": accuracy},
                       f"held-out {accuracy:.0%}")  # fmt: skip

    steps = config.grpo_steps
    state = {"policy": policy, "optimizer": optimizer, "warmup": warmup}
    advice = f"lower grpo_lr (now {config.grpo_lr:g}) or raise grpo_warmup"
    with Loop(
        run, total_steps=steps, state=state, checkpoint_every=config.checkpoint_every, advice=advice
    ) as loop:
        policy.train()
        if loop.step == 0:
            evaluate(loop)  # the SFT model: where RL starts
        while loop.step < steps:
            # each step's prompts and samples from its own seed: a resumed run draws the same
            rng = random.Random(f"grpo {config.seed} {loop.step}")
            generator = torch.Generator(device).manual_seed(rng.getrandbits(63))
            batch = sample(policy, problems.draw(config.prompts_per_step, rng), tokenizer,
                           config, reward, max_new_tokens, generator)  # fmt: skip
            stats = grpo_step(policy, reference, optimizer, batch, prompt_length, config)
            warmup.step()
            loop.check(stats["loss"])
            flat = batch.rewards.std(dim=1) == 0  # all right or all wrong: no signal
            loop.log_step({"kind": "step", "step": loop.step,
                           "reward": float(batch.rewards.mean()),
                           "answer_length": float(batch.lengths.mean()),
                           "flat_groups": float(flat.float().mean()),
                           "reward_errors": batch.errors, **stats})  # fmt: skip
            if loop.step % config.grpo_eval_every == 0 or loop.step == steps:
                evaluate(loop)

    if config.figures:
        draw(run)
    return summarised(run, sft_seconds)


def supervised(
    config: Any, run: Run, problems: Problems, tokenizer: CharTokenizer, shape: GPTConfig
) -> tuple[GPT, float]:
    """The SFT model: language 201's recipe (next-token loss on the answer, the core Trainer) for
    `sft_steps`, in a run of its own inside this one (run.dir/sft), which a resumed run reuses."""
    recipe = TrainConfig(seed=config.seed, max_steps=config.sft_steps, eval_every=config.sft_steps,
                         batch_size=config.sft_batch_size, lr=config.sft_lr, schedule="cosine",
                         warmup=0.05, weight_decay=0.01, betas=(0.9, 0.99), grad_clip=1.0,
                         threads=config.threads)  # fmt: skip
    store = RunStore(run.dir / "sft")
    earlier = store.list()
    sft = earlier[-1] if earlier else store.create("sft", dataclasses.asdict(recipe))
    sft.show_progress = run.show_progress
    torch.manual_seed(config.seed)  # the GPT's first weights
    model = GPT(shape)
    if sft.summary["status"] == "finished":
        load_model(model, str(sft.weights_path))
    else:
        length = shape.block_size - 1  # the rows hold the longest prompt and answer
        shown = problems.draw(config.sft_examples, random.Random(f"sft {config.seed}"),
                              distinct=True)  # fmt: skip
        train = tasks.rows(shown, tokenizer.encode, length, whole_line=False)
        watched = tasks.rows(problems.heldout[:256], tokenizer.encode, length, whole_line=False)
        model = Trainer(recipe, sft, task=LanguageModeling()).fit(model, train, watched)
        sft.update_summary(status="finished")
        sft.checkpoint_path.unlink(missing_ok=True)  # finished: nothing left to resume
    return model.to(resolve_device(recipe.device)), sft.evaluations()[-1]["seconds"]


def summarised(run: Run, sft_seconds: float) -> dict[str, Any]:
    """The metrics, read from the run's records (a resumed run's too)."""
    steps, evals = run.history("step"), run.history("eval")
    tenth = max(1, len(steps) // 10)  # single steps are noisy: a tenth of the run, averaged

    def mean(key: str, records: list[dict[str, Any]]) -> float:
        return sum(r[key] for r in records) / len(records)

    sft, rl = evals[0]["heldout_accuracy"], evals[-1]["heldout_accuracy"]
    return {"sft_accuracy": sft, "rl_accuracy": rl, "rl_test_accuracy_gain": rl - sft,
            "mean_reward_first": mean("reward", steps[:tenth]),
            "mean_reward_last": mean("reward", steps[-tenth:]),
            "kl_last": mean("kl", steps[-tenth:]),
            "answer_length_last": mean("answer_length", steps[-tenth:]),
            "reward_errors": sum(r["reward_errors"] for r in steps),
            "sft_seconds": sft_seconds, "rl_seconds": evals[-1]["seconds"]}  # fmt: skip


def draw(run: Run) -> None:
    """Reward and held-out accuracy, KL to the reference, answer length: over GRPO's steps."""
    steps, evals = run.history("step"), run.history("eval")
    x = [s["step"] + 1 for s in steps]
    window = max(1, len(steps) // 20)

    def smooth(values: list[float]) -> list[float]:  # the mean of the last `window` steps
        sums = [0.0, *itertools.accumulate(values)]
        return [(sums[i] - sums[max(0, i - window)]) / min(i, window) for i in range(1, len(sums))]

    fig, (ax_r, ax_kl, ax_len) = plt.subplots(1, 3, figsize=(15, 4))
    rewards = [s["reward"] for s in steps]
    ax_r.plot(x, rewards, color="tab:blue", alpha=0.25, lw=0.8, label="reward (each step)")
    ax_r.plot(x, smooth(rewards), color="tab:blue", label=f"reward ({window}-step mean)")
    ax_r.plot([e["step"] for e in evals], [e["heldout_accuracy"] for e in evals], "o-",
              color="tab:orange", label="held-out accuracy (greedy)")  # fmt: skip
    ax_r.set(xlabel="GRPO step", ylabel="share right", ylim=(0, 1),
             title="Reward and held-out accuracy (step 0: SFT)")  # fmt: skip
    ax_kl.plot(x, smooth([s["kl"] for s in steps]), color="tab:red")
    ax_kl.set(xlabel="GRPO step", ylabel="KL per token (k3)", title="KL to the SFT model")
    ax_len.plot(x, smooth([s["answer_length"] for s in steps]), color="tab:green")
    ax_len.set(xlabel="GRPO step", ylabel="tokens before the stop", title="Answer length")
    for ax in (ax_r, ax_kl, ax_len):
        ax.grid(alpha=0.3)
    ax_r.legend()
    figures.save(fig, run.figure_path("grpo"))
