"""language/301/reinforcement-learning, part 2's second arm: GRPO on a pretrained LLM with LoRA.

The same GRPO as l301_reinforcement_learning_grpo.py (its group advantages, clipped ratio and
k3 KL penalty, imported), on SmolLM2-135M-Instruct: only LoRA adapters train, and the reference
of the KL penalty is the model without them (peft's `disable_adapter`), so no second copy of the
weights is kept. There is no SFT step: the instruct model already answers a chat, and the
prompt asks for the format, "What is 6 + 3? Answer with the number only." The model mostly
answers "6 + 3 = 9" or "The answer is 9." anyway, so the reward reads the last number of the
reply's first line: 1 if it is the sum. A reply that wanders into an explanation and is cut
off earns nothing.

The model is weak at this: asked for two-digit sums it wanders off into explanations and gets
about one in ten; one-digit sums (`digits=1`, the 100 sums of 0–9, half held out) are where it
is right some of the time, which GRPO needs. With one update per batch (`grpo_updates=1`, as
DeepSeekMath and trl's default) the ratio is 1 and the clip never acts: what is left is the
policy gradient with the group's mean as its baseline, and the KL penalty. Only the adapter (and
its optimizer) is checkpointed: a run stopped with Ctrl-C resumes.

What it found (the command below, seed 0): 64 % of the 50 held-out sums right before, 100 %
after 20 steps, 98 % after 60; the reward of the sampled answers 0.26 → 0.88, the KL to the
instruct model 0.54 per token at the end. Alone with 2 threads on an AVX512-BF16 EPYC the run
took 8.2 min (benchmarks/language_301_reinforcement_learning.py); with one thread on
2 cores shared with 3–4 other jobs it had taken 31 min, the same answers. The benchmark's peer,
trl's GRPOTrainer with the same model, adapters, prompts, reward and settings, went from 64 %
to 96 %, in 9.0 min. A test checks that this objective and its gradients are trl's
(loss_type="grpo", float32, the KL term not weighted by the ratio as trl's default weighs it).
trl refuses to train a model loaded from GGUF until its quantiser flags are cleared: the
weights were de-quantized to float32 on loading, but the flags stay.

    deepscape run language/301/reinforcement-learning part=language-model policy=smollm2-lora \\
        digits=1 heldout_problems=50 grpo_steps=60 prompts_per_step=2 grpo_updates=1 \\
        grpo_warmup=5 grpo_eval_every=20 threads=2
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from deepscape.config import ConfigError
from deepscape.labs.language import l301_reinforcement_learning_grpo as grpo
from deepscape.loop import Loop
from deepscape.runs import Run

if TYPE_CHECKING:
    from deepscape.labs.language.l301_reinforcement_learning import Config

PROMPT = "What is {a} + {b}? Answer with the number only."
MAX_NEW_TOKENS = 12  # "12 + 34 = 46." and the end of the turn, with room to spare
NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Sum:
    a: int
    b: int

    @property
    def prompt(self) -> str:
        return PROMPT.format(a=self.a, b=self.b)

    @property
    def answer(self) -> str:
        return str(self.a + self.b)


def right_sum(problem: Sum, said: str) -> float:
    """1 if the last number on the reply's first line is the sum ("6 + 3 = 9", "9.")."""
    numbers = NUMBER.findall(said.strip().split("\n")[0])
    return float(bool(numbers) and numbers[-1] == problem.answer)


class Sums:
    """Sums of two `digits`-digit numbers: a seeded held-out set, and training sums never in it."""

    def __init__(self, digits: int, heldout: int, seed: int):
        low = 0 if digits == 1 else 10 ** (digits - 1)
        self.numbers = range(low, 10**digits)
        rng, held = random.Random(f"heldout {seed}"), set()
        while len(held) < heldout:
            held.add(self.draw_one(rng))
        self.heldout = sorted(held, key=lambda s: (s.a, s.b))

    def draw_one(self, rng: random.Random) -> Sum:
        return Sum(rng.choice(self.numbers), rng.choice(self.numbers))

    def draw(self, n: int, rng: random.Random) -> list[Sum]:
        held, drawn = set(self.heldout), []
        while len(drawn) < n:
            if (problem := self.draw_one(rng)) not in held:
                drawn.append(problem)
        return drawn


