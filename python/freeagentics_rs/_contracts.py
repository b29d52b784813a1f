"""The contract between each public front and its two cores, as one ``typing.Protocol`` per core.

A front (``AgentRegistry``, ``SharedMemoryPool``, ...) is the same Python code on both backends;
it holds a core, the Rust class of ``_native`` or its pure-Python twin, and calls only what the
Protocol of that core lists. ``_backend.cores(backend)`` picks the classes, typed as ``Cores``, so
mypy checks both implementations against these Protocols: a core whose methods drift from them
(a renamed parameter, a missing method, another return type) fails ``make lint``.

Each Protocol lists exactly what the fronts call, not everything a core has (test hooks such as
``_submit_panic`` are left out). Parameter names are part of the contract wherever a front may
pass them by keyword.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "AgentKernel",
    "Cores",
    "FactorKernel",
    "ModelStoreCore",
    "ModelStoreCoreClass",
    "PoolCore",
    "PoolCoreClass",
    "RegistryCore",
    "RegistryCoreClass",
    "SlotPoolCore",
    "Settleable",
    "SlotPoolCoreClass",
]

AgentId = str | int
OnSamples = Callable[[int, float, float, float, float, float, float], object]


class Settleable(Protocol):
    """What a pool core settles for a job: a ``Future``, or the manager's runner stub that no one
    waits on."""

    def set_running_or_notify_cancel(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


@runtime_checkable
class PoolCore(Protocol):
    """The work-stealing pool behind ``WorkStealingThreadPool`` and ``AdaptiveThreadPoolExecutor``
    (``_native.WorkStealingCore``, ``executor._py.WorkStealingCore``)."""

    def submit(
        self, future: Settleable, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
    ) -> None: ...
    def submit_chunk(self, future: Future[Any], func: Callable[..., Any], items: list[Any], unpack: bool) -> None: ...  # noqa: FBT001 (the cores' signature)
    def help_until_done(self, future: Future[Any], timeout: float | None = None) -> bool: ...
    def is_worker_thread(self) -> bool: ...
    def resize(self, workers: int) -> None: ...
    def set_sample_batch(self, sample_batch: int) -> None: ...
    @property
    def target_workers(self) -> int: ...
    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None: ...  # noqa: FBT001 (the cores' signature)
    def stats(self) -> dict[str, int]: ...


class PoolCoreClass(Protocol):
    def __call__(
        self,
        max_workers: int,
        thread_name_prefix: str,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        on_samples: OnSamples | None = None,
        sample_batch: int = 16,
    ) -> PoolCore: ...


@runtime_checkable
class RegistryCore(Protocol):
    """The sharded map behind ``AgentRegistry`` (``_native.AgentRegistryCore``,
    ``registry._py.AgentRegistryCore``). The core checks each id (``TypeError``/``ValueError``
    naming ``agent_id``); ``__contains__`` answers False for anything that cannot be one."""

    @property
    def num_shards(self) -> int: ...
    def shard_of(self, agent_id: AgentId) -> int: ...
    def register(self, agent_id: AgentId, agent: Any) -> None: ...
    def set(self, agent_id: AgentId, agent: Any) -> None: ...
    def setdefault(self, agent_id: AgentId, default: Any = None) -> Any: ...
    def unregister(self, agent_id: AgentId) -> Any: ...
    def get(self, agent_id: AgentId, default: Any = None) -> Any: ...
    def __getitem__(self, agent_id: AgentId, /) -> Any: ...
    def __contains__(self, agent_id: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def ids(self) -> list[AgentId]: ...
    def items(self) -> list[tuple[AgentId, Any]]: ...
    def get_many(self, agent_ids: Iterable[AgentId]) -> dict[AgentId, Any]: ...
    def update(self, agent_id: AgentId, agent: Any) -> None: ...
    def compare_and_set(self, agent_id: AgentId, expected: Any, new: Any) -> bool: ...
    def pop(self, agent_id: AgentId, *default: Any) -> Any: ...
    def clear(self) -> None: ...
    def shard_sizes(self) -> list[int]: ...


class RegistryCoreClass(Protocol):
    def __call__(self, num_shards: int) -> RegistryCore: ...


@runtime_checkable
class SlotPoolCore(Protocol):
    """The slot pool behind ``SharedMemoryPool`` (``_native.SlotPoolCore``,
    ``memory._py.SlotPoolCore``)."""

    @property
    def closed(self) -> bool: ...
    def acquire(self, timeout: float | None = None) -> np.ndarray: ...
    def release(self, array: np.ndarray) -> None: ...
    def slot_of(self, array: np.ndarray) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class SlotPoolCoreClass(Protocol):
    # Keyword-only past the buffer's layout: the settings are named at every call.
    def __call__(
        self,
        dtype: np.dtype[Any],
        shape: tuple[int, ...],
        *,
        capacity: int,
        on_exhausted: str,
        max_capacity: int | None,
        shm_name: str | None,
    ) -> SlotPoolCore: ...


@runtime_checkable
class ModelStoreCore(Protocol):
    """The deduplicating store behind ``SharedModelStore`` (``_native.ModelStoreCore``,
    ``memory._py.ModelStoreCore``)."""

    def intern(self, data: np.ndarray, meta: bytes, header: bytes) -> tuple[np.ndarray, bool]: ...
    def key_of(self, root: np.ndarray) -> str | None: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class ModelStoreCoreClass(Protocol):
    def __call__(self, shm_name: str | None = None) -> ModelStoreCore: ...


@runtime_checkable
class AgentKernel(Protocol):
    """The single-factor kernel of ``AgentPopulation`` (``_native.AgentKernelCore``,
    ``agents._py.AgentKernel``): the three phases of pymdp's VANILLA agent for every row of the
    population's arrays, in place."""

    def run(
        self,
        beliefs: np.ndarray,
        q_pi: np.ndarray,
        G: np.ndarray,
        F: np.ndarray,
        actions: np.ndarray,
        timesteps: np.ndarray,
        /,
        *,
        observations: np.ndarray | None = None,
        key: int,
        first_row: int = 0,
        infer: bool = False,
        plan: bool = False,
        act: bool = False,
    ) -> None: ...


