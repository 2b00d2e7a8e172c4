"""Benchmark of language/301/reinforcement-learning; results go to docs/benchmarks.md.

    python benchmarks/language_301_reinforcement_learning.py control   # ours, stable-baselines3
    python benchmarks/language_301_reinforcement_learning.py control seeds=20 eval_every=2500 \\
        --jobs 2   # what docs/benchmarks.md gives
    python benchmarks/language_301_reinforcement_learning.py control seeds=2 --no-write
    python benchmarks/language_301_reinforcement_learning.py language-model   # GRPO, seeds 0-2
    python benchmarks/language_301_reinforcement_learning.py language-model-lora threads=2   # + trl

control: the lab's three algorithms on CartPole-v1 (`deepscape run … seeds=5`), and
stable-baselines3's PPO with rl-baselines3-zoo's hyperparameters for CartPole-v1 (8 environments
× 32 steps, 20 epochs of minibatches of 256, γ 0.98, λ 0.8, LR 1e-3 and clip 0.2 decayed linearly
to 0, no entropy bonus), then again at the lab's learning rate (its only difference from the zoo),
on the same budget of environment steps and the same seeds, scored by the same evaluator at the
same points: the greedy policy over 10 episodes after the first update past every `eval_every`
steps (5,000) and at the end, over 100 at the end. "Steps to solve": the environment steps at the
first evaluation whose mean reached 475. Everything on one thread; the lab's trainings one at a
time, then stable-baselines3's `--jobs` at a time; run it alone (`flock -x`).

language-model: `deepscape run … part=language-model` on seeds 0, 1 and 2 (the lab's defaults):
held-out exact answers after SFT and after GRPO, the gain (target ≥ 20 points within 30 minutes
on 2 cores), and the time each took.

language-model-lora: the second arm, GRPO on SmolLM2-135M-Instruct with LoRA on one-digit sums
(`policy=smollm2-lora digits=1 heldout_problems=50 grpo_steps=60 prompts_per_step=2
grpo_updates=1`): the instruct model's held-out accuracy before, after, and the time; then trl's
GRPOTrainer on the same model, adapters, prompts, reward and settings (`trl_grpo`), scored alike.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _report import table, with_overrides, write_section

from deepscape.lab import run_lab
from deepscape.labs.language import l301_reinforcement_learning_control as rl
from deepscape.runs import RunStore

LAB = "language/301/reinforcement-learning"
SOLVED = 475.0
ZOO_LR = 1e-3  # rl-baselines3-zoo's for CartPole-v1, decayed linearly to 0
PEER = "stable-baselines3 ppo"
HEADERS = ["algorithm", "final mean return, each seed (100 greedy episodes)", "seeds ≥ 475",
           "steps to solve, each seed (thousands)", "median steps to solve",
           "median seconds"]  # fmt: skip


class Greedy:
    """A stable-baselines3 model behind the lab's evaluator (`rl.play` calls `act`)."""

    def __init__(self, model):
        self.model = model

    def act(self, observations: np.ndarray, *, greedy: bool = True) -> np.ndarray:
        return self.model.predict(observations, deterministic=greedy)[0]


