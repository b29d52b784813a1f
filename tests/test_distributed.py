"""freeagentics_rs.distributed against a real LocalCluster (2 worker processes, loopback only,
no dashboard on 0.0.0.0), with warnings as errors: the same results as a local population, state
round trips, chunked map, a worker killed mid-run, clean shutdown, and the missing-extra error."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import threading
import time

import numpy as np
import pytest
from freeagentics_rs import AgentStateStore, ShardsLostError
from freeagentics_rs.agents import AgentPopulation, GridWorld, TMaze, grid_world_model, reward_grid_model, tmaze_model
from helpers import run_python

distributed = pytest.importorskip("distributed", reason="Dask is an optional extra (`make test` installs it)")
from freeagentics_rs.distributed import DistributedPopulation, executor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("error")

CLUSTER = dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(**CLUSTER) as cluster, distributed.Client(cluster) as client:
        yield client


def test_results_equal_a_local_population(client, backend):
    model = grid_world_model(5, backend=backend)
    remote = DistributedPopulation(model, 50, client, shards=3, seed=3, backend=backend)
    local = AgentPopulation(model, 50, seed=3, backend=backend)
    assert remote.shards == 3 and remote.bounds == [(0, 16), (16, 33), (33, 50)]
    worlds = GridWorld(5, 50, seed=1), GridWorld(5, 50, seed=1)
    for _ in range(8):
        actions = remote.step(worlds[0].observe()), local.step(worlds[1].observe())
        assert np.array_equal(*actions)
        for world, a in zip(worlds, actions, strict=True):
            world.move(a)
    assert np.allclose(remote.gather_beliefs(), local.beliefs, rtol=0, atol=1e-15)
    last = remote.run(worlds[0], 3)
    for _ in range(3):
        expected = local.step(worlds[1].observe())
        worlds[1].move(expected)
    assert np.array_equal(last, expected) and np.array_equal(worlds[0].positions, worlds[1].positions)
    with pytest.raises(ValueError, match=r"^observations: must have shape \(50,\) or \(50, 1\)"):
        remote.step(np.zeros(49, np.int64))
    with pytest.raises(ValueError, match=r"^observations: modality 0 must lie in \[0, 5\)"):
        remote.step(np.r_[np.zeros(40, np.int64), np.full(10, 7)])  # checked before any shard steps
    assert np.array_equal(remote.step(worlds[0].observe()), local.step(worlds[1].observe()))


def test_factorized_models_match_a_local_population(client, backend, tmp_path):
    """The T-maze (two factors, three modalities) in shards: (agents, factors) actions, the
    qs tuple and a checkpoint round trip, as one local population with the same seed."""
    model = tmaze_model(backend=backend)
    remote = DistributedPopulation(model, 12, client, shards=np.int64(2), policy_len=2, seed=5, backend=backend)
    local = AgentPopulation(model, 12, policy_len=2, seed=5, backend=backend)
    assert remote.shards == 2 and remote.bounds == [(0, 6), (6, 12)]
    envs = TMaze(12, seed=2), TMaze(12, seed=2)
    observations = [env.reset() for env in envs]
    for _ in range(4):
        actions = remote.step(observations[0]), local.step(observations[1])
        assert actions[0].shape == (12, 2) and np.array_equal(*actions)
        observations = [env.step(a) for env, a in zip(envs, actions, strict=True)]
    qs = remote.gather_qs()
    assert len(qs) == 2 and [q.shape for q in qs] == [(12, 4), (12, 2)]
    for mine, theirs in zip(qs, local.qs, strict=True):
        assert np.allclose(mine, theirs, rtol=0, atol=1e-15)
    assert np.allclose(remote.gather_beliefs(), local.beliefs, rtol=0, atol=1e-15)
    with AgentStateStore(tmp_path / "states.db") as store:
        remote.checkpoint(store)
        after = remote.step(observations[0])
        remote.restore(store)
        assert remote.steps_taken == 4 and np.array_equal(remote.step(observations[0]), after)


def test_shards_takes_numpy_ints_and_refuses_other_types(client, backend):
    model = grid_world_model(3, backend=backend)
    population = DistributedPopulation(model, 4, client, shards=np.int64(2), backend=backend)
    assert population.shards == 2
    population.close()
    for bad in (2.0, "2", True):
        with pytest.raises(TypeError, match=f"^shards: must be an int, not {type(bad).__name__}$"):
            DistributedPopulation(model, 4, client, shards=bad, backend=backend)
    with pytest.raises(ValueError, match=r"^shards: must be between 1 and 4, got 5$"):
        DistributedPopulation(model, 4, client, shards=5, backend=backend)
    with pytest.raises(TypeError, match="^n_agents: must be an int, not float$"):
        DistributedPopulation(model, 4.0, client, backend=backend)


def test_multi_modality_and_deterministic_runs(client, backend):
    model = reward_grid_model(backend=backend)
    remote = DistributedPopulation(model, 20, client, action_selection="deterministic", backend=backend)
    local = AgentPopulation(model, 20, action_selection="deterministic", backend=backend)
    obs = np.random.default_rng(0).integers(0, [9, 3, 2], (5, 20, 3))
    for o in obs:
        assert np.array_equal(remote.step(o), local.step(o))
    assert remote.shards == 2 and remote.steps_taken == 5


def test_checkpoint_and_restore_through_a_state_store(client, backend, tmp_path):
    model = grid_world_model(4, backend=backend)
    world = GridWorld(4, 30, seed=2)
    with AgentStateStore(tmp_path / "states.db") as store:
        first = DistributedPopulation(model, 30, client, shards=2, seed=7, backend=backend)
        first.run(world, 4)
        first.checkpoint(store)
        obs = world.observe()
        expected = first.step(obs)
        second = DistributedPopulation(model, 30, client, shards=2, seed=99, backend=backend)
        second.restore(store)
        assert second.steps_taken == 4 and np.array_equal(second.step(obs), expected)
        third = DistributedPopulation(model, 30, client, shards=3, backend=backend)
        with pytest.raises(ValueError, match="another layout"):
            third.restore(store)


def test_only_a_gone_worker_counts_as_lost_and_close_frees_the_shards(client, backend):
    population = DistributedPopulation(grid_world_model(3, backend=backend), 6, client, backend=backend)
    assert population._worker_lost(0, TimeoutError("the shard's own")) is False  # its worker answers
    assert population._worker_lost(0, ValueError("bad")) is False

    def live_actors():
        # Only this population's actors: earlier tests' may be freed meanwhile on the shared client.
        return set().union(*client.run(lambda dask_worker: list(dask_worker.state.actors)).values())

    shards = {actor.key for actor in population._actors}
    assert len(shards) == 2 and shards <= live_actors()
    population.close()
    for _ in range(100):
        if not shards & live_actors():
            break
        threading.Event().wait(0.02)
    assert not shards & live_actors()


def test_workers_are_asked_of_the_scheduler_not_of_the_clients_cache(client, backend, monkeypatch):
    """``Client.scheduler_info()`` is a cache that the client's periodic refresh (which fetches no
    workers) can overwrite right after a fresh fetch: a DistributedPopulation once found "no
    workers" on this cluster of two, and a lost-worker check could have found its worker gone.
    Shards, that check and map's chunks count the workers the scheduler has."""
    monkeypatch.setattr(client, "scheduler_info", lambda *args, **kwargs: {"workers": {}})
    population = DistributedPopulation(grid_world_model(3, backend=backend), 6, client, backend=backend)
    assert population.shards == 2
    assert population._worker_lost(0, TimeoutError("the shard's own")) is False
    population.close()
    with executor(client) as pool:
        assert list(pool.map(abs, range(-16, 0))) == list(range(16, 0, -1))
        assert pool.tasks_submitted == 8  # four chunks per worker


