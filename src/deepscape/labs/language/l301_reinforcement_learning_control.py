"""language/301/reinforcement-learning, part 1: policy gradients on a Gymnasium environment.

Three algorithms, each written out because each is the lesson:

REINFORCE (Williams 1992): play whole episodes with the policy, then make every action taken
    likelier in proportion to the discounted return that followed it, G_t = Σ γ^k r_{t+k}:
    loss = −mean(log π(a_t|s_t) · G_t). Unbiased, and very noisy: G_t swings from episode to
    episode whatever the action was.
REINFORCE with a baseline: subtract what the state was expected to return, a learnt V(s_t), so
    only the *surprise* G_t − V(s_t) pushes the policy: the same gradient on average, much less
    noise.
PPO (Schulman et al. 2017): short rollouts from several environments at once; advantages by GAE
    (λ-weighted sums of one-step surprises δ_t = r_t + γV(s_{t+1}) − V(s_t)); then several epochs
    of minibatch steps on the same data, each action's probability ratio to the policy that
    collected it clipped to [1 − ε, 1 + ε], so the reused data cannot push the policy far.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from deepscape.config import ConfigError, closest


def make_env(name: str, **kwargs: Any) -> gym.Env:
    """One environment of Gymnasium's registry; an unknown name or one whose actions are not a
    few discrete choices is refused in one line that names those installed here."""
    if name not in gym.envs.registry:
        hint = closest(name, gym.envs.registry) or "."
        raise ConfigError(f"unknown environment '{name}'{hint} Installed here, with discrete "
                          f"actions: {', '.join(discrete_envs())}")  # fmt: skip
    env = gym.make(name, **kwargs)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        choices = ", ".join(discrete_envs())
        raise ConfigError(f"{name}'s actions are {env.action_space}: this lab's policies "
                          f"choose among a few; give one of {choices}")  # fmt: skip
    return env


def discrete_envs() -> list[str]:
    """The environments of Gymnasium's classic-control set whose actions are a few choices."""
    found = []
    for name, spec in sorted(gym.envs.registry.items()):
        if str(spec.entry_point).startswith("gymnasium.envs.classic_control"):
            with warnings.catch_warnings():  # CartPole-v0 is listed, and warned about when made
                warnings.simplefilter("ignore")
                env = gym.make(name)
            if isinstance(env.action_space, gym.spaces.Discrete):
                found.append(name)
            env.close()
    return found


def layer(inputs: int, outputs: int, gain: float) -> nn.Linear:
    """Orthogonal weights, zero bias: the initialisation PPO's implementations use (a policy
    head with a small gain starts out choosing near uniformly)."""
    linear = nn.Linear(inputs, outputs)
    nn.init.orthogonal_(linear.weight, gain)
    nn.init.zeros_(linear.bias)
    return linear


class ActorCritic(nn.Module):
    """Two small MLPs: the actor maps an observation to action logits (the policy π), the critic
    to the return it expects (the value V, used by the baseline and by PPO)."""

    def __init__(self, *, observations: int, actions: int, hidden: int = 64):
        super().__init__()

        def mlp(outputs: int, gain: float) -> nn.Sequential:
            return nn.Sequential(
                layer(observations, hidden, math.sqrt(2)), nn.Tanh(),
                layer(hidden, hidden, math.sqrt(2)), nn.Tanh(),
                layer(hidden, outputs, gain),
            )  # fmt: skip

        self.actor, self.critic = mlp(actions, 0.01), mlp(1, 1.0)

    def policy(self, observations: Tensor) -> Categorical:
        return Categorical(logits=self.actor(observations))

    def value(self, observations: Tensor) -> Tensor:
        return self.critic(observations).squeeze(-1)

    @torch.no_grad()
    def act(self, observations: np.ndarray, *, greedy: bool = False) -> np.ndarray:
        policy = self.policy(torch.as_tensor(observations, dtype=torch.float32))
        return (policy.probs.argmax(-1) if greedy else policy.sample()).numpy()


