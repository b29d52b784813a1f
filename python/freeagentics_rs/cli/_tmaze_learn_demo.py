"""``freeagentics-rs demo --model tmaze --learn``: a population that learns the T-maze's reward
contingencies. Each agent starts knowing the maze except what the arms pay (pymdp's T-maze
learning setting: the arms' reward and loss counts of ``pA[1]`` are flat), and learns ``pA[1]``
from its own trials (``step(..., learn=True)``), drawn to the arms by pymdp's parameter
information gain (``use_param_info_gain=True``). Per block of trials it prints the mean
probability the agents' learned A gives a reward in the paying arm (the correct arm) and the
share of rewarded trials; ``--plot`` draws both."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

# A trial: the first observation, then two moves (to the cue arm, then to an arm).
TRIAL_MOVES = 2
REWARD, LOCATIONS = 1, 4


def tmaze_prior(reward_probs: tuple[float, float] = (0.98, 0.02)) -> list[np.ndarray]:
    """pymdp's T-maze learning prior: the maze's A as near-certain counts (1e16 times A), with
    the arms' reward and loss outcomes flat (1 count each)."""
    from ..agents._tmaze import tmaze_arrays

    A, _ = tmaze_arrays(reward_probs)
    pA = [a * 1e16 for a in A]
    pA[1][1:, 1:3, :] = 1.0
    return pA


def correct_arm_probability(pA_reward: np.ndarray) -> float:
    """The agents' mean expected P(reward | the arm that pays in the condition), both conditions."""
    expected = pA_reward / pA_reward.sum(axis=1, keepdims=True)  # (agents, outcomes, locations, conditions)
    return float(np.mean([expected[:, REWARD, condition + 1, condition] for condition in (0, 1)]))


def simulate(agents: int, trials: int, block: int, backend: str | None, lr_pA: float = 1.0) -> list[dict[str, Any]]:
    """One row per block of trials: the learned probability at the block's end and the share of
    rewarded trials in it."""
    from ..agents import TMaze

    pop = learning_population(agents, backend, policy_len=2, lr_pA=lr_pA, use_param_info_gain=True)
    env = TMaze(agents, seed=0)
    rows: list[dict[str, Any]] = []
    rewarded, start = 0, time.perf_counter()
    for trial in range(1, trials + 1):
        obs = env.reset()
        pop.reset()
        for _ in range(TRIAL_MOVES):
            obs = env.step(pop.step(obs, learn=True))
        pop.infer_states(obs)  # the outcome of the last move is learned from too
        pop.update_A(obs)
        rewarded += int(env.rewarded(obs).sum())
        if trial % block == 0 or trial == trials:
            done = block if trial % block == 0 else trial % block
            rows.append(
                {
                    "trials": trial,
                    "correct_arm_probability": correct_arm_probability(pop.pA[1]),
                    "rewarded": rewarded / (done * agents),
                    "seconds": time.perf_counter() - start,
                }
            )
            rewarded = 0
    return rows


def learning_population(agents: int, backend: str | None, policy_len: int = 1, **kwargs: Any) -> Any:
    """``agents`` T-maze agents learning ``pA[1]`` from the flat prior (the bench's and the
    memory measurement's population)."""
    from ..agents import AgentPopulation, GenerativeModel, tmaze_model

    prior = tmaze_prior()
    maze = tmaze_model(backend=backend)
    model = GenerativeModel([p / p.sum(axis=0) for p in prior], maze.B, maze.C, maze.D, backend=backend)
    return AgentPopulation(
        model, agents, policy_len=policy_len, pA=prior, modalities_to_learn=[1], seed=0, backend=backend, **kwargs
    )


def pymdp_learning_agents(count: int, policy_len: int = 1) -> list[Any]:
    """pymdp 0.0.7.1 agents of the same setting (gamma and alpha 8, stochastic actions);
    ``ImportError`` without pymdp."""
    import warnings

    from pymdp import utils
    from pymdp.agent import Agent

    from ..agents import tmaze_model

    def obj(arrays: Any) -> Any:
        out = utils.obj_array(len(arrays))
        for i, a in enumerate(arrays):
            out[i] = np.array(a, np.float64)
        return out

    prior = tmaze_prior()
    maze = tmaze_model(backend="python")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymdp's own deprecation and normalization warnings
        return [
            Agent(
                A=obj([p / p.sum(axis=0) for p in prior]),
                B=obj(maze.B),
                C=obj(maze.C),
                D=obj(maze.D),
                pA=obj(prior),
                modalities_to_learn=[1],
                policy_len=policy_len,
                gamma=8.0,
                alpha=8.0,
                action_selection="stochastic",
            )
            for _ in range(count)
        ]


def bench_learning_step(kind: str, runs: int, *, quick: bool) -> dict[str, Any]:
    """Seconds per agent-step of a T-maze agent learning ``pA[1]`` (infer states, update_A,
    infer policies, act): pymdp one agent at a time ("baseline") or a population of 1024."""
    from ._machine import timed_runs

    observation = [0, 0, 0]
    if kind == "baseline":
        try:
            agents = pymdp_learning_agents(8 if quick else 16)
        except ImportError as e:
            return {"unavailable": f"pymdp is not installed ({e})"}

        def step_all() -> None:
            for agent in agents:
                agent.infer_states(observation)
                agent.update_A(observation)
                agent.infer_policies()
                agent.sample_action()

        r, scale = timed_runs(step_all, runs), len(agents)
    else:
        n = 1024
        population = learning_population(n, kind)
        obs = np.tile(observation, (n, 1))
        r, scale = timed_runs(lambda: population.step(obs, learn=True), runs), n
    return {key: (value / scale if key in ("median", "min", "max") else value) for key, value in r.items()}


def plot(rows: list[dict[str, Any]], path: str, agents: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = [r["trials"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(trials, [r["correct_arm_probability"] for r in rows], marker="o", label="P(reward | correct arm), learned")
    ax.plot(trials, [r["rewarded"] for r in rows], marker="s", label="rewarded trials (share in block)")
    ax.set_xlabel("trials")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"T-maze, {agents} agents learning pA[1]", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    import importlib.util

    if args.model != "tmaze" or not args.learn:
        print("demo: --learn and --plot need --model tmaze --learn", file=sys.stderr)
        return 2
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print("demo: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    block = args.block
    print(
        f"T-maze learning: {args.agents} agents learn the arms' reward contingencies (pA[1], from a flat "
        f"prior) over {args.trials} trials of {TRIAL_MOVES} moves; blocks of {block} trials.\n"
    )
    rows = simulate(args.agents, args.trials, block, None)
    print("| trials | P(reward \\| correct arm), learned | rewarded trials in block | seconds so far |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['trials']} | {r['correct_arm_probability']:.3f} | {r['rewarded']:.3f} | {r['seconds']:.2f} |")
    print(
        "\nP(reward | correct arm): the agents' mean expected probability (their normalized pA[1]) that "
        "the arm paying in the trial's condition gives a reward (the maze's is 0.98)."
    )
    if args.plot:
        plot(rows, args.plot, args.agents)
        print(f"plot: {args.plot}")
    return 0
