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

import freeagentics_rs
import numpy as np
import pytest
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
            Agent(
                A=obj(model.A),
                B=obj([model.B]),
                C=obj(model.C),
                D=obj([model.D]),
                policy_len=policy_len,
                inference_algo="VANILLA",
                gamma=8.0,
                alpha=8.0,
                action_selection="stochastic",
            )
            for _ in range(n)
        ]


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
            return (lambda: [_pymdp_step(a, o) for a, o in zip(agents, obs, strict=True)]), k, None
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
    _bench(
        benchmark,
        f"reward grid (18 states, 3 modalities), 1024 agents, policy_len {policy_len}",
        kind,
        run,
        steps,
        closer,
    )


@pytest.mark.parametrize("threads", [t for t in (1, 2, 4, 8, 16) if t <= available_cpus()])
def test_rayon_threads(benchmark, threads):
    rust_or_skip("rust")
    observations = GridWorld(10, 10_000, seed=0).observe()
    run, steps, closer = round_of("rust", grid_world_model(10), 10_000, observations, threads=threads)
    _bench(
        benchmark,
        "rust kernel threads, explorer model, 10000 agents",
        f"rust, {threads} thread{'s' * (threads > 1)}",
        run,
        steps,
        closer,
        threads=threads,
    )


# --- factorized models (several hidden-state factors) ---------------------------------------
# "rust": the factorized Rust kernel (rayon over agents); "numpy (python)": the numpy kernel.


def context_grid_model(grid=3):
    """pymdp 1.0's benchmark model: a grid x grid location factor (5 moves, clipped at the
    edges) and a 2-valued context factor; modalities location, outcome (none, reward,
    punishment: the reward corner depends on the context), cue (the context, 90% reliable at
    the centre, a coin elsewhere)."""
    cells = grid * grid
    B_location = np.zeros((cells, cells, 5))
    for cell in range(cells):
        row, col = divmod(cell, grid)
        for action, (dr, dc) in enumerate([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)]):
            r, c = min(max(row + dr, 0), grid - 1), min(max(col + dc, 0), grid - 1)
            B_location[r * grid + c, cell, action] = 1.0
    B = [B_location, np.eye(2).reshape(2, 2, 1)]
    A_location = np.zeros((cells, cells, 2))
    A_outcome = np.zeros((3, cells, 2))
    A_cue = np.zeros((2, cells, 2))
    good = {0: grid - 1, 1: cells - grid}
    for cell in range(cells):
        for ctx in range(2):
            A_location[cell, cell, ctx] = 1.0
            A_outcome[1 if cell == good[ctx] else 2 if cell == good[1 - ctx] else 0, cell, ctx] = 1.0
            A_cue[:, cell, ctx] = ([0.9, 0.1] if ctx == 0 else [0.1, 0.9]) if cell == cells // 2 else 0.5
    C = [np.zeros(cells), np.array([0.0, 3.0, -3.0]), np.zeros(2)]
    D = [np.eye(cells)[0], np.full(2, 0.5)]
    return [A_location, A_outcome, A_cue], B, C, D


def random_factor_model(seed=0):
    rng = np.random.default_rng(seed)

    def normalized(shape):
        x = rng.gamma(1.0, size=shape)
        return x / x.sum(axis=0)

    num_states, num_controls, num_obs = (3, 4, 2), (3, 1, 2), (4, 3, 2)
    A = [normalized((o,) + num_states) for o in num_obs]
    B = [normalized((n, n, c)) for n, c in zip(num_states, num_controls, strict=True)]
    return A, B, [rng.normal(0, 2, o) for o in num_obs], [normalized((n,)) for n in num_states]