def stable_baselines3(seed: int, env_steps: int, eval_every: int, lr: float = ZOO_LR) -> dict:
    """SB3's PPO, the zoo's hyperparameters (but for `lr`, where given), evaluated as the lab
    evaluates its own policies."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)

    def linear(start: float):
        return lambda remaining: remaining * start

    class Evaluate(BaseCallback):
        """Scores the policy where the lab scores its own: at the first rollout boundary past each
        `eval_every` mark, after that rollout's update, charged every step taken so far. (Scoring
        in `_on_step` would charge 2,504 steps to the policy of the last update, at 2,304.)"""

        def __init__(self):
            super().__init__()
            self.next, self.curve = eval_every, []

        def _on_rollout_start(self) -> None:  # after the previous rollout's update
            if self.num_timesteps >= self.next:
                self.next += eval_every
                self.score()

        def score(self) -> None:
            score = statistics.fmean(rl.play(Greedy(self.model), "CartPole-v1", episodes=10,
                                             seed=1_000_000 + seed * 1000))  # fmt: skip
            self.curve.append((self.num_timesteps, score))

        def _on_step(self) -> bool:
            return True

    started = time.perf_counter()
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=seed), n_steps=32,
                batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                learning_rate=linear(lr), clip_range=linear(0.2), seed=seed, device="cpu",
                verbose=0)  # fmt: skip
    evaluate = Evaluate()
    model.learn(total_timesteps=env_steps, callback=evaluate)
    evaluate.score()  # and at the end, as the lab does
    final = statistics.fmean(rl.play(Greedy(model), "CartPole-v1", episodes=100, seed=2_000_000))
    reached = [steps for steps, score in evaluate.curve if score >= SOLVED]
    name = PEER if lr == ZOO_LR else f"stable-baselines3 ppo, lr {lr:g}"
    return {"algorithm": name, "seed": seed, "mean_return": final,
            "solved": final >= SOLVED, "steps_to_solve": reached[0] if reached else None,
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def report(results: list[dict], command: str, env_steps: int, wall: float) -> str:
    rows = []
    for algorithm in dict.fromkeys(r["algorithm"] for r in results):
        own = [r for r in results if r["algorithm"] == algorithm]
        steps = [r["steps_to_solve"] for r in own if r["steps_to_solve"] is not None]
        rows.append([
            algorithm,
            " ".join(f"{r['mean_return']:.0f}" for r in own),
            f"{sum(r['solved'] for r in own)}/{len(own)}",
            " ".join(f"{r['steps_to_solve'] / 1000:.0f}" if r["steps_to_solve"] else "–"
                     for r in own),
            f"{statistics.median(steps):,.0f}" if steps else "never",
            f"{statistics.median(r['seconds'] for r in own):.1f}",
        ])  # fmt: skip
    ours = next(r for r in rows if r[0] == "ppo")
    peer = next(r for r in rows if r[0] == PEER)
    ours_steps = [r["steps_to_solve"] for r in results if r["algorithm"] == "ppo"]
    peer_steps = [r["steps_to_solve"] for r in results if r["algorithm"] == PEER]

    def median_or_budget(steps: list) -> float:  # a seed that never solved counts the budget
        return statistics.median(s if s is not None else env_steps for s in steps)

    solved = int(ours[2].split("/")[0])
    lines = [
        f"`{command}` (wall {wall:.0f} s for the lab's run) and stable-baselines3's PPO, "
        f"{env_steps:,} environment steps each, the same seeds:",
        "",
        table(HEADERS, rows),
        "",
        f"- PPO solves CartPole-v1 on {solved} of {len(ours_steps)} seeds (target ≥ 4 of 5 "
        f"{'✓' if solved >= 0.8 * len(ours_steps) else '✗'}).",
        f"- median steps to solve (a seed that never did counts {env_steps:,}): ours "
        f"{median_or_budget(ours_steps):,.0f}, stable-baselines3 "
        f"{median_or_budget(peer_steps):,.0f} (target: ours ≤ theirs "
        f"{'✓' if median_or_budget(ours_steps) <= median_or_budget(peer_steps) else '✗'}).",
        f"- median wall time a training: ours {ours[5]} s, stable-baselines3 {peer[5]} s.",
    ]
    same_lr = [r for r in rows if r[0].startswith(f"{PEER}, lr")]
    if same_lr:
        lines.append(f"- {same_lr[0][0]}, the lab's learning rate: median steps to solve "
                     f"{same_lr[0][4]}. The update is the same code's (a test checks it): what "
                     "differs is the learning rate.")  # fmt: skip
    lines.append("")
    return "\n".join(lines)


def trl_grpo(items: list[str], seed: int) -> dict:
    """trl's GRPOTrainer as the LoRA arm's peer: the same model, adapters, prompts (each step's,
    drawn as the lab draws them), reward, group size, learning rate, warmup, KL weight and clip,
    scored by the lab's held-out evaluator."""
    import warnings

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from deepscape.config import apply_overrides
    from deepscape.labs.language import l301_reinforcement_learning_grpo as grpo
    from deepscape.labs.language import l301_reinforcement_learning_lora as lora
    from deepscape.labs.language.l301_reinforcement_learning import Config
    from deepscape.models.language import load_llm
    from deepscape.tuning import LORA_TARGETS

    config = apply_overrides(Config(), [*items, f"seed={seed}"])
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    llm = load_llm()
    model = copy.deepcopy(llm.model)
    # load_llm de-quantizes the GGUF file to float32, but transformers still flags the model as
    # GGUF-quantized, and its Trainer refuses to train one: the flags no longer hold, so clear them
    model.is_quantized, model.hf_quantizer, model.config.quantization_config = False, None, None
    sums = lora.Sums(config.digits, config.heldout_problems, seed)
    before = lora.heldout_accuracy(model, llm.tokenizer, sums.heldout)
    problems = [problem for step in range(config.grpo_steps)
                for problem in lora.step_draw(sums, config, step)[0]]  # fmt: skip
    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": p.prompt}],
                                  "a": p.a, "b": p.b} for p in problems])  # fmt: skip

    def right_sums(completions: list, a: list, b: list, **_) -> list[float]:
        return [lora.right_sum(lora.Sum(x, y), said[0]["content"])
                for said, x, y in zip(completions, a, b, strict=True)]  # fmt: skip

    # float32 and the paper's KL term, as the lab's (trl autocasts to bf16 and weighs the KL by
    # the ratio by default); its LR schedule rises linearly over the warmup, as the lab's
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, use_bias_correction_kl=False,
        seed=seed, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
        shuffle_dataset=False, max_steps=config.grpo_steps, num_generations=config.group_size,
        per_device_train_batch_size=config.prompts_per_step * config.group_size,
        num_iterations=config.grpo_updates, max_completion_length=lora.MAX_NEW_TOKENS,
        temperature=config.temperature, loss_type="grpo", beta=config.kl_coef,
        epsilon=config.grpo_clip, learning_rate=config.grpo_lr,
        lr_scheduler_type="constant_with_warmup", warmup_steps=config.grpo_warmup,
        adam_beta2=0.99, weight_decay=0.0, max_grad_norm=grpo.GRAD_CLIP,
    )  # fmt: skip
    peft = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                      target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(model=model, reward_funcs=right_sums, args=args,
                              train_dataset=prompts, processing_class=llm.tokenizer,
                              peft_config=peft)  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # its metrics each step, printed
        trainer.train()
    after = lora.heldout_accuracy(trainer.model, llm.tokenizer, sums.heldout)
    logged = [r for r in trainer.state.log_history if "reward" in r]
    tenth = max(1, len(logged) // 10)
    return {"before": before, "after": after,
            "reward_first": statistics.fmean(r["reward"] for r in logged[:tenth]),
            "reward_last": statistics.fmean(r["reward"] for r in logged[-tenth:]),
            "kl_last": statistics.fmean(r["kl"] for r in logged[-tenth:]),
            "seconds": time.perf_counter() - started}  # fmt: skip


def language_model(items: list[str], home: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    lora = "policy=smollm2-lora" in items  # no SFT: it starts from the instruct model
    rows, gains, walls = [], [], []
    for seed in seeds:
        run = run_lab(LAB, [*items, f"seed={seed}"], store=RunStore(home), show_progress=False)
        m = run.summary["metrics"]
        gains.append(m["rl_test_accuracy_gain"])
        walls.append(run.summary["wall_seconds"])
        rows.append(["deepscape", seed, f"{m['sft_accuracy']:.1%}", f"{m['rl_accuracy']:.1%}",
                     f"{m['rl_test_accuracy_gain']:+.1%}",
                     f"{m['mean_reward_first']:.2f} → {m['mean_reward_last']:.2f}",
                     f"{m['kl_last']:.2f}", f"{run.summary['wall_seconds']:.0f}"])  # fmt: skip
    peers = [trl_grpo(items, seed) for seed in seeds] if lora else []
    for seed, peer in zip(seeds, peers, strict=True):
        rows.append(["trl GRPOTrainer", seed, f"{peer['before']:.1%}", f"{peer['after']:.1%}",
                     f"{peer['after'] - peer['before']:+.1%}",
                     f"{peer['reward_first']:.2f} → {peer['reward_last']:.2f}",
                     f"{peer['kl_last']:.2f}", f"{peer['seconds']:.0f}"])  # fmt: skip
    before = "held-out before (the instruct model)" if lora else "held-out after SFT"
    headers = ["GRPO", "seed", before, "after GRPO", "gain", "reward, first → last tenth",
               "KL, last tenth", "wall s"]  # fmt: skip
    lines = [
        f"`deepscape run {LAB} {' '.join(items)} seed=S`, the lab's defaults otherwise"
        + (", and trl's GRPOTrainer on the same model, LoRA, prompts, reward and settings "
           "(`trl_grpo`), scored by the same evaluator:" if lora else ":"),
        "", table(headers, rows), "",
        f"- smallest gain {min(gains):+.1%} (target ≥ +20 points "
        f"{'✓' if min(gains) >= 0.2 else '✗'}); longest run {max(walls) / 60:.1f} min (target "
        f"within 30 minutes on 2 cores {'✓' if max(walls) <= 1800 else '✗'}).",
    ]  # fmt: skip
    if peers:
        lines.append(
            f"- trl's GRPOTrainer: gain {min(p['after'] - p['before'] for p in peers):+.1%}, "
            f"{max(p['seconds'] for p in peers) / 60:.1f} min (its evaluations before and after "
            "included; the lab's run also scores the held-out sums every grpo_eval_every steps)."
        )
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["control", "language-model", "language-model-lora"],
                        help="which measurement")  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="print, leave the doc alone")
    parser.add_argument("--home", help="keep the runs in this folder (default: a scratch one)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="control: SB3's trainings run at once, after the lab's")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="key=value options of the lab's run")
    args = parser.parse_args()
    home = Path(args.home or tempfile.mkdtemp())
    if args.part.startswith("language-model"):
        lora = args.part == "language-model-lora"
        base = ["part=language-model", "threads=1"]
        if lora:
            base += ["policy=smollm2-lora", "digits=1", "heldout_problems=50", "grpo_steps=60",
                     "prompts_per_step=2", "grpo_updates=1", "grpo_warmup=5",
                     "grpo_eval_every=20"]  # fmt: skip
        items = with_overrides(base, args.overrides)
        body = (
            language_model(items, home, (0,) if lora else (0, 1, 2))
            + f"- load average (1 min) after: {os.getloadavg()[0]:.1f}\n"
        )
        if args.no_write:
            print(body)
        elif lora:
            write_section("language-301-rl-grpo-lora",
                          "language/301/reinforcement-learning: GRPO on SmolLM2 with LoRA",
                          body)  # fmt: skip
        else:
            write_section("language-301-rl-grpo",
                          "language/301/reinforcement-learning: GRPO on sums", body)  # fmt: skip
        return
    items = with_overrides(["seeds=5", "threads=1"], args.overrides)
    load_before = os.getloadavg()[0]
    run = run_lab(LAB, items, store=RunStore(home), show_progress=False)
    config = run.config
    results = list(run.summary["results"])
    # the peer with the zoo's LR, and with the lab's, to tell the code from the hyperparameter
    jobs = [(seed, config["env_steps"], config["eval_every"], lr)
            for lr in dict.fromkeys([ZOO_LR, config["ppo_lr"]])
            for seed in range(config["seed"], config["seed"] + config["seeds"])]  # fmt: skip
    # spawned, not forked: each process starts its own PyTorch
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results += pool.map(stable_baselines3, *zip(*jobs, strict=True))
    body = report(results, f"deepscape run {LAB} {' '.join(items)}", config["env_steps"],
                  run.summary["wall_seconds"])  # fmt: skip
    # environment steps do not depend on the machine's load; seconds do (run it alone to time)
    body += (f"- stable-baselines3's {len(jobs)} trainings ran {args.jobs} at a time (one "
             "thread each), after the lab's run.\n")  # fmt: skip
    body += (f"- load average (1 min) before and after: {load_before:.1f}, "
             f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n")  # fmt: skip
    if args.no_write:
        print(body)
    else:
        title = "language/301/reinforcement-learning: policy gradients on CartPole-v1"
        write_section("language-301-rl-control", title, body)


if __name__ == "__main__":
    main()
