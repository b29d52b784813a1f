"""``freeagentics-rs demo --model tmaze``: T-maze agents (pymdp's two-factor demo model) stepped
as one native population on each backend, and pymdp 0.0.7.1's Agent one by one when it is
installed (for at most ``--budget`` seconds), with the reward rate each reached."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

# An episode: the first observation, then two moves (to the cue arm, then to an arm).
EPISODE_MOVES = 2


def _native(backend: str, agents: int, steps: int, policy_len: int) -> dict[str, Any]:
    from ..agents import AgentPopulation, TMaze, tmaze_model

    env = TMaze(agents, seed=0)
    pop = AgentPopulation(tmaze_model(backend=backend), agents, policy_len=policy_len, seed=0, backend=backend)
    rewards, moves = 0, 0
    start = time.perf_counter()
    while moves < steps:
        obs = env.reset()
        pop.reset()
        for _ in range(EPISODE_MOVES):
            obs = env.step(pop.step(obs))
            moves += 1
        rewards += int(env.rewarded(obs).sum())
    seconds = time.perf_counter() - start
    return {
        "agent_steps": agents * moves,
        "seconds": seconds,
        "reward_rate": rewards / (agents * moves / EPISODE_MOVES),
    }


def _pymdp(agents: int, steps: int, policy_len: int, budget: float) -> dict[str, Any]:
    from ..agents import TMaze, tmaze_model
    from ._pymdp import pymdp_agents

    model = tmaze_model(backend="python")
    population = pymdp_agents(model, agents, policy_len)
    env = TMaze(agents, seed=0)
    rewards, agent_steps, episodes = 0, 0, 0
    start = time.perf_counter()
    deadline = start + budget
    while agent_steps < agents * steps and time.perf_counter() < deadline:
        obs = env.reset()
        for agent in population:
            agent.reset()
            agent.action = None
        for _ in range(EPISODE_MOVES):
            actions = np.zeros((agents, 2), np.int64)
            for i, agent in enumerate(population):
                agent.infer_states(list(obs[i]))
                agent.infer_policies()
                actions[i] = agent.sample_action()
            obs = env.step(actions)
            agent_steps += agents
        rewards += int(env.rewarded(obs).sum())
        episodes += 1
    seconds = time.perf_counter() - start
    return {
        "agent_steps": agent_steps,
        "seconds": seconds,
        "reward_rate": rewards / max(episodes * agents, 1),
        "time_boxed": agent_steps < agents * steps,
    }


def run(args: argparse.Namespace) -> int:
    print(
        f"T-maze: {args.agents} agents, {args.steps} moves each (episodes of {EPISODE_MOVES} moves), "
        f"policy_len {args.policy_len}.\n"
    )
    rows = []
    makers: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("native population, Rust backend", lambda: _native("rust", args.agents, args.steps, args.policy_len)),
        ("native population, numpy backend", lambda: _native("python", args.agents, args.steps, args.policy_len)),
        ("pymdp 0.0.7.1 Agent, one by one", lambda: _pymdp(args.agents, args.steps, args.policy_len, args.budget)),
    ]
    for label, make in makers:
        try:
            rows.append((label, make()))
        except ImportError as e:
            rows.append((label, {"error": f"not available: {e}"}))
        except KeyboardInterrupt:
            print("\nInterrupted.")
            return 130
    print("| run | agent-steps/s | reward rate | measured over |\n|---|---|---|---|")
    for label, r in rows:
        if "error" in r:
            print(f"| {label} | {r['error']} | | |")
            continue
        rate = r["agent_steps"] / r["seconds"] if r["seconds"] > 0 else 0.0
        over = f"{r['agent_steps']:,} agent-steps in {r['seconds']:.2f} s" + (
            " (time limit)" if r.get("time_boxed") else ""
        )
        print(f"| {label} | {rate:,.0f} | {r['reward_rate']:.2f} | {over} |")
    print(
        "\nReward rate: rewarded episodes over episodes (an agent that checks the cue first and then "
        "goes to the paying arm is rewarded with probability 0.98)."
    )
    return 0
