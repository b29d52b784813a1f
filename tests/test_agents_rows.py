"""The Rust kernel bindings' ``run`` (the single-factor, factorized and learning kernels, and the
learning kernel's ``step_learning``) take the population's six state arrays and the
observations the same way: each must be C-contiguous, or the call is a ``ValueError`` naming
the kernel's arrays, and nothing is written."""

from __future__ import annotations

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs.agents import AgentPopulation, grid_world_model, tmaze_model

pytestmark = pytest.mark.skipif(freeagentics_rs.BACKEND != "rust", reason="the Rust kernels' bindings")

AGENTS = 4


def strided(a):
    """A writeable copy of ``a`` that is not C-contiguous."""
    out = np.empty((*a.shape, 2), a.dtype)[..., 0]
    out[...] = a
    return out


def population(kind):
    if kind == "single":
        return AgentPopulation(grid_world_model(3), AGENTS, seed=0)
    model = tmaze_model()
    if kind == "factor":
        return AgentPopulation(model, AGENTS, seed=0)
    return AgentPopulation(model, AGENTS, pA=[a * 10.0 + 1.0 for a in model.A], modalities_to_learn=[1], seed=0)


def calls(kind, pop):
    """(the call taking the six arrays and the observations, the message of a refusal)."""
    kernel = pop._kernel
    if kind != "learning":
        message = "population arrays: must be C-contiguous and aligned"
        return [
            (
                lambda *arrays, observations: kernel.run(
                    *arrays, observations=observations, key=1, infer=True, plan=True, act=True
                ),
                message,
            )
        ]
    own = pop._learning.rows(slice(None))
    params = dict(pa=list(own.A.values()), pb=list(own.B.values()), pd=list(own.D.values()))
    message = "learning arrays: must be C-contiguous and aligned"
    return [
        (
            lambda *arrays, observations: kernel.run(
                *arrays, observations=observations, key=1, infer=True, plan=True, act=True, **params
            ),
            message,
        ),
        (
            lambda *arrays, observations: kernel.step_learning(
                *arrays, observations=observations, key=1, first_row=0, lr_pa=1.0, lr_pb=1.0, **params
            ),
            message,
        ),
    ]


@pytest.mark.parametrize("kind", ["single", "factor", "learning"])
def test_every_kernel_binding_refuses_arrays_that_are_not_contiguous(kind):
    pop = population(kind)
    actions = pop.actions if kind == "single" else pop.actions.reshape(AGENTS, -1)
    state = [pop.beliefs, pop.q_pi, pop.G, pop.F, actions, pop.timesteps]
    observations = np.zeros((AGENTS, pop.model.num_modalities), np.int64)
    for call, message in calls(kind, pop):
        for k in range(len(state) + 1):
            arrays = [a.copy() for a in state]
            obs = observations.copy()
            if k < len(state):
                arrays[k] = strided(arrays[k])
            else:
                obs = strided(obs)
            before = [a.copy() for a in arrays]
            with pytest.raises(ValueError, match=f"^{message}$"):
                call(*arrays, observations=obs)
            assert all(np.array_equal(a, b) for a, b in zip(arrays, before, strict=True))
        arrays = [a.copy() for a in state]
        call(*arrays, observations=observations)  # contiguous: it steps
        assert (arrays[5] == 1).all()
