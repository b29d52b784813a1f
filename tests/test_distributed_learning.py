"""DistributedPopulation's agents that learn, against one local AgentPopulation with the same
model, arguments and seed (a real LocalCluster of 2 worker processes, loopback only): the
T-maze learned on 1, 2 and 3 shards, the same errors for bad arguments (nothing changed), and
``run`` driving a TMaze."""

from __future__ import annotations

import re

import numpy as np
import pytest
from freeagentics_rs.agents import AgentPopulation, GenerativeModel, TMaze, tmaze_model
from freeagentics_rs.cli._tmaze_learn_demo import tmaze_prior

distributed = pytest.importorskip("distributed", reason="Dask is an optional extra (`make test` installs it)")
from freeagentics_rs.distributed import DistributedPopulation  # noqa: E402

pytestmark = pytest.mark.filterwarnings("error")

CLUSTER = dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")
AGENTS = 9


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(**CLUSTER) as cluster, distributed.Client(cluster) as client:
        yield client


def tmaze_learning(backend):
    """The T-maze with pymdp's learning prior on the reward modality, plus pB and pD on the
    location factor: (model, the population arguments)."""
    prior = tmaze_prior()
    maze = tmaze_model(backend=backend)
    model = GenerativeModel([p / p.sum(axis=0) for p in prior], maze.B, maze.C, maze.D, backend=backend)
    arguments = dict(
        policy_len=2,
        pA=prior,
        pB=[b * 4.0 + 0.5 for b in maze.B],
        pD=[d * 3.0 + 1.0 for d in maze.D],
        modalities_to_learn=[1],
        factors_to_learn=[0],
        lr_pA=0.5,
        lr_pB=0.7,
        lr_pD=1.3,
        use_param_info_gain=True,
        seed=4,
        backend=backend,
    )
    return model, arguments


def assert_same_parameters(remote, local):
    for name in ("pA", "pB", "pD"):
        gathered, own = getattr(remote, name), getattr(local, name)
        assert len(gathered) == len(own), name
        for k, (mine, theirs) in enumerate(zip(gathered, own, strict=True)):
            assert mine.shape == theirs.shape and mine.flags.writeable == theirs.flags.writeable, (name, k)
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=0, err_msg=f"{name}[{k}]")


def assert_same_beliefs(remote, local):
    for mine, theirs in zip(remote.gather_qs(), local.qs, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-12)


def qs_of(population):
    return (
        population.gather_qs()
        if isinstance(population, DistributedPopulation)
        else tuple(q.copy() for q in population.qs)
    )


def learning_run(population, env):
    """Three trials of pymdp's T-maze learning loop (every learned array moves), then each
    update once more by hand; returns every step's actions."""
    actions = []
    for _ in range(3):
        obs = env.reset()
        population.reset()
        for _ in range(2):
            actions.append(population.step(obs, learn=True))
            obs = env.step(actions[-1])
        actions.append(population.step(obs, learn=True))  # learns from the last move's outcome
        population.update_D()
    previous = qs_of(population)
    actions.append(population.step(obs))
    population.update_A(obs)
    population.update_B(previous)
    population.update_D(previous)
    return actions


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_a_tmaze_learning_run_equals_a_local_population(client, backend, shards):
    model, arguments = tmaze_learning(backend)
    remote = DistributedPopulation(model, AGENTS, client, shards=shards, **arguments)
    local = AgentPopulation(model, AGENTS, **arguments)
    assert remote.shards == shards
    for mine, theirs in zip(
        learning_run(remote, TMaze(AGENTS, seed=1)), learning_run(local, TMaze(AGENTS, seed=1)), strict=True
    ):
        assert mine.shape == (AGENTS, 2) and np.array_equal(mine, theirs)
    prior = tmaze_prior()
    assert not np.array_equal(remote.pA[1], np.broadcast_to(prior[1], remote.pA[1].shape))  # it learned
    assert_same_parameters(remote, local)
    assert_same_beliefs(remote, local)
    remote.reset(parameters=True)
    local.reset(parameters=True)
    assert_same_parameters(remote, local)
    assert np.array_equal(remote.pA[1][0], prior[1])
    remote.close()


def same_error(local_call, remote_call):
    """Both calls raise the same exception class with the same message."""
    with pytest.raises(Exception) as expected:
        local_call()
    with pytest.raises(expected.type, match=f"^{re.escape(str(expected.value))}$"):
        remote_call()