def test_executor_follows_concurrent_futures(client):
    with executor(client) as pool:
        assert pool.submit(sorted, [3, -1, 2], key=abs).result() == [-1, 2, 3]  # fn's keywords stay fn's
        blockers = [pool.submit(time.sleep, 0.5) for _ in range(2)]  # both workers busy
        queued = pool.submit(abs, -5)
        assert not queued.running() and queued.cancel() and queued.cancelled()
        with pytest.raises(cf.TimeoutError):
            list(pool.map(time.sleep, [0.3] * 6, chunksize=1, timeout=0.4))
        cf.wait(blockers)


def test_executor_ships_chunks(client):
    with executor(client) as pool:
        assert list(pool.map(pow, range(10), [2] * 10, chunksize=4)) == [i * i for i in range(10)]
        assert pool.tasks_submitted == 3
        assert pool.submit(sum, [1, 2, 3]).result() == 6
        with pytest.raises(ZeroDivisionError):
            pool.submit(divmod, 1, 0).result()
        assert list(pool.map(abs, [-1, -2, -3, -4, -5, -6, -7, -8, -9])) == list(range(1, 10))
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(abs, 1)


def test_a_worker_killed_during_a_run(backend):
    model = grid_world_model(4, backend=backend)
    with distributed.LocalCluster(**CLUSTER) as cluster, distributed.Client(cluster) as client:
        population = DistributedPopulation(model, 20, client, shards=2, seed=1, backend=backend)
        twin = AgentPopulation(model, 20, seed=1, backend=backend)
        world = GridWorld(4, 20, seed=3)
        population.run(world, 2)
        twin_world = GridWorld(4, 20, seed=3)
        for _ in range(2):
            twin_world.move(twin.step(twin_world.observe()))
        population.checkpoint()
        saved = twin.save_state()
        population.run(world, 2)
        victim = population._actors[1]._address
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        lost = None
        for _ in range(50):  # until the scheduler notices
            try:
                actions = population.step(world.observe())
            except ShardsLostError as e:
                lost = e
                break
            assert actions.shape == (20,)  # never fewer agents
        assert lost is not None and lost.shards == [1] and lost.step == 2 and population.steps_taken == 2
        twin.load_state(saved)  # every shard went back to the checkpoint: still one population
        obs = world.observe()
        assert np.array_equal(population.step(obs), twin.step(obs))
        assert np.allclose(population.gather_beliefs(), twin.beliefs, rtol=0, atol=1e-15)


def test_clean_shutdown_leaves_no_processes(backend):
    result = run_python(
        """
        import psutil
        import numpy as np
        from distributed import Client, LocalCluster
        from freeagentics_rs.agents import grid_world_model
        from freeagentics_rs.distributed import DistributedPopulation
        if __name__ == "__main__":
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                              dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
                population = DistributedPopulation(grid_world_model(3), 10, client)
                population.step(np.zeros(10, np.int64))
                population.close()
            # multiprocessing's resource tracker stays until this process exits, by design
            children = psutil.Process().children(recursive=True)
            print(len([p for p in children if "resource_tracker" not in " ".join(p.cmdline())]))
        """,
        backend=backend,
        timeout=120,
        env_extra={"PYTHONWARNINGS": "error"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "0"


def test_without_dask_the_import_error_names_the_extra(backend):
    result = run_python(
        """
        import sys
        sys.modules["distributed"] = None
        try:
            import freeagentics_rs.distributed
        except ImportError as e:
            print(e)
        """,
        backend=backend,
    )
    assert "pip install 'freeagentics_rs[distributed]'" in result.stdout, result.stderr