# -- playing: several copies of the environment, stepped together --------------------------------
@dataclass
class Envs:
    """`n` copies of one environment, stepped together; an episode that ends starts again. It
    keeps every finished episode's return."""

    name: str
    n: int
    seed: int
    finished: list[float] = field(default_factory=list)  # returns of episodes ended since asked

    def __post_init__(self) -> None:
        self.envs = [make_env(self.name) for _ in range(self.n)]
        self.observations = np.stack(
            [env.reset(seed=self.seed + i)[0] for i, env in enumerate(self.envs)]
        )
        self.returns = np.zeros(self.n)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rewards, whether each episode ended (terminated or cut at the time limit), and the
        observation it ended on where it was cut (NaN elsewhere): a cut episode's last state
        still has a future, which PPO's returns add back."""
        rewards, ended = np.zeros(self.n), np.zeros(self.n, dtype=bool)
        cut_at = np.full_like(self.observations, np.nan)
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            observation, reward, terminated, truncated, _ = env.step(int(action))
            rewards[i], ended[i] = reward, terminated or truncated
            self.returns[i] += reward
            if ended[i]:
                if truncated and not terminated:
                    cut_at[i] = observation
                observation, _ = env.reset()
                self.finished.append(float(self.returns[i]))
                self.returns[i] = 0.0
            self.observations[i] = observation
        return rewards, ended, cut_at, self.observations.copy()

    def take_finished(self) -> list[float]:
        finished, self.finished = self.finished, []
        return finished

    def close(self) -> None:
        for env in self.envs:
            env.close()