def test_bad_learning_arguments_raise_as_a_local_population_and_change_nothing(client, backend):
    model, arguments = tmaze_learning(backend)
    remote = DistributedPopulation(model, AGENTS, client, shards=2, **arguments)
    local = AgentPopulation(model, AGENTS, **arguments)
    obs = TMaze(AGENTS, seed=0).reset()
    # update_D before any state inference: no first posterior recorded yet
    same_error(local.update_D, remote.update_D)
    for call, args, kwargs in [
        ("step", (obs,), {"learn": "yes"}),
        ("step", (obs[:, :2],), {"learn": True}),
        ("update_A", (obs[:5],), {}),
        ("update_A", (obs + 7,), {}),
        ("update_B", ([np.zeros((AGENTS, 4))],), {}),
        ("update_B", ([np.zeros((AGENTS, 4)), np.zeros((AGENTS, 3))],), {}),
        ("update_B", ([np.zeros((AGENTS, 4)), [["x"] * 2] * AGENTS],), {}),
        ("update_B", (np.zeros((AGENTS, 6)),), {}),
        ("update_D", ([np.zeros((AGENTS - 1, 4)), np.zeros((AGENTS, 2))],), {}),
        ("reset", (), {"parameters": "no"}),
    ]:
        same_error(
            lambda c=call, a=args, k=kwargs: getattr(local, c)(*a, **k),
            lambda c=call, a=args, k=kwargs: getattr(remote, c)(*a, **k),
        )
    assert remote.steps_taken == 0
    assert_same_parameters(remote, local)
    assert_same_beliefs(remote, local)
    assert np.array_equal(remote.step(obs, learn=True), local.step(obs, learn=True))
    assert_same_parameters(remote, local)
    # built without parameters: each update is refused, naming what is missing
    plain_remote = DistributedPopulation(model, AGENTS, client, shards=2, backend=backend)
    plain_local = AgentPopulation(model, AGENTS, backend=backend)
    assert plain_remote.pA is None and plain_remote.pB is None and plain_remote.pD is None
    same_error(lambda: plain_local.update_A(obs), lambda: plain_remote.update_A(obs))
    same_error(lambda: plain_local.update_B(plain_local.qs), lambda: plain_remote.update_B(plain_local.qs))
    same_error(plain_local.update_D, plain_remote.update_D)
    # bad learning arguments at construction
    for bad in [
        dict(pA=[np.ones(3)]),
        dict(pA=arguments["pA"], lr_pA=-1.0),
        dict(pD=arguments["pD"], factors_to_learn=[5]),
    ]:
        same_error(
            lambda b=bad: AgentPopulation(model, AGENTS, backend=backend, **b),
            lambda b=bad: DistributedPopulation(model, AGENTS, client, shards=2, backend=backend, **b),
        )
    for population in (remote, plain_remote):
        population.close()


def test_a_lost_worker_rewinds_the_parameters_to_the_last_checkpoint(client, backend):
    """Going back to the construction (what a lost worker causes before any checkpoint) restores
    the priors on the surviving shards too, as the rebuilt ones have them."""
    model, arguments = tmaze_learning(backend)
    remote = DistributedPopulation(model, AGENTS, client, shards=2, **arguments)
    fresh = AgentPopulation(model, AGENTS, **arguments)
    env = TMaze(AGENTS, seed=3)
    remote.run(env, 2, learn=True)
    remote._rewind()  # what _call_all does after rebuilding the lost shards
    assert remote.steps_taken == 0
    assert_same_parameters(remote, fresh)
    assert_same_beliefs(remote, fresh)
    remote.run(env, 2, learn=True)
    remote.checkpoint()  # a checkpoint carries the learned parameters
    saved = remote.pA[1]
    remote.run(env, 2, learn=True)
    assert not np.array_equal(remote.pA[1], saved)
    remote._rewind()
    assert remote.steps_taken == 2 and np.array_equal(remote.pA[1], saved)
    remote.close()


def test_run_drives_a_tmaze_and_refuses_other_worlds(client, backend):
    model, arguments = tmaze_learning(backend)
    remote = DistributedPopulation(model, AGENTS, client, shards=2, **arguments)
    local = AgentPopulation(model, AGENTS, **arguments)
    last = remote.run(TMaze(AGENTS, seed=5), 3, learn=True)
    env = TMaze(AGENTS, seed=5)
    obs = env.reset()
    for _ in range(3):
        expected = local.step(obs, learn=True)
        obs = env.step(expected)
    assert np.array_equal(last, expected) and remote.steps_taken == 3
    assert_same_parameters(remote, local)
    with pytest.raises(
        TypeError,
        match=r"^world: must have observe\(\) and move\(actions\) \(as GridWorld\) or reset\(\) and "
        r"step\(actions\) \(as TMaze\), not object$",
    ):
        remote.run(object(), 1)
    with pytest.raises(TypeError, match="^steps: must be an int, not float$"):
        remote.run(TMaze(AGENTS), 1.0)
    assert remote.steps_taken == 3
    remote.close()