def factor_round_of(kind, arrays, n, observations, policy_len):
    from freeagentics_rs.agents import GenerativeModel

    if kind == "pymdp serial":
        pymdp = pytest.importorskip("pymdp")
        from pymdp.agent import Agent

        def obj(items):
            out = pymdp.utils.obj_array(len(items))
            for i, a in enumerate(items):
                out[i] = np.asarray(a, np.float64)
            return out

        A, B, C, D = arrays
        k = min(n, SAMPLE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agents = [
                Agent(
                    A=obj(A),
                    B=obj(B),
                    C=obj(C),
                    D=obj(D),
                    policy_len=policy_len,
                    inference_algo="VANILLA",
                    gamma=8.0,
                    alpha=8.0,
                    action_selection="stochastic",
                )
                for _ in range(k)
            ]
        obs = [[int(o) for o in observations[i]] for i in range(k)]
        return (lambda: [_pymdp_step(a, o) for a, o in zip(agents, obs, strict=True)]), k, None
    backend = "rust" if kind.startswith("rust") else "python"
    pop = AgentPopulation(GenerativeModel(*arrays, backend=backend), n, policy_len=policy_len, seed=0, backend=backend)
    return (lambda: pop.step(observations)), n, None


def _tmaze_arrays():
    from freeagentics_rs.agents import tmaze_model

    model = tmaze_model(backend="python")
    return list(model.A), list(model.B), list(model.C), list(model.D)


FACTOR_MODELS = {
    "T-maze (4x2 states, 3 modalities)": (_tmaze_arrays, [0, 0, 0], (1, 2)),
    "random 3-factor (3x4x2 states, 2 controlled)": (random_factor_model, [1, 0, 1], (2,)),
    "grid with context factor (3x3 x 2 states, 3 modalities)": (context_grid_model, [4, 0, 0], (1, 2)),
}


@pytest.mark.parametrize(("name", "policy_len"), [(m, p) for m, (_, _, lens) in FACTOR_MODELS.items() for p in lens])
@pytest.mark.parametrize("kind", ["pymdp serial", "numpy (python)", "rust"])
def test_factorized_agent_steps(benchmark, kind, name, policy_len):
    rust_or_skip(kind)
    make, obs, _ = FACTOR_MODELS[name]
    observations = np.tile(obs, (1024, 1))
    run, steps, closer = factor_round_of(kind, make(), 1024, observations, policy_len)
    _bench(benchmark, f"{name}, 1024 agents, policy_len {policy_len}", kind, run, steps, closer)


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
arrays = (pop.beliefs, pop.q_pi, pop.G, pop.F, pop.actions, pop.timesteps)
print(json.dumps({"rss": (rss() - before) / 10_000, "arrays": sum(a.nbytes for a in arrays) / 10_000}))
"""


@pytest.mark.parametrize("kind", ["numpy (python)", "rust"])
def test_memory_per_agent(benchmark, kind):
    rust_or_skip(kind)
    backend = "rust" if kind == "rust" else "python"

    def run():
        return subprocess.run([sys.executable, "-c", MEMORY, backend], capture_output=True, text=True, check=True)

    import json

    samples = [json.loads(run().stdout) for _ in range(3)]
    benchmark.group = "memory per agent beyond the shared model, 10000 explorer agents"
    benchmark.extra_info.update(
        family="agents-memory",
        kind=kind,
        rss=float(np.median([s["rss"] for s in samples])),
        arrays=samples[0]["arrays"],
    )
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


# --- agents that learn (pA[1] of the T-maze, update_A every step) -----------------------------


@pytest.mark.parametrize("kind", ["pymdp serial", "numpy (python)", "rust"])
def test_tmaze_learning_agent_steps(benchmark, kind):
    """pymdp: infer_states, update_A, infer_policies, sample_action per agent; a population:
    step(obs, learn=True) of 1024 agents."""
    rust_or_skip(kind)
    from freeagentics_rs.cli._tmaze_learn_demo import learning_population, pymdp_learning_agents

    observation = [0, 0, 0]
    if kind == "pymdp serial":
        pytest.importorskip("pymdp")
        agents = pymdp_learning_agents(SAMPLE)

        def run():
            for agent in agents:
                agent.infer_states(observation)
                agent.update_A(observation)
                agent.infer_policies()
                agent.sample_action()

        steps = SAMPLE
    else:
        pop = learning_population(1024, "rust" if kind == "rust" else "python")
        observations = np.tile(observation, (1024, 1))

        def run():
            pop.step(observations, learn=True)

        steps = 1024
    _bench(benchmark, "T-maze learning pA[1], 1024 agents, policy_len 1", kind, run, steps, None)


LEARNING_MEMORY = r"""
import gc, json, os, sys
import numpy as np
from freeagentics_rs.cli._tmaze_learn_demo import learning_population
backend, n = sys.argv[1], int(sys.argv[2])
learning_population(10, backend).step(np.zeros((10, 3), np.int64), learn=True)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
gc.collect(); before = rss()
pop = learning_population(n, backend)
pop.step(np.zeros((n, 3), np.int64), learn=True)
gc.collect()
state = (pop.beliefs, pop.q_pi, pop.G, pop.F, pop.actions, pop.timesteps)
print(json.dumps({
    "rss": (rss() - before) / n,
    "learned": sum(pop.pA[m].nbytes for m in pop.learned["pA"]) / n,
    "state": sum(a.nbytes for a in state) / n,
}))
"""


def learning_memory(backend, n=10_000, runs=3):
    """Median RSS growth per agent of ``n`` T-maze agents learning pA[1], each run a fresh
    process; with the learned arrays' and the state arrays' bytes per agent."""
    import json

    samples = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", LEARNING_MEMORY, backend, str(n)], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    first = samples[0]
    # "arrays": every per-agent array (the learned parameters and the population's state).
    return {**first, "arrays": first["learned"] + first["state"], "rss": float(np.median([s["rss"] for s in samples]))}


@pytest.mark.parametrize("kind", ["numpy (python)", "rust"])
def test_learning_memory_per_agent(benchmark, kind):
    rust_or_skip(kind)
    result = learning_memory("rust" if kind == "rust" else "python")
    benchmark.group = "memory per agent, 10000 T-maze agents learning pA[1]"
    benchmark.extra_info.update(family="agents-memory", kind=kind, **result)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
