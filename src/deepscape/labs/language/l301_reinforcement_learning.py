"""language/301/reinforcement-learning — learning from rewards instead of labels.

No one tells the model the right answer: it acts, the world scores the outcome, and the policy
shifts towards what scored well. Two parts, the same idea at two scales.

Part 1, part=control: balance a pole on a cart (Gymnasium's CartPole-v1: +1 per step upright,
    500 at most; "solved" at a mean of 475 over 100 episodes). Three policy-gradient algorithms,
    written out in l301_reinforcement_learning_control.py, on the same budget of environment
    steps and seeds: REINFORCE, REINFORCE with a learnt baseline, and PPO (clipped ratio, GAE,
    several epochs per batch; rl-baselines3-zoo's CartPole hyperparameters, which
    benchmarks/language_301_reinforcement_learning.py gives stable-baselines3's peer, but for a
    learning rate four times theirs, ppo_lr=4e-3).
    Each policy is scored greedily every `eval_every` environment steps and at the end over
    `final_episodes` episodes. Figures: return against environment steps with the spread over
    seeds, the policy's probability of pushing right over the pole's angle, and a strip of
    frames from one greedy episode.
Part 2, part=language-model: GRPO (Shao et al. 2024) on the small GPT of language/201 with a
    reward a program checks — is the sum right? (l301_reinforcement_learning_grpo.py) A second
    arm, policy=smollm2-lora: the same GRPO on SmolLM2-135M-Instruct, only LoRA adapters
    trained, the model without them as the reference (l301_reinforcement_learning_lora.py).

What it found (benchmarks/language_301_reinforcement_learning.py, 20 seeds, one thread, 100,000
steps each, scored every 2,500): PPO ended at 500 on every seed, first reaching 475 after a median
10.2k steps; stable-baselines3's PPO with the zoo's hyperparameters took 15.1k, and with this lab's
learning rate 7.7k. The update is the same (a test checks its update and GAE against ours): the
learning rate is what differs. With the zoo's 1e-3, ours had taken 16.4k on the same seeds. Before
that benchmark, on two other sets of seeds (20 and 30), 4e-3 needed the fewest steps of the rates
tried from 1e-3 to 4e-3 (on the 30: a median 10.2k against 17.7k for 1e-3), and each of 16 seeds
trained on to 100,000 steps at 4e-3 still ended at 500. REINFORCE ended above 475 on 13 seeds, with
the baseline on 19, both after ~31k steps. GRPO on two-digit sums (seeds 0–2, ~5 min each): held-out
exact answers 40/27/44 % after SFT, 87/100/95 % after GRPO. GRPO on SmolLM2 with LoRA, one-digit
sums: 64 % of 50 held-out sums right before, 98 % after 60 steps (100 % already after 20), and trl's
GRPOTrainer on the same settings 96 % (9.0 min against 8.2).

Every training step is recorded in the run (algorithm, seed, environment steps, returns); a run
stopped with Ctrl-C resumes from its last checkpoint (`deepscape run … --resume RUN`): the
policies trained so far are kept, and the environments start fresh episodes.

    deepscape run language/301/reinforcement-learning                 # all three, 3 seeds each
    deepscape run language/301/reinforcement-learning algorithms=ppo seeds=5
    deepscape run language/301/reinforcement-learning env=Acrobot-v1 env_steps=200000
    deepscape run language/301/reinforcement-learning part=language-model   # GRPO on sums
    deepscape run language/301/reinforcement-learning part=language-model policy=smollm2-lora \
        digits=1 heldout_problems=50 grpo_steps=60 prompts_per_step=2 grpo_updates=1 grpo_warmup=5
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import save_file

from deepscape import distributed
from deepscape.config import ConfigError, option
from deepscape.labs.language import l301_reinforcement_learning_control as rl
from deepscape.labs.language import l301_reinforcement_learning_figures as drawn
from deepscape.labs.language import l301_reinforcement_learning_grpo as grpo
from deepscape.loop import Loop
from deepscape.runs import Run

Algorithm = Literal["reinforce", "reinforce-baseline", "ppo"]
ALGORITHMS: tuple[str, ...] = ("reinforce", "reinforce-baseline", "ppo")
ONE_PROCESS = "its policies learn from their own rollouts, in loops of their own"


@dataclass
class Config:
    seed: int = option(0, "first seed: each algorithm trains with seeds seed … seed + seeds − 1")
    threads: int = option(1, "CPU threads for PyTorch (small MLPs run fastest on one)")
    part: Literal["control", "language-model"] = option(
        "control", "control: policy gradients on a Gymnasium task; language-model: GRPO on sums"
    )
    figures: bool = option(True, "draw the figures")
    checkpoint_every: float = option(10.0, "seconds between checkpoints (taken at evaluations)")
    # part 1: the environment and the budget
    env: str = option("CartPole-v1", "a Gymnasium environment whose actions are a few choices")
    algorithms: tuple[Algorithm, ...] = option(
        ALGORITHMS, "the algorithms trained, each on every seed (the last is the lab's result)"
    )
    seeds: int = option(3, "seeds per algorithm (the figure shows their spread)")
    env_steps: int = option(100_000, "environment steps each training may take")
    envs: int = option(8, "environments played side by side (REINFORCE: episodes per update)")
    hidden: int = option(64, "width of the policy's and the critic's two hidden layers")
    gamma: float = option(0.98, "discount: a reward k steps ahead counts γᵏ")
    lr: float = option(1e-3, "Adam's learning rate of REINFORCE, with and without a baseline")
    # PPO
    ppo_lr: float = option(4e-3, "PPO: Adam's learning rate, decayed linearly to 0 (zoo: 1e-3)")
    rollout_steps: int = option(32, "PPO: steps of each environment per rollout")
    ppo_epochs: int = option(20, "PPO: passes over each rollout")
    minibatch: int = option(256, "PPO: steps per gradient step")
    clip: float = option(0.2, "PPO: ε, the ratio's clip range (decayed linearly to 0)")
    gae_lambda: float = option(0.8, "PPO: GAE's λ (0: one-step TD, 1: Monte-Carlo returns)")
    value_coef: float = option(0.5, "PPO: weight of the critic's loss")
    entropy_coef: float = option(0.0, "PPO: weight of the entropy bonus")
    max_grad_norm: float = option(0.5, "PPO: clip the gradients' global norm to this")
    # scoring
    eval_every: int = option(5_000, "environment steps between greedy evaluations")
    eval_episodes: int = option(10, "episodes per evaluation during training")
    final_episodes: int = option(100, "episodes of the final evaluation (the target's mean)")
    # part 2 (l301_reinforcement_learning_grpo.py), the task: sums
    digits: int = option(2, "digits of both numbers of each sum (1: 0–9, 2: 10–99, …)")
    layout: Literal["plain", "padded"] = option(
        "plain", "plain: '23+45=' → '86', the answer reversed; padded: every number reversed"
    )
    heldout_problems: int = option(500, "sums held out to score on (never trained on)")
    # part 2, the policy: language 201's GPT, or SmolLM2 with LoRA (…_lora.py)
    policy: Literal["gpt", "smollm2-lora"] = option(
        "gpt", "part 2's policy: language 201's GPT after SFT, or SmolLM2-135M-Instruct with LoRA"
    )
    lora_rank: int = option(8, "policy=smollm2-lora: LoRA rank (alpha = 2 × rank)")
    gpt_layers: int = option(2, "transformer blocks of the GPT")
    gpt_heads: int = option(4, "attention heads per block")
    gpt_width: int = option(64, "width of the GPT's residual stream")
    # part 2, supervised fine-tuning: the answer format, on purpose not the whole skill
    sft_examples: int = option(400, "distinct sums SFT learns from (few: RL needs room)")
    sft_steps: int = option(1000, "steps of SFT before RL")
    sft_batch_size: int = option(32, "sums per SFT step")
    sft_lr: float = option(1e-3, "peak learning rate of SFT (cosine schedule)")
    # part 2, GRPO
    grpo_steps: int = option(2000, "GRPO steps, each on new prompts")
    prompts_per_step: int = option(16, "prompts per GRPO step")
    group_size: int = option(8, "answers sampled per prompt; their rewards are compared")
    grpo_updates: int = option(2, "optimisation steps on each batch of answers (>1: ratio ≠ 1)")
    grpo_lr: float = option(5e-4, "learning rate of GRPO (AdamW, constant after the warmup)")
    grpo_warmup: int = option(
        50, "GRPO steps over which the LR rises to grpo_lr (Adam's first steps are LR-sized)"
    )
    grpo_clip: float = option(0.2, "ε: the ratio π/π_old counts only within 1 ± ε (as PPO's)")
    kl_coef: float = option(0.04, "β, the weight of the KL penalty to the SFT model")
    temperature: float = option(1.0, "sampling temperature of the answers (the policy's too)")
    grpo_eval_every: int = option(250, "GRPO steps between held-out evaluations")

    @property
    def dataset(self) -> str:
        """What the map's target is judged on: the environment (its bar is CartPole-v1's)."""
        return self.env


def run(config: Config, run: Run) -> dict[str, Any]:
    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    if config.part == "language-model" and config.policy == "smollm2-lora":
        from deepscape.labs.language.l301_reinforcement_learning_lora import language_model_lora

        return language_model_lora(config, run)
    if config.part == "language-model":
        return grpo.language_model(config, run)
    return control(config, run)


def check(config: Config) -> None:
    """Bad options, each refused in one line before anything trains."""
    if config.part == "control":
        rl.make_env(config.env).close()  # an unknown or continuous-action environment
    if not config.algorithms:
        raise ConfigError(f"algorithms is empty: give some of {', '.join(ALGORITHMS)}")
    if min(config.seeds, config.envs, config.env_steps, config.eval_every) < 1:
        raise ConfigError("seeds, envs, env_steps and eval_every must be at least 1")
    if min(config.eval_episodes, config.final_episodes, config.rollout_steps, config.minibatch,
           config.ppo_epochs) < 1:  # fmt: skip
        raise ConfigError("eval_episodes, final_episodes, rollout_steps, minibatch and ppo_epochs "
                          "must be at least 1")  # fmt: skip
    if not 0 < config.gamma <= 1 or not 0 <= config.gae_lambda <= 1:
        raise ConfigError(f"gamma={config.gamma:g}, gae_lambda={config.gae_lambda:g}: "
                          "give 0 < gamma ≤ 1 and 0 ≤ gae_lambda ≤ 1")  # fmt: skip


# -- part 1: each algorithm on each seed, in one resumable loop ------------------------------------
class Trainings:
    """Which training of the plan is under way and its policy, optimizer and progress: what a
    checkpoint holds (with the results of the trainings already done)."""

    def __init__(self, config: Config, observations: int, actions: int):
        self.config, self.observations, self.actions = config, observations, actions
        self.plan = [(a, config.seed + s) for a in config.algorithms for s in range(config.seeds)]
        self.results: list[dict[str, Any]] = []
        self.last_policy: rl.ActorCritic | None = None  # the latest finished training's
        self.start(0)

    def start(self, job: int, env_steps: int = 0, updates: int = 0) -> None:
        self.job, self.env_steps, self.updates = job, env_steps, updates
        self.next_eval = (env_steps // self.config.eval_every + 1) * self.config.eval_every
        self.started = time.perf_counter()
        if job < len(self.plan):
            torch.manual_seed(self.seed)
            self.policy = rl.ActorCritic(observations=self.observations, actions=self.actions,
                                         hidden=self.config.hidden)  # fmt: skip
            lr = self.config.ppo_lr if self.algorithm == "ppo" else self.config.lr
            self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr, eps=1e-5)

    @property
    def algorithm(self) -> str:
        return self.plan[self.job][0]

    @property
    def seed(self) -> int:
        return self.plan[self.job][1]

    def finish(self, result: dict[str, Any]) -> None:
        self.results.append(result)
        self.last_policy = self.policy
        self.start(self.job + 1)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"job": self.job, "env_steps": self.env_steps,
                                 "updates": self.updates, "results": self.results}  # fmt: skip
        if self.job < len(self.plan):
            state |= {"policy": self.policy.state_dict(),
                      "optimizer": self.optimizer.state_dict()}  # fmt: skip
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.results = list(state["results"])
        self.start(state["job"], state["env_steps"], state["updates"])
        if self.job < len(self.plan):
            self.policy.load_state_dict(state["policy"])
            self.optimizer.load_state_dict(state["optimizer"])


def control(config: Config, run: Run) -> dict[str, Any]:
    probe = rl.make_env(config.env)
    solved_at = probe.spec.reward_threshold if probe.spec else None
    trainings = Trainings(config, probe.observation_space.shape[0], int(probe.action_space.n))
    probe.close()
    with Loop(run, total_steps=None, state={"trainings": trainings},
              checkpoint_every=config.checkpoint_every) as loop:  # fmt: skip
        while trainings.job < len(trainings.plan):
            train(trainings, loop, config, solved_at)
    run.update_summary(results=trainings.results)
    policy = trainings.last_policy  # None only when a run resumed after its last training
    if policy is not None:
        save_file(policy.state_dict(), run.weights_path)
    if config.figures:
        drawn.returns(run, config.env, solved_at)
        if policy is not None:
            drawn.action_probabilities(run, policy, config.env)
            drawn.episode_strip(run, policy, config.env, seed=config.seed)
    return summary(trainings.results, config, solved_at)


def train(trainings: Trainings, loop: Loop, config: Config, solved_at: float | None) -> None:
    """One algorithm on one seed, from where the trainings stand to `env_steps`."""
    algorithm, seed, policy = trainings.algorithm, trainings.seed, trainings.policy
    # a resumed training plays fresh episodes from a seed of its own
    envs = rl.Envs(config.env, config.envs, seed=seed * 100_000 + trainings.updates * config.envs)
    generator = torch.Generator().manual_seed(seed * 7919 + trainings.updates)
    job = trainings.job
    while trainings.job == job:  # until its last evaluation moves the trainings on
        if algorithm == "ppo":
            rollout = rl.collect(policy, envs, config.rollout_steps, gamma=config.gamma,
                                 lam=config.gae_lambda)  # fmt: skip
            # LR and clip decay linearly to 0 with the steps taken, this rollout's included
            left = 1 - (trainings.env_steps + rollout.actions.numel()) / config.env_steps
            for group in trainings.optimizer.param_groups:
                group["lr"] = config.ppo_lr * left
            stats = rl.ppo_update(policy, trainings.optimizer, rollout, epochs=config.ppo_epochs,
                                  minibatch=config.minibatch, clip=config.clip * left,
                                  value_coef=config.value_coef,
                                  entropy_coef=config.entropy_coef,
                                  max_grad_norm=config.max_grad_norm,
                                  generator=generator)  # fmt: skip
            steps, returns = rollout.actions.numel(), envs.take_finished()
        else:
            batch = rl.play_episodes(policy, envs, config.gamma)
            stats = rl.reinforce_update(policy, trainings.optimizer, batch,
                                        baseline=algorithm == "reinforce-baseline")  # fmt: skip
            steps, returns = batch.steps, batch.returns
        trainings.env_steps += steps
        trainings.updates += 1
        loop.check(stats["loss"], where=f"of {algorithm} (seed {seed})")
        loop.log_step({"kind": "step", "step": loop.step, "algorithm": algorithm, "seed": seed,
                       "env_steps": trainings.env_steps,
                       "episode_return": float(np.mean(returns)) if returns else None,
                       **stats})  # fmt: skip
        done = trainings.env_steps >= config.env_steps
        if trainings.env_steps >= trainings.next_eval or done:
            trainings.next_eval += config.eval_every
            score = statistics.fmean(rl.play(policy, config.env, episodes=config.eval_episodes,
                                             seed=1_000_000 + seed * 1000))  # fmt: skip
            record = {"kind": "eval", "step": loop.step, "algorithm": algorithm, "seed": seed,
                      "env_steps": trainings.env_steps, "eval_return": score}  # fmt: skip
            if done:
                record["final_return"] = statistics.fmean(
                    rl.play(policy, config.env, episodes=config.final_episodes, seed=2_000_000)
                )
                trainings.finish(result_of(loop, trainings, record, solved_at))
            loop.evaluated(record, description=f"{algorithm} seed {seed}: {score:.0f}")
    envs.close()


def result_of(loop: Loop, trainings: Trainings, last: dict[str, Any], solved_at: float | None,
              ) -> dict[str, Any]:  # fmt: skip
    """One training's outcome: its final mean return, and the environment steps it took until a
    greedy evaluation first reached the environment's 'solved' return."""
    evaluations = [r for r in loop.run.history("eval")
                   if (r["algorithm"], r["seed"]) == (last["algorithm"], last["seed"])]  # fmt: skip
    reached = [r["env_steps"] for r in [*evaluations, last]
               if solved_at is not None and r["eval_return"] >= solved_at]  # fmt: skip
    return {"algorithm": last["algorithm"], "seed": last["seed"],
            "mean_return": last["final_return"],
            "solved": solved_at is not None and last["final_return"] >= solved_at,
            "steps_to_solve": reached[0] if reached else None,
            "seconds": round(time.perf_counter() - trainings.started, 1)}  # fmt: skip


