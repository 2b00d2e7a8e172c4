"""The figures of language/301/reinforcement-learning's part 1, drawn from the run's history and
its last trained policy."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deepscape import figures
from deepscape.labs.language import l301_reinforcement_learning_control as rl
from deepscape.runs import Run

COLOURS = {"reinforce": "#9467bd", "reinforce-baseline": "#ff7f0e", "ppo": "#1f77b4"}


def returns(run: Run, env: str, solved_at: float | None) -> Path:
    """Greedy evaluation return against environment steps: each algorithm's mean over its seeds,
    the band from the worst seed to the best."""
    curves: dict[str, dict[int, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for record in run.history("eval"):
        curves[record["algorithm"]][record["seed"]].append(
            (record["env_steps"], record["eval_return"])
        )
    fig, ax = figures.plt.subplots(figsize=(7, 4.2))
    for algorithm, seeds in curves.items():
        length = min(map(len, seeds.values()))  # seeds evaluate at the same steps
        steps = np.array([s for s, _ in next(iter(seeds.values()))[:length]])
        values = np.array([[v for _, v in curve[:length]] for curve in seeds.values()])
        colour = COLOURS.get(algorithm)
        ax.plot(steps, values.mean(0), color=colour, label=f"{algorithm} ({len(seeds)} seeds)")
        ax.fill_between(steps, values.min(0), values.max(0), color=colour, alpha=0.2, lw=0)
    if solved_at is not None:
        ax.axhline(solved_at, color="grey", ls="--", lw=1)
        ax.annotate(f"solved: {solved_at:g}", (1, solved_at), color="grey", ha="right",
                    xycoords=("axes fraction", "data"), textcoords="offset points",
                    xytext=(-4, -12))  # fmt: skip
    ax.set(xlabel="environment steps", ylabel="greedy return (mean; band: seeds' min–max)",
           title=f"{env}: return while learning")  # fmt: skip
    ax.legend(loc="lower right")
    return figures.save(fig, run.figure_path("returns"))


def action_probabilities(run: Run, policy: rl.ActorCritic, env: str) -> Path | None:
    """CartPole: P(push right) as the pole leans, cart centred, at a few angular velocities — a
    policy that balances pushes the cart under the pole as it falls."""
    if not env.startswith("CartPole"):
        return None
    angles = torch.linspace(-0.21, 0.21, 121)  # the episode ends beyond ±12° (0.21 rad)
    fig, ax = figures.plt.subplots(figsize=(6.5, 4))
    for spin, colour in ((-0.3, "#d62728"), (0.0, "black"), (0.3, "#2ca02c")):
        states = torch.zeros(len(angles), 4)
        states[:, 2], states[:, 3] = angles, spin
        with torch.no_grad():
            right = policy.policy(states).probs[:, 1]
        ax.plot(np.degrees(angles.numpy()), right.numpy(), color=colour,
                label=f"pole turning at {spin:+g} rad/s")  # fmt: skip
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel="pole angle (degrees; > 0 leans right)", ylabel="P(push right)", ylim=(0, 1),
           title="What the last policy learnt: push towards the lean")  # fmt: skip
    ax.legend()
    return figures.save(fig, run.figure_path("action_probabilities"))


def episode_strip(run: Run, policy: rl.ActorCritic, env: str, *, seed: int, frames: int = 8,
                  ) -> Path:  # fmt: skip
    """One greedy episode rendered (rgb_array frames, no display): a strip of `frames` evenly
    spaced ones as the figure, and every 5th frame as episode.gif beside the figures."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws off-screen: no display
    world = rl.make_env(env, render_mode="rgb_array")
    observation, _ = world.reset(seed=seed)
    shots, total, over = [world.render()], 0.0, False
    while not over:
        action = policy.act(observation[None], greedy=True)[0]
        observation, reward, terminated, truncated, _ = world.step(int(action))
        total += float(reward)
        over = terminated or truncated
        shots.append(world.render())
    world.close()
    path = run.figure_path("episode")
    first, *rest = (Image.fromarray(s) for s in shots[::5])
    first.save(path.with_suffix(".gif"), save_all=True, append_images=rest, duration=100, loop=0)
    picked = np.linspace(0, len(shots) - 1, frames).round().astype(int)
    fig, axes = figures.plt.subplots(1, frames, figsize=(2 * frames, 1.9))
    for ax, index in zip(axes, picked, strict=True):
        ax.imshow(shots[index])
        ax.set_title(f"step {index}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"One greedy episode of the last policy: return {total:g}")
    return figures.save(fig, path)