@runtime_checkable
class FactorKernel(AgentKernel, Protocol):
    """The kernel of factorized ``AgentPopulation``s (``_native.FactorKernelCore``,
    ``agents._py_factors.FactorKernel``): the same ``run``, with ``actions`` of shape (rows,
    factors)."""


class Cores(Protocol):
    """The core classes of one backend, by their names in ``_native``: the extension module itself
    (checked against this Protocol by mypy), or ``_backend``'s table of the pure-Python twins."""

    @property
    def WorkStealingCore(self) -> PoolCoreClass: ...
    @property
    def AgentRegistryCore(self) -> RegistryCoreClass: ...
    @property
    def SlotPoolCore(self) -> SlotPoolCoreClass: ...
    @property
    def ModelStoreCore(self) -> ModelStoreCoreClass: ...


if TYPE_CHECKING:
    from . import _native
    from .agents import _py as _py_agents
    from .agents import _py_factors

    # The kernels are built per backend rather than picked through ``Cores``: their constructors
    # take the model in the form each computes from (the Rust one its derived arrays, the numpy
    # one the model object). Their ``run`` is one contract, checked here for all four.
    def _kernels_keep_the_contract(
        single: _native.AgentKernelCore,
        factors: _native.FactorKernelCore,
        numpy_single: _py_agents.AgentKernel,
        numpy_factors: _py_factors.FactorKernel,
    ) -> tuple[AgentKernel, FactorKernel, AgentKernel, FactorKernel]:
        return single, factors, numpy_single, numpy_factors
