"""language/301/reinforcement-learning, part 1: REINFORCE beats a random policy and PPO learns to
balance on tiny budgets, GAE matches its definition, an interrupted run resumes, bad input gets
one line."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deepscape.config import ConfigError
from deepscape.lab import run_lab
from deepscape.labs.language import l301_reinforcement_learning_control as rl
from deepscape.loop import Loop
from deepscape.runs import Run, RunStore

LAB = "language/301/reinforcement-learning"
QUIET = ["threads=1", "figures=false", "final_episodes=20", "eval_every=2500"]


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def random_return(episodes: int = 50) -> float:
    """CartPole with actions drawn uniformly at random: about 22 steps upright."""
    env = rl.make_env("CartPole-v1")
    env.action_space.seed(0)
    returns = []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, over = 0.0, False
        while not over:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, over = total + reward, terminated or truncated
        returns.append(total)
    return statistics.fmean(returns)


def test_reinforce_beats_a_random_policy(store):
    run = run_lab(LAB, [*QUIET, "algorithms=reinforce", "seeds=1", "env_steps=15000"],
                  store=store, show_progress=False)  # fmt: skip
    learnt, chance = run.summary["metrics"]["mean_return"], random_return()
    assert learnt > 3 * chance, (learnt, chance)
    steps = run.history("step")
    assert steps[-1]["env_steps"] >= 15000 and all(s["algorithm"] == "reinforce" for s in steps)


def test_ppo_learns_to_balance_and_saves_its_figures_and_policy(store):
    run = run_lab(LAB, [*QUIET, "algorithms=ppo", "seeds=1", "env_steps=25000", "figures=true"],
                  store=store, show_progress=False)  # fmt: skip
    metrics = run.summary["metrics"]
    assert metrics["mean_return"] >= 100, metrics  # random: ~22; seeds 0–6 gave 129–500
    assert metrics["steps_to_solve"] is None or metrics["steps_to_solve"] <= 25000
    assert {p.name for p in run.figures()} == {"returns.png", "action_probabilities.png",
                                               "episode.png"}  # fmt: skip
    assert (run.dir / "figures" / "episode.gif").stat().st_size > 0
    policy = rl.ActorCritic(observations=4, actions=2)
    policy.load_state_dict(load_file(run.weights_path))
    falling = torch.tensor([[0.0, 0.0, 0.1, 0.5], [0.0, 0.0, -0.1, -0.5]])  # right, then left
    push_right = policy.policy(falling).probs[:, 1]
    assert push_right[0] > 0.5 > push_right[1], push_right  # it pushes under the falling pole


def test_gae_is_its_definition_at_both_ends():
    """λ = 1: discounted returns minus values (Monte Carlo); λ = 0: one-step TD errors; an ended
    episode passes nothing back from the next one."""
    torch.manual_seed(0)
    rewards, values, next_value = torch.rand(5, 2), torch.rand(5, 2), torch.rand(2)
    ended = torch.zeros(5, 2)
    gamma = 0.9
    monte_carlo = rl.gae(rewards, values, ended, next_value, gamma=gamma, lam=1.0)
    future = next_value
    for t in reversed(range(5)):
        future = rewards[t] + gamma * future
        torch.testing.assert_close(monte_carlo[t], future - values[t])
    one_step = rl.gae(rewards, values, ended, next_value, gamma=gamma, lam=0.0)
    following = torch.cat([values[1:], next_value[None]])
    torch.testing.assert_close(one_step, rewards + gamma * following - values)
    ended[2] = 1
    cut = rl.gae(rewards, values, ended, next_value, gamma=gamma, lam=1.0)
    torch.testing.assert_close(cut[2], rewards[2] - values[2])


def test_a_time_limit_is_not_a_failure():
    """An episode cut by the time limit hands back the state it was cut in (its future still
    counts); one that failed does not."""
    envs = rl.Envs("CartPole-v1", 1, seed=0)
    envs.envs[0] = rl.make_env("CartPole-v1", max_episode_steps=3)
    envs.observations[0] = envs.envs[0].reset(seed=0)[0]
    for _ in range(2):
        _, ended, cut_at, _ = envs.step(np.array([0]))
        assert not ended[0] and np.isnan(cut_at[0]).all()
    _, ended, cut_at, _ = envs.step(np.array([0]))
    assert ended[0] and not np.isnan(cut_at[0]).any() and envs.take_finished() == [3.0]


def test_an_interrupted_run_resumes_where_its_checkpoint_was(store, monkeypatch):
    """Ctrl-C after the second checkpoint, inside REINFORCE's second seed: the resumed run keeps
    the first seed's result and what was recorded, and finishes every training of the plan."""
    overrides = [*QUIET, "algorithms=reinforce", "seeds=2", "env_steps=5000",
                 "checkpoint_every=0"]  # fmt: skip
    checkpoint, taken = Loop.checkpoint, []

    def checkpoint_then_ctrl_c(self):
        checkpoint(self)
        taken.append(self.step)
        if len(taken) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Loop, "checkpoint", checkpoint_then_ctrl_c)
    started: list[Run] = []
    with pytest.raises(KeyboardInterrupt):
        run_lab(LAB, overrides, store=store, show_progress=False, on_start=started.append)
    (run,) = started
    assert run.status == "interrupted"
    saved = torch.load(run.checkpoint_path, weights_only=True)["trainings"]
    assert saved["job"] == 1 and len(saved["results"]) == 1 and saved["env_steps"] > 0
    before = Run(run.dir).history()
    monkeypatch.setattr(Loop, "checkpoint", checkpoint)

    resumed = run_lab(LAB, [], store=store, resume=run.id, show_progress=False)
    assert resumed.status == "finished"
    history = resumed.history()
    assert history[: len(before)] == before
    steps = [r["step"] for r in resumed.history("step")]
    assert steps == list(range(len(steps)))  # each update recorded once, none missing
    results = resumed.summary["results"]
    assert [(r["algorithm"], r["seed"]) for r in results] == [("reinforce", 0), ("reinforce", 1)]
    assert results[0] == saved["results"][0]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["env=CartPol-v1"], "did you mean 'CartPole-v1'? Installed here, with discrete actions:"),
        (["env=Pendulum-v1"], "give one of Acrobot-v1, CartPole-v0, CartPole-v1, MountainCar-v0"),
        (["gamma=1.5"], "give 0 < gamma ≤ 1"),
        (["seeds=0"], "must be at least 1"),
    ],
)
def test_bad_options_get_one_line(store, overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("?", r"\?")) as error:
        run_lab(LAB, overrides, store=store, show_progress=False)
    assert "\n" not in str(error.value)
    assert not store.list()  # refused before anything was recorded


