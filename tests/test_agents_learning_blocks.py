"""Agents that learn, on the numpy backend, work on blocks of at most ``BLOCK_ROWS`` agents: one
step's temporaries take memory bounded by the block, not by the population, and the results are
those of one block over every agent, bit for bit (the Rust backend runs the same tests)."""

from __future__ import annotations

import tracemalloc

import numpy as np
from freeagentics_rs.agents import AgentPopulation, GenerativeModel, _learning
from freeagentics_rs.cli._tmaze_learn_demo import learning_population
from test_agents_learning import _norm, random_model


def _step_peak(agents: int, backend: str) -> int:
    """The most memory (traced by Python, so numpy's arrays) live at once during one learning
    step of ``agents`` T-maze agents, beyond what was live before it."""
    pop = learning_population(agents, backend)
    observations = np.zeros((agents, 3), np.int64)
    pop.step(observations, learn=True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pop.step(observations, learn=True)
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_learning_step_temporaries_do_not_grow_with_the_population(backend):
    small, large = 1024, 4096
    per_agent = (_step_peak(large, backend) - _step_peak(small, backend)) / (large - small)
    # The actions returned and the observations checked are per agent (a few dozen bytes);
    # a step's temporaries over every agent were ~5 kB per agent.
    assert per_agent < 64, per_agent


def _run(agents: int, backend: str) -> dict[str, np.ndarray]:
    pA, pB, C, pD = random_model(seed=5)
    model = GenerativeModel(_norm(pA), _norm(pB), C, _norm(pD), backend=backend)
    outputs: dict[str, np.ndarray] = {}
    for name, kwargs in {
        "all": {"pB": pB, "pD": pD, "use_param_info_gain": True, "policy_len": 2},
        "some": {"pD": pD, "modalities_to_learn": [0, 2], "factors_to_learn": [0], "sampling_mode": "full"},
    }.items():
        pop = AgentPopulation(model, agents, pA=pA, seed=3, backend=backend, **kwargs)
        rng = np.random.default_rng(7)
        for t in range(3):
            pop.step(np.stack([rng.integers(0, o, agents) for o in model.num_obs], axis=1), learn=True)
            if t == 0:
                pop.update_D()
        pop.agent(agents - 1).step([1, 2, 0])
        for key in ("beliefs", "q_pi", "G", "F", "actions", "timesteps"):
            outputs[f"{name} {key}"] = getattr(pop, key).copy()
        for key in ("pA", "pB", "pD"):
            for i in pop.learned[key]:
                outputs[f"{name} {key}[{i}]"] = getattr(pop, key)[i].copy()
    return outputs


def test_blocks_give_the_results_of_one_block_bit_for_bit(backend, monkeypatch):
    assert _learning.BLOCK_ROWS % 64 == 0
    monkeypatch.setattr(_learning, "BLOCK_ROWS", 64)  # a small block: a small test
    agents = 2 * 64 + 37  # two full blocks and a partial one
    blocked = _run(agents, backend)
    monkeypatch.setattr(_learning, "BLOCK_ROWS", 1 << 40)
    whole = _run(agents, backend)
    assert blocked.keys() == whole.keys()
    for key, value in blocked.items():
        np.testing.assert_array_equal(value, whole[key], err_msg=key, strict=True)