def play(policy: ActorCritic, name: str, *, episodes: int, seed: int, greedy: bool = True,
         ) -> list[float]:  # fmt: skip
    """The returns of `episodes` whole episodes, played side by side (environment seeds
    seed … seed + episodes − 1)."""
    envs = [make_env(name) for _ in range(episodes)]
    observations = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns, playing = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while playing.any():
        actions = policy.act(observations, greedy=greedy)
        for i in np.flatnonzero(playing):
            observations[i], reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            returns[i] += reward
            playing[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    return returns.tolist()


# -- REINFORCE: whole episodes, Monte-Carlo returns -----------------------------------------------
@dataclass
class Episodes:
    """A batch of whole episodes, flattened: each step's observation, action and return-to-go."""

    observations: Tensor  # "steps obs"
    actions: Tensor  # "steps"
    returns_to_go: Tensor  # "steps": G_t, discounted
    returns: list[float]  # each episode's undiscounted return
    steps: int


def play_episodes(policy: ActorCritic, envs: Envs, gamma: float) -> Episodes:
    """One whole episode in each of `envs` with the policy as it is (REINFORCE is on-policy)."""
    trajectories: list[list[tuple[np.ndarray, int, float]]] = [[] for _ in range(envs.n)]
    for i, env in enumerate(envs.envs):  # every copy starts a fresh episode
        envs.observations[i] = env.reset()[0]
    playing = np.ones(envs.n, dtype=bool)
    while playing.any():
        actions = policy.act(envs.observations)
        for i in np.flatnonzero(playing):
            observation, reward, terminated, truncated, _ = envs.envs[i].step(int(actions[i]))
            trajectories[i].append((envs.observations[i].copy(), int(actions[i]), float(reward)))
            envs.observations[i] = observation
            playing[i] = not (terminated or truncated)
    observations, actions, to_go, returns = [], [], [], []
    for trajectory in trajectories:
        future = 0.0
        for observation, action, reward in reversed(trajectory):
            future = reward + gamma * future
            observations.append(observation)
            actions.append(action)
            to_go.append(future)
        returns.append(sum(reward for *_, reward in trajectory))
    return Episodes(
        torch.as_tensor(np.stack(observations), dtype=torch.float32),
        torch.as_tensor(actions),
        torch.as_tensor(to_go, dtype=torch.float32),
        returns,
        sum(map(len, trajectories)),
    )


def reinforce_update(policy: ActorCritic, optimizer: torch.optim.Optimizer, batch: Episodes, *,
                     baseline: bool) -> dict[str, float]:  # fmt: skip
    """One gradient step of REINFORCE: −mean(log π(a|s) · weight), weight = G_t, or with a
    baseline the surprise G_t − V(s_t) (normalised); the critic learns V by regression on G_t."""
    log_probs = policy.policy(batch.observations).log_prob(batch.actions)
    if baseline:
        values = policy.value(batch.observations)
        surprise = batch.returns_to_go - values.detach()
        weight = (surprise - surprise.mean()) / (surprise.std() + 1e-8)
        value_loss = (values - batch.returns_to_go).pow(2).mean()
    else:
        weight, value_loss = batch.returns_to_go, torch.zeros(())
    policy_loss = -(log_probs * weight).mean()
    optimizer.zero_grad()
    (policy_loss + 0.5 * value_loss).backward()
    optimizer.step()
    return {"loss": policy_loss.item(), "value_loss": value_loss.item()}


# -- PPO: rollouts, GAE, clipped epochs ------------------------------------------------------------
@dataclass
class Rollout:
    """`steps` steps of each of the environments, "t n …", and what PPO needs from them."""

    observations: Tensor  # "t n obs"
    actions: Tensor  # "t n"
    log_probs: Tensor  # "t n": log π_old(a|s), the ratio's denominator
    values: Tensor  # "t n": V_old(s)
    advantages: Tensor  # "t n": GAE
    returns: Tensor  # "t n": advantages + values, the critic's regression target


def collect(policy: ActorCritic, envs: Envs, steps: int, *, gamma: float, lam: float) -> Rollout:
    """`steps` steps in every environment with the current policy, then GAE(γ, λ)."""
    observations, actions, log_probs, values, rewards, ended = [], [], [], [], [], []
    for _ in range(steps):
        obs = torch.tensor(envs.observations, dtype=torch.float32)  # a copy: envs step in place
        with torch.no_grad():
            distribution, value = policy.policy(obs), policy.value(obs)
            action = distribution.sample()
        reward, done, cut_at, _ = envs.step(action.numpy())
        cut = ~np.isnan(cut_at[:, 0])
        if cut.any():  # cut by the time limit, not failed: its state's value is still to come
            with torch.no_grad():
                future = policy.value(torch.as_tensor(cut_at[cut], dtype=torch.float32))
            reward[cut] += gamma * future.numpy()
        observations.append(obs)
        actions.append(action)
        log_probs.append(distribution.log_prob(action))
        values.append(value)
        rewards.append(torch.as_tensor(reward, dtype=torch.float32))
        ended.append(torch.as_tensor(done, dtype=torch.float32))
    with torch.no_grad():
        next_value = policy.value(torch.as_tensor(envs.observations, dtype=torch.float32))
    values_t, rewards_t, ended_t = torch.stack(values), torch.stack(rewards), torch.stack(ended)
    advantages = gae(rewards_t, values_t, ended_t, next_value, gamma=gamma, lam=lam)
    return Rollout(torch.stack(observations), torch.stack(actions), torch.stack(log_probs),
                   values_t, advantages, advantages + values_t)  # fmt: skip


def gae(rewards: Tensor, values: Tensor, ended: Tensor, next_value: Tensor, *, gamma: float,
        lam: float) -> Tensor:  # fmt: skip
    """Generalised advantage estimation, "t n": A_t = Σ (γλ)^k δ_{t+k}, summed back from the
    rollout's end and stopped where an episode ended (its next state belongs to a new one)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(next_value)
    for t in reversed(range(len(rewards))):
        following = next_value if t == len(rewards) - 1 else values[t + 1]
        going_on = 1.0 - ended[t]
        delta = rewards[t] + gamma * following * going_on - values[t]
        running = delta + gamma * lam * going_on * running
        advantages[t] = running
    return advantages


def ppo_update(policy: ActorCritic, optimizer: torch.optim.Optimizer, rollout: Rollout, *,
               epochs: int, minibatch: int, clip: float, value_coef: float, entropy_coef: float,
               max_grad_norm: float, generator: torch.Generator) -> dict[str, float]:  # fmt: skip
    """Several epochs of minibatch steps on one rollout with the clipped surrogate objective:
    −min(ratio · A, clip(ratio, 1 − ε, 1 + ε) · A), plus the critic's squared error and an
    entropy bonus that keeps the policy exploring."""
    flat = {name: getattr(rollout, name).flatten(0, 1) for name in
            ("observations", "actions", "log_probs", "advantages", "returns")}  # fmt: skip
    size = len(flat["actions"])
    seen: dict[str, list[float]] = {"loss": [], "value_loss": [], "entropy": [], "approx_kl": [],
                                    "clip_fraction": []}  # fmt: skip
    for _ in range(epochs):
        for rows in torch.randperm(size, generator=generator).split(minibatch):
            distribution = policy.policy(flat["observations"][rows])
            log_ratio = distribution.log_prob(flat["actions"][rows]) - flat["log_probs"][rows]
            ratio = log_ratio.exp()
            advantage = flat["advantages"][rows]
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
            surrogate = torch.min(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)
            policy_loss = -surrogate.mean()
            value_loss = (policy.value(flat["observations"][rows]) - flat["returns"][rows]).pow(2)
            entropy = distribution.entropy().mean()
            loss = policy_loss + value_coef * value_loss.mean() - entropy_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
            optimizer.step()
            with torch.no_grad():  # how far the policy moved: (r − 1) − log r ≥ 0 estimates KL
                seen["approx_kl"].append(((ratio - 1) - log_ratio).mean().item())
                seen["clip_fraction"].append(((ratio - 1).abs() > clip).float().mean().item())
            seen["loss"].append(policy_loss.item())
            seen["value_loss"].append(value_loss.mean().item())
            seen["entropy"].append(entropy.item())
    return {name: float(np.mean(values)) for name, values in seen.items()}