def test_ppo_update_and_gae_match_stable_baselines3():
    """The written-out PPO is stable-baselines3's: from the same weights, on the rollout SB3
    collected, GAE gives its advantages and 20 epochs of updates its weights."""
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env

    torch.manual_seed(0)
    model = sb3.PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=0), n_steps=32,
                    batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                    learning_rate=1e-3, clip_range=0.2, seed=0, device="cpu")  # fmt: skip
    theirs, ours = model.policy, rl.ActorCritic(observations=4, actions=2)
    pairs = [(ours.actor[0], theirs.mlp_extractor.policy_net[0]),
             (ours.actor[2], theirs.mlp_extractor.policy_net[2]),
             (ours.actor[4], theirs.action_net),
             (ours.critic[0], theirs.mlp_extractor.value_net[0]),
             (ours.critic[2], theirs.mlp_extractor.value_net[2]),
             (ours.critic[4], theirs.value_net)]  # fmt: skip
    with torch.no_grad():
        for mine, sb3_layer in pairs:
            mine.weight.copy_(sb3_layer.weight)
            mine.bias.copy_(sb3_layer.bias)
    model.learn(total_timesteps=256)  # one rollout of 8 × 32 steps, one update of 20 epochs
    buffer = model.rollout_buffer

    def steps_by_envs(array: np.ndarray) -> torch.Tensor:  # SB3 flattens env-major for training
        return torch.as_tensor(array, dtype=torch.float32).reshape(8, 32).T

    # GAE, from the values before the update (SB3 leaves rewards and episode starts "t n")
    rewards = torch.as_tensor(buffer.rewards, dtype=torch.float32)
    starts = torch.as_tensor(buffer.episode_starts, dtype=torch.float32)
    ended = torch.cat([starts[1:], torch.as_tensor(model._last_episode_starts)[None].float()])
    with torch.no_grad():
        next_value = ours.value(torch.as_tensor(model._last_obs, dtype=torch.float32))
    advantages = rl.gae(rewards, steps_by_envs(buffer.values), ended, next_value, gamma=0.98,
                        lam=0.8)  # fmt: skip
    torch.testing.assert_close(advantages, steps_by_envs(buffer.advantages))

    rollout = rl.Rollout(*(torch.as_tensor(a, dtype=torch.float32).reshape(256, 1, *a.shape[1:])
                           for a in (buffer.observations, buffer.actions[:, 0],
                                     buffer.log_probs[:, 0], buffer.values[:, 0],
                                     buffer.advantages[:, 0], buffer.returns[:, 0])))  # fmt: skip
    rollout.actions = rollout.actions.long()
    optimizer = torch.optim.Adam(ours.parameters(), lr=1e-3, eps=1e-5)
    rl.ppo_update(ours, optimizer, rollout, epochs=20, minibatch=256, clip=0.2, value_coef=0.5,
                  entropy_coef=0.0, max_grad_norm=0.5, generator=torch.Generator())  # fmt: skip
    for mine, sb3_layer in pairs:
        torch.testing.assert_close(mine.weight, sb3_layer.weight, atol=1e-6, rtol=1e-5)
