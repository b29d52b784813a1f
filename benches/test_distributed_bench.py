"""A local native population against the same population in shards on 2 Dask worker
processes (loopback LocalCluster, one thread each), 20 steps per round, at several sizes: where
the shards' work outgrows Dask's per-step dispatch. On one machine both use the same cores, so
Dask can only lose here; the table shows by how much, and what a step costs in dispatch alone."""

from __future__ import annotations

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs.agents import AgentPopulation, GridWorld, grid_world_model

distributed = pytest.importorskip("distributed")
from freeagentics_rs.distributed import DistributedPopulation  # noqa: E402

STEPS = 20


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.mark.parametrize("agents", [2, 1000, 10_000, 50_000])
@pytest.mark.parametrize("kind", ["local", "dask"])
def test_steps(benchmark, client, kind, agents):
    backend = freeagentics_rs.BACKEND
    model = grid_world_model(10, backend=backend)
    if kind == "local":
        population = AgentPopulation(model, agents, seed=0, backend=backend)
        label = f"local AgentPopulation ({backend}, {freeagentics_rs.available_cpus()} threads)"
    else:
        population = DistributedPopulation(model, agents, client, shards=2, seed=0, num_threads=1, backend=backend)
        label = f"DistributedPopulation, 2 Dask workers ({backend}, 1 thread each)"
    world = GridWorld(10, agents, seed=0)

    def run():
        for _ in range(STEPS):
            world.move(population.step(world.observe()))

    benchmark.group = f"distributed: {agents} agents x {STEPS} steps"
    benchmark.extra_info.update(family="distributed", kind=label, agents=agents, steps=STEPS)
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert np.asarray(world.positions).shape == (agents,)