def summary(results: list[dict[str, Any]], config: Config, solved_at: float | None,
            ) -> dict[str, Any]:  # fmt: skip
    """Per algorithm, over its seeds: the mean final return, the seeds that solved the task and
    the median steps to solve it; the lab's own numbers are those of the last algorithm listed
    (PPO by default)."""
    metrics: dict[str, Any] = {"solved_at": solved_at}
    for algorithm in config.algorithms:
        own = [r for r in results if r["algorithm"] == algorithm]
        steps = [r["steps_to_solve"] for r in own if r["steps_to_solve"] is not None]
        key = algorithm.replace("-", "_")
        metrics |= {
            f"{key}_mean_return": statistics.fmean(r["mean_return"] for r in own),
            f"{key}_solved_seeds": sum(r["solved"] for r in own),
            f"{key}_steps_to_solve": statistics.median(steps) if steps else None,
            f"{key}_seconds": statistics.fmean(r["seconds"] for r in own),
        }
    main = config.algorithms[-1].replace("-", "_")
    return {**metrics, "mean_return": metrics[f"{main}_mean_return"],
            "solved_seeds": metrics[f"{main}_solved_seeds"], "seeds": config.seeds,
            "steps_to_solve": metrics[f"{main}_steps_to_solve"]}  # fmt: skip