def step_draw(sums: Sums, options: Config, step: int) -> tuple[list[Sum], torch.Generator]:
    """GRPO step `step`'s training sums and the generator its answers are sampled with, both
    from the seed and the step alone: a resumed run draws the same (and so does trl's peer in
    the benchmark)."""
    rng = random.Random(f"grpo {options.seed} {step}")
    generator = torch.Generator().manual_seed(rng.getrandbits(63))
    return sums.draw(options.prompts_per_step, rng), generator


class Adapter:
    """The LoRA adapters of a peft model as a checkpointable state (not the frozen base)."""

    def __init__(self, model: Any):
        self.model = model

    def state_dict(self) -> dict[str, Tensor]:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(self.model)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, state)


def answer_logprobs(model: Any, ids: Tensor, start: int, temperature: float) -> Tensor:
    """log π(token | before) "g n" of ids[:, start:] under a transformers model at temperature."""
    logits = model(input_ids=ids[:, :-1]).logits[:, start - 1 :].float() / temperature
    return logits.log_softmax(-1).gather(-1, ids[:, start:, None]).squeeze(-1)


@dataclass
class Group:
    """One prompt's group of sampled answers."""

    ids: Tensor  # the prompt and each answer "g t"
    start: int  # the prompt's tokens
    mask: Tensor  # the answers' tokens, up to and with the stop "g n"
    rewards: Tensor  # "g"
    old: Tensor | None = None  # log π_old of the answers' tokens "g n"
    ref: Tensor | None = None  # log π_ref


@torch.no_grad()
def sample_groups(
    model: Any, tokenizer: Any, problems: list[Sum], options: Config,
    generator: torch.Generator, reward: Any,
) -> tuple[list[Group], list[int], int]:  # fmt: skip
    """A group of `group_size` answers to each problem; also each answer's length and the count
    of answers the reward function failed on."""
    from deepscape.generate import generate
    from deepscape.tuning import chat_prompt_ids, end_of_turn, merged

    stop = end_of_turn(tokenizer)
    groups, lengths, errors = [], [], 0
    for problem in problems:
        prompt = torch.tensor([chat_prompt_ids(tokenizer, problem.prompt)])
        prompt = prompt.expand(options.group_size, -1)
        # cloned: `generate` makes inference tensors, which autograd may not save for backward
        with merged(model) as sampler:  # the adapters folded in: as fast as the model alone
            answers = generate(sampler, prompt, max_new_tokens=MAX_NEW_TOKENS,
                               stop_tokens=[stop], temperature=options.temperature,
                               generator=generator).clone()  # fmt: skip
        mask = grpo.answer_mask(answers, stop)
        said = [tokenizer.decode(row[:n], skip_special_tokens=True)
                for row, n in zip(answers.tolist(), mask.sum(1).tolist(), strict=True)]  # fmt: skip
        rewards, failed = grpo.score(reward, [problem] * len(said), said)
        errors += failed
        lengths += (mask.sum(1) - (answers == stop).any(1).long()).tolist()
        groups.append(Group(torch.cat([prompt, answers], 1), prompt.shape[1], mask, rewards))
    return groups, lengths, errors


def lora_step(model: Any, optimizer: torch.optim.Optimizer, groups: list[Group],
              options: Config) -> dict[str, float]:  # fmt: skip
    """GRPO's updates on one batch of groups (as `grpo.grpo_step`, a group at a time: prompts of
    different lengths), the loss and KL before the first update."""
    rewards = torch.stack([g.rewards for g in groups])
    advantages = grpo.group_advantages(rewards)
    with torch.no_grad():
        for group in groups:
            if options.grpo_updates > 1:  # one update: π_old is π, read in the update's pass
                group.old = answer_logprobs(model, group.ids, group.start, options.temperature)
            with model.disable_adapter():  # the reference: the instruct model as it was
                group.ref = answer_logprobs(model, group.ids, group.start, options.temperature)
    first: dict[str, float] = {}
    for _ in range(options.grpo_updates):
        optimizer.zero_grad(set_to_none=True)
        losses, kls, clipped = [], [], []
        for group, advantage in zip(groups, advantages, strict=True):
            logp = answer_logprobs(model, group.ids, group.start, options.temperature)
            if group.old is None:
                group.old = logp.detach()
            loss, stats = grpo.grpo_loss(
                logp, group.old, group.ref, advantage, group.mask,
                clip=options.grpo_clip, kl_coef=options.kl_coef,
            )  # fmt: skip
            (loss / len(groups)).backward()
            losses.append(loss.item())
            kls.append(stats["kl"])
            clipped.append(stats["clipped"])
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                       grpo.GRAD_CLIP)  # fmt: skip
        optimizer.step()
        first = first or {"loss": sum(losses) / len(losses), "kl": sum(kls) / len(kls)}
    return {**first, "clipped": sum(clipped) / len(clipped)}


