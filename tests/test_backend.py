import concurrent.futures as cf

import freeagentics_rs
import numpy as np
import pytest
from freeagentics_rs import WorkStealingThreadPool
from helpers import run_python


def test_public_names_are_importable_from_the_package():
    for name in freeagentics_rs.__all__:
        assert hasattr(freeagentics_rs, name), name
    assert freeagentics_rs.BACKEND in ("rust", "python")
    assert isinstance(freeagentics_rs.__version__, str)


def test_every_object_reports_its_backend(pool_factory, backend):
    assert pool_factory(1).backend == backend


def test_python_backend_never_imports_the_extension():
    out = run_python(
        """
        import sys, freeagentics_rs
        with freeagentics_rs.WorkStealingThreadPool(2) as p:
            assert p.submit(sum, [1, 2]).result() == 3
        print(freeagentics_rs.BACKEND, "freeagentics_rs._native" in sys.modules)
        """,
        backend="python",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["python", "False"]


def test_unknown_backend_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid backends: auto, rust, python"):
        WorkStealingThreadPool(1, backend="cuda")
    out = run_python("import freeagentics_rs", backend="fortran")
    assert out.returncode != 0
    assert "valid backends: auto, rust, python" in out.stderr


def test_missing_extension_auto_falls_back_and_rust_says_how_to_build():
    code = """
        import sys
        sys.modules["freeagentics_rs._native"] = None  # as if it were never built
        import freeagentics_rs
        print(freeagentics_rs.BACKEND)
        try:
            freeagentics_rs.WorkStealingThreadPool(1, backend="rust")
        except ImportError as e:
            print("ImportError:", e)
    """
    out = run_python(code, backend="auto")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "python"
    assert lines[1].startswith("ImportError:") and "make build" in lines[1]
    forced = run_python(code, backend="rust")
    assert forced.returncode != 0 and "make build" in forced.stderr


def test_backend_argument_overrides_the_process_choice(backend):
    with WorkStealingThreadPool(1, backend="python") as pool:
        assert pool.backend == "python"
        assert pool.submit(len, "abc").result() == 3


def test_the_executor_is_a_thread_pool_executor(pool_factory):
    pool = pool_factory(2)
    assert isinstance(pool, cf.ThreadPoolExecutor)
    assert isinstance(pool.submit(int).result.__self__, cf.Future)


def test_auto_picks_rust_when_the_extension_imports():
    import importlib.util

    built = importlib.util.find_spec("freeagentics_rs._native") is not None
    out = run_python("import freeagentics_rs; print(freeagentics_rs.BACKEND)", backend="auto")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("rust" if built else "python")


# The contract between fronts and cores (``_contracts``): mypy checks the signatures at lint
# time; these check, on the backend under test, that the classes ``cores()`` picks are the ones
# the fronts use and that their instances have every member of their Protocol.


def test_cores_picks_the_extension_or_the_python_twins(backend):
    from freeagentics_rs import _backend
    from freeagentics_rs.executor import _py as pool_py
    from freeagentics_rs.memory import _py as memory_py
    from freeagentics_rs.registry import _py as registry_py

    cores = _backend.cores(backend)
    if backend == "rust":
        assert cores is _backend.native()
        return
    assert cores.WorkStealingCore is pool_py.WorkStealingCore
    assert cores.AgentRegistryCore is registry_py.AgentRegistryCore
    assert cores.SlotPoolCore is memory_py.SlotPoolCore
    assert cores.ModelStoreCore is memory_py.ModelStoreCore


def test_every_front_holds_a_core_that_keeps_its_protocol(backend, pool_factory):
    from freeagentics_rs import AgentRegistry, SharedMemoryPool, SharedModelStore, _backend, _contracts

    cores = _backend.cores(backend)
    with SharedMemoryPool(4, capacity=1, backend=backend) as pool, SharedModelStore(backend=backend) as store:
        for front, core_class, protocol in (
            (pool_factory(1), cores.WorkStealingCore, _contracts.PoolCore),
            (AgentRegistry(backend=backend), cores.AgentRegistryCore, _contracts.RegistryCore),
            (pool, cores.SlotPoolCore, _contracts.SlotPoolCore),
            (store, cores.ModelStoreCore, _contracts.ModelStoreCore),
        ):
            assert type(front._core) is core_class
            assert isinstance(front._core, protocol), (core_class, protocol)


def test_the_agent_kernels_keep_their_protocols(backend):
    from freeagentics_rs import _contracts
    from freeagentics_rs.agents import AgentPopulation, grid_world_model, tmaze_model

    single = AgentPopulation(grid_world_model(3, backend=backend), 2, backend=backend)
    factors = AgentPopulation(tmaze_model(backend=backend), 2, backend=backend)
    assert isinstance(single._kernel, _contracts.AgentKernel)
    assert isinstance(factors._kernel, _contracts.FactorKernel)
    # The same keywords drive both backends' kernels (mypy checks the signatures).
    observations = np.zeros((2, 3), np.int64)
    p = factors
    actions = p.actions.reshape(2, -1)
    p._kernel.run(
        p.beliefs, p.q_pi, p.G, p.F, actions, p.timesteps, observations=observations, key=1, infer=True, plan=True
    )
    assert np.isfinite(factors.q_pi).all() and np.allclose(factors.q_pi.sum(axis=1), 1.0)
