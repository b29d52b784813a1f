"""Native agents against pymdp 0.0.7.1 in one run: agent-steps per second of AgentPopulation
(Rust kernel, numpy kernel) and of pymdp Agents stepped one by one, serially and on a
ThreadPoolExecutor; microseconds per agent-step on the reward grid; rayon threads; memory.

A round of a population is one `step` of all its agents. pymdp costs the same per agent at any
population size, so its rounds step a sample of min(N, 16) agents; the rate is per agent-step."""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import sys
import warnings

import numpy as np
import pytest

import freeagentics_rs
from freeagentics_rs import available_cpus
from freeagentics_rs.agents import AgentPopulation, GridWorld, grid_world_model, reward_grid_model

SAMPLE = 16  # pymdp agents stepped per round


def rust_or_skip(kind: str) -> None:
    if kind.startswith("rust") and freeagentics_rs.BACKEND != "rust":
        pytest.skip("the Rust extension is not built")


def pymdp_agents(model, n, policy_len):
    pymdp = pytest.importorskip("pymdp")
    from pymdp.agent import Agent

    def obj(arrays):
        out = pymdp.utils.obj_array(len(arrays))
        for i, a in enumerate(arrays):
            out[i] = np.asarray(a)
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [
            Agent(A=obj(model.A), B=obj([model.B]), C=obj(model.C), D=obj([model.D]), policy_len=policy_len,
                  inference_algo="VANILLA", gamma=8.0, alpha=8.0, action_selection="stochastic")
            for _ in range(n)
        ]  # fmt: skip


def _pymdp_step(agent, obs):
    agent.infer_states(obs)
    agent.infer_policies()
    return agent.sample_action()


def round_of(kind, model, n, observations, policy_len=1, threads=None):
    """(a function doing one round, the agent-steps per round, something to close)."""
    if kind.startswith("pymdp"):
        k = min(n, SAMPLE)
        agents = pymdp_agents(model, k, policy_len)
        obs = [[int(o) for o in np.atleast_1d(observations[i])] for i in range(k)]
        if kind == "pymdp serial":
            return (lambda: [_pymdp_step(a, o) for a, o in zip(agents, obs)]), k, None
        pool = cf.ThreadPoolExecutor(available_cpus())
        return (lambda: list(pool.map(_pymdp_step, agents, obs))), k, pool
    backend = "rust" if kind.startswith("rust") else "python"
    pop = AgentPopulation(model, n, policy_len=policy_len, seed=0, num_threads=threads, backend=backend)
    return (lambda: pop.step(observations)), n, None


def _bench(benchmark, group, label, run, steps, closer, **info):
    benchmark.group = group
    benchmark.extra_info.update(family="agents", steps=steps, kind=label, **info)
    run()  # warm-up
    rounds = 5 if label.startswith("pymdp") else 20
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    if closer is not None:
        closer.shutdown()


EXPLORER_KINDS = ["pymdp serial", f"pymdp ThreadPoolExecutor({available_cpus()})", "numpy (python)", "rust"]


@pytest.mark.parametrize("n", [1, 100, 1000, 10_000])
@pytest.mark.parametrize("kind", EXPLORER_KINDS)
def test_explorer_agent_steps(benchmark, kind, n):
    rust_or_skip(kind)
    model = grid_world_model(10)
    observations = GridWorld(10, n, seed=0).observe()
    run, steps, closer = round_of(kind, model, n, observations)
    agents = f"{n} agent{'s' * (n > 1)}"
    _bench(benchmark, f"explorer model (grid 10, policy_len 1), {agents}", kind, run, steps, closer)


@pytest.mark.parametrize("policy_len", [1, 2])
@pytest.mark.parametrize("kind", ["pymdp serial", "numpy (python)", "rust"])
def test_reward_grid_agent_steps(benchmark, kind, policy_len):
    rust_or_skip(kind)
    model = reward_grid_model()
    observations = np.tile([4, 0, 0], (1024, 1))
    run, steps, closer = round_of(kind, model, 1024, observations, policy_len)
    _bench(benchmark, f"reward grid (18 states, 3 modalities), 1024 agents, policy_len {policy_len}",
           kind, run, steps, closer)  # fmt: skip


@pytest.mark.parametrize("threads", [t for t in (1, 2, 4, 8, 16) if t <= available_cpus()])
def test_rayon_threads(benchmark, threads):
    rust_or_skip("rust")
    observations = GridWorld(10, 10_000, seed=0).observe()
    run, steps, closer = round_of("rust", grid_world_model(10), 10_000, observations, threads=threads)
    _bench(benchmark, "rust kernel threads, explorer model, 10000 agents", f"rust, {threads} thread{'s' * (threads > 1)}",
           run, steps, closer, threads=threads)  # fmt: skip


MEMORY = r"""
import gc, json, os, sys
import numpy as np
from freeagentics_rs.agents import AgentPopulation, grid_world_model
model = grid_world_model(10, backend=sys.argv[1])
AgentPopulation(model, 10, backend=sys.argv[1]).step(np.zeros(10, np.int64))
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
gc.collect(); before = rss()
pop = AgentPopulation(model, 10_000, backend=sys.argv[1])
pop.step(np.zeros(10_000, np.int64))
gc.collect()
print(json.dumps({"rss": (rss() - before) / 10_000,
                  "arrays": sum(a.nbytes for a in (pop.beliefs, pop.q_pi, pop.G, pop.F, pop.actions, pop.timesteps)) / 10_000}))
"""


@pytest.mark.parametrize("kind", ["numpy (python)", "rust"])
def test_memory_per_agent(benchmark, kind):
    rust_or_skip(kind)
    backend = "rust" if kind == "rust" else "python"
    run = lambda: subprocess.run([sys.executable, "-c", MEMORY, backend], capture_output=True, text=True, check=True)  # noqa: E731
    import json

    samples = [json.loads(run().stdout) for _ in range(3)]
    benchmark.group = "memory per agent beyond the shared model, 10000 explorer agents"
    benchmark.extra_info.update(family="agents-memory", kind=kind, rss=float(np.median([s["rss"] for s in samples])),
                                arrays=samples[0]["arrays"])  # fmt: skip
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