def heldout_accuracy(model: Any, tokenizer: Any, problems: list[Sum]) -> float:
    from deepscape.tuning import answers

    said = answers(model, tokenizer, [p.prompt for p in problems],
                   max_new_tokens=MAX_NEW_TOKENS, progress=False)  # fmt: skip
    return sum(right_sum(p, s) for p, s in zip(problems, said, strict=True)) / len(problems)


def check(options: Config) -> None:
    grpo.check_grpo(options)
    if not 1 <= options.digits <= 2:
        raise ConfigError(f"digits={options.digits}: policy=smollm2-lora takes sums of numbers "
                          "of 1 or 2 digits")  # fmt: skip
    if not 1 <= options.heldout_problems <= grpo.distinct_problems(options.digits) // 2:
        raise ConfigError(f"heldout_problems={options.heldout_problems}: give 1 to half of the "
                          f"{grpo.distinct_problems(options.digits):,} sums of {options.digits}-"
                          "digit numbers (digits=1: at most 50)")  # fmt: skip
    if options.lora_rank < 1:
        raise ConfigError(f"lora_rank={options.lora_rank}: give a rank ≥ 1 (4 to 16 is usual)")


def language_model_lora(config: Config, run: Run, reward: Any = right_sum) -> dict[str, Any]:
    """GRPO on SmolLM2 with LoRA, recorded as part 2's GPT run is (its summary and figure)."""
    from deepscape.models.language import load_llm
    from deepscape.tuning import add_lora, save_adapter

    check(config)
    llm = load_llm()
    model = add_lora(copy.deepcopy(llm.model), rank=config.lora_rank, alpha=2.0 * config.lora_rank)
    tokenizer, sums = llm.tokenizer, Sums(config.digits, config.heldout_problems, config.seed)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.grpo_lr, betas=(0.9, 0.99), weight_decay=0.0)
    warmup = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / (config.grpo_warmup + 1))
    )

    def evaluate(loop: Loop) -> None:
        accuracy = heldout_accuracy(model, tokenizer, sums.heldout)
        model.train()
        loop.evaluated({"kind": "eval", "step": loop.step, "heldout_accuracy": accuracy},
                       f"held-out {accuracy:.0%}")  # fmt: skip

    steps = config.grpo_steps
    state = {"adapter": Adapter(model), "optimizer": optimizer, "warmup": warmup}
    with Loop(run, total_steps=steps, state=state, checkpoint_every=config.checkpoint_every,
              advice=f"lower grpo_lr (now {config.grpo_lr:g})") as loop:  # fmt: skip
        model.train()
        if loop.step == 0:
            evaluate(loop)  # the instruct model as it is: where RL starts
        while loop.step < steps:
            problems, generator = step_draw(sums, config, loop.step)
            groups, lengths, errors = sample_groups(model, tokenizer, problems, config, generator,
                                                    reward)  # fmt: skip
            stats = lora_step(model, optimizer, groups, config)
            warmup.step()
            loop.check(stats["loss"])
            rewards = torch.stack([g.rewards for g in groups])  # "prompts group"
            loop.log_step({"kind": "step", "step": loop.step, "reward": float(rewards.mean()),
                           "answer_length": sum(lengths) / len(lengths),
                           "flat_groups": float((rewards.std(dim=1) == 0).float().mean()),
                           "reward_errors": errors, **stats})  # fmt: skip
            if loop.step % config.grpo_eval_every == 0 or loop.step == steps:
                evaluate(loop)
    save_adapter(model, run.dir / "adapter.safetensors")
    if config.figures:
        grpo.draw(run)
    return grpo.summarised(run, sft_seconds=0.0)
