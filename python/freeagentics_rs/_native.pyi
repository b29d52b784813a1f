"""Type stubs and documentation of the compiled core (``rust/python/``). Users normally go
through the public classes in ``freeagentics_rs``; these are their Rust engines."""

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, final

import numpy as np
from typing_extensions import Self

from freeagentics_rs._contracts import Settleable

__all__ = [
    "__version__",
    "AgentKernelCore",
    "FactorKernelCore",
    "LearningKernelCore",
    "dirichlet_update_a",
    "dirichlet_update_b",
    "dirichlet_update_d",
    "SlotPoolCore",
    "ModelStoreCore",
    "WorkStealingCore",
    "FutureCondition",
    "PoolFutureWaiters",
    "DoneWaiters",
    "shutdown_all_pools",
    "forget_pools_after_fork",
    "available_parallelism",
    "AgentRegistryCore",
]

__version__: str

@final
class WorkStealingCore:
    """Work-stealing pool core of ``WorkStealingThreadPool`` and ``AdaptiveThreadPoolExecutor``:
    one LIFO deque per worker, a global FIFO injector, stealing from siblings, parked (not
    polling) when idle, resizable online. Worker threads attach to the interpreter once and
    detach while parked. The pure-Python twin is ``freeagentics_rs.executor._py.WorkStealingCore``,
    with the same methods."""

    def __new__(
        cls,
        max_workers: int,
        thread_name_prefix: str,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] | None = None,
        on_samples: Callable[[int, float, float, float, float, float, float], object] | None = None,
        sample_batch: int = 16,
        run_delay: Callable[[], float] | None = None,
    ) -> Self:
        """A pool of at most ``max_workers`` threads, started on demand: a submit that finds no
        idle worker starts one, as ``ThreadPoolExecutor`` does. Each thread is registered with
        ``threading`` as ``{thread_name_prefix}_{slot}`` and runs ``initializer(*initargs)``
        first. A failing initializer breaks the pool (``BrokenThreadPool``). With
        ``on_samples``, every job that runs is measured (thread CPU time and wall time while it
        runs, never queue wait) and each ``sample_batch`` jobs the worker that finished the last
        one calls ``on_samples(count, cpu, wall, first_end, last_end, first_cpu, delay)``: the
        batch's sums in seconds, when its first and last jobs ended on a busy clock that stops
        while no job runs, the first job's CPU time, and the threads' run delay. ``run_delay``
        (tests) replaces the scheduler's statistics: it returns the calling thread's total run
        delay so far, in seconds."""
    def submit(
        self, future: Settleable, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
    ) -> None:
        """Queues ``func(*args, **kwargs)`` to settle ``future``: on this worker's own deque when
        called from a worker (run newest first), else on the injector (started in submission
        order); starts a thread when none is idle and fewer than the target run. ``RuntimeError`` after shutdown,
        ``BrokenThreadPool`` once broken."""
    def submit_chunk(self, future: Future[Any], func: Callable[..., Any], items: list[Any], unpack: bool) -> None:
        """Queues one job that calls ``func`` on each item (``func(*item)`` when ``unpack``) and
        settles ``future`` with ``(results, error)``: results before the first failure, and it."""
    def _submit_panic(self, future: Future[Any], message: str) -> None:
        """Test hook: a job whose Rust code panics; ``future`` gets ``RustPanicError``."""
    def help_until_done(self, future: Future[Any], timeout: float | None = None) -> bool:
        """On a worker of this pool: runs queued jobs until ``future`` (anything with
        ``add_done_callback``, such as the helping event of a ``wait()`` waiter) is done or
        ``timeout`` passes, parking while none are queued, and returns True. Elsewhere: returns
        False."""
    def is_worker_thread(self) -> bool: ...
    def resize(self, workers: int) -> None:
        """Sets the worker count: new threads start at once (unlike the constructor's lazy
        start); surplus workers retire between
        jobs and hand their queued jobs to the others, so none is lost or run twice.
        Measurement restarts (jobs that started before are not counted). No effect after
        shutdown; ``ValueError`` for ``workers < 1``."""
    def set_sample_batch(self, sample_batch: int) -> None:
        """How many measured jobs make one ``on_samples`` batch."""
    @property
    def target_workers(self) -> int:
        """The worker count set by the constructor or the last ``resize``."""
    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stops admission. ``cancel_futures`` cancels queued jobs, otherwise they all run.
        ``wait`` joins the threads (not the calling one, if it is a worker, which first runs
        what is queued); Ctrl-C on the main thread interrupts the wait."""
    def stats(self) -> dict[str, int]:
        """``workers`` (threads alive now), ``target_workers``, ``submitted``, ``completed``,
        ``stolen``, ``queued``, ``panics``."""

@final
class FutureCondition:
    """The condition of ``WorkStealingThreadPool``'s futures on the Rust backend: a re-entrant
    lock with a condition's waiter queue, the subset of ``threading.Condition(threading.RLock())``
    that ``concurrent.futures`` uses, in one object that the cyclic GC does not track. Workers
    take it and settle the future from Rust. Waits release the interpreter and, on the main
    thread, run signal handlers every 50 ms (Ctrl-C ends them)."""

    def __new__(cls) -> Self: ...
    def acquire(self, blocking: object = True, timeout: float = -1.0) -> bool:
        """As ``RLock.acquire``: True once held (again, by the holder), False when ``blocking`` is
        false or ``timeout`` passed first; the same ``ValueError`` s for bad timeouts."""
    def release(self) -> None:
        """One level of the caller's hold; ``RuntimeError`` when the caller does not hold it."""
    def __enter__(self) -> bool: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def _is_owned(self) -> bool: ...
    def _has_waiters(self) -> bool:
        """Whether a thread is in ``wait()`` and not yet notified."""
    def wait(self, timeout: float | None = None) -> bool:
        """As ``threading.Condition.wait``: releases every level of the caller's hold, waits
        until notified (True) or ``timeout`` seconds pass (False; ``None`` waits forever), and
        takes the hold back. ``RuntimeError`` when the caller does not hold it."""
    def notify(self, n: int = 1) -> None:
        """Wakes up to ``n`` waiters, oldest first; ``RuntimeError`` when the caller does not hold it."""
    def notify_all(self) -> None: ...

@final
class PoolFutureWaiters:
    """The ``_waiters`` descriptor of the Rust backend's pool futures: the list that
    ``wait()``/``as_completed()`` install their waiters in (``future._waiter_list``), made on
    first use: a plain list, or ``executor._futures._helping_waiters(future, list)`` when first
    used from a pool worker. A done future without a list gets the shared ``DoneWaiters``."""

    def __new__(cls) -> Self: ...
    def __get__(self, future: object, owner: object = None, /) -> Any: ...

@final
class DoneWaiters:
    """The waiter list of a done pool future: ``append`` and ``remove`` do nothing (a done
    future never tells its waiters anything), and it is always empty. One shared instance."""

    def append(self, waiter: object) -> None: ...
    def remove(self, waiter: object) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...

@final
class AgentRegistryCore:
    """The Rust engine of ``AgentRegistry``: ``num_shards`` hash maps (a power of two from 2 to
    65536), each behind its own read-write lock, shards picked by a stable hash of the id (CRC-32
    of ``b"s" + utf-8`` or ``b"i"`` + the int's low 8 bytes little-endian, mixed by splitmix64).
    Ids: ``str``, or ints (numpy integers too, not bools) from ``-2**63`` to ``2**64 - 1``.
    Writers hold a shared lock that snapshots take exclusively, so ``ids``/``items``/``clear``/
    ``shard_sizes`` see one instant; snapshots list agents in registration order. Nothing removed
    or replaced is released while a lock is held. A failed allocation is a ``MemoryError`` and
    changes nothing. The Python twin is ``freeagentics_rs.registry._py.AgentRegistryCore``, with
    the same methods and messages."""

    def __new__(cls, num_shards: int) -> Self: ...
    @property
    def num_shards(self) -> int: ...
    def shard_of(self, agent_id: str | int) -> int: ...
    def register(self, agent_id: str | int, agent: Any) -> None: ...
    def set(self, agent_id: str | int, agent: Any) -> None:
        """Registers an agent or replaces the registered one in its place."""
    def setdefault(self, agent_id: str | int, default: Any = None) -> Any: ...
    def unregister(self, agent_id: str | int) -> Any: ...
    def get(self, agent_id: str | int, default: Any = None) -> Any: ...
    def __getitem__(self, agent_id: str | int, /) -> Any: ...
    def __contains__(self, agent_id: object, /) -> bool:
        """False for anything that cannot be an id."""
    def __len__(self) -> int: ...
    def ids(self) -> list[str | int]: ...
    def items(self) -> list[tuple[str | int, Any]]: ...
    def get_many(self, agent_ids: Any) -> dict[str | int, Any]: ...
    def update(self, agent_id: str | int, agent: Any) -> None: ...
    def compare_and_set(self, agent_id: str | int, expected: Any, new: Any) -> bool: ...
    def pop(self, agent_id: str | int, *default: Any) -> Any: ...
    def clear(self) -> None: ...
    def shard_sizes(self) -> list[int]: ...

@final
class SlotPoolCore:
    """Engine of ``SharedMemoryPool``: fixed-size slots in 64-byte aligned Rust-owned slabs (or
    POSIX shared-memory segments ``{shm_name}-c{k}``). A slot is handed out as one array whose
    base is the slot's owner: every view collapses to it, and the slot's memory comes back
    when it dies. The pure-Python twin is ``freeagentics_rs.memory._py.SlotPoolCore``."""

    def __new__(
        cls,
        dtype: np.dtype[Any],
        shape: tuple[int, ...],
        *,
        capacity: int,
        on_exhausted: str,
        max_capacity: int | None,
        shm_name: str | None,
    ) -> Self: ...
    @property
    def slot_bytes(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def acquire(self, timeout: float | None = None) -> np.ndarray:
        """A zero-filled slot; waits detached from the interpreter, checking signals."""
    def release(self, array: np.ndarray) -> None:
        """Stops the slot counting as in use; its memory is retained until its last array
        dies. Makes ``array`` and the slot's array read-only."""
    def slot_of(self, array: np.ndarray) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...

@final
class ModelStoreCore:
    """Engine of ``SharedModelStore``: one copy of each distinct (meta, bytes), freed with its
    last array; in shared memory, entry ``key`` is the segment ``{shm_name}-{key}`` (header,
    then the data at a 64-byte aligned offset). The pure-Python twin is
    ``freeagentics_rs.memory._py.ModelStoreCore``."""

    def __new__(cls, shm_name: str | None = None) -> Self: ...
    def intern(self, data: np.ndarray, meta: bytes, header: bytes) -> tuple[np.ndarray, bool]:
        """``(root, hit)``: a read-only uint8 array over the held copy of ``data``'s bytes."""
    def key_of(self, root: np.ndarray) -> str | None: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...

@final
class AgentKernelCore:
    """Rust kernel of ``freeagentics_rs.agents.AgentPopulation``: pymdp's VANILLA agent for
    every row of the population's arrays at once, on a rayon pool of ``num_threads`` threads
    (one pool per size, rebuilt after fork), detached from the interpreter. The numpy twin is
    ``freeagentics_rs.agents._py.AgentKernel``."""

    def __new__(
        cls,
        derived: dict[str, np.ndarray],
        policy_len: int,
        gamma: float,
        alpha: float,
        *,
        deterministic: bool,
        use_utility: bool,
        use_states_info_gain: bool,
        info_threshold: float,
        log_e: np.ndarray,
        num_threads: int,
    ) -> Self: ...
    @property
    def num_policies(self) -> int: ...
    def run(
        self,
        beliefs: np.ndarray,
        q_pi: np.ndarray,
        g: np.ndarray,
        f: np.ndarray,
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
    ) -> None:
        """State inference (``infer``, needs ``observations``), policy inference (``plan``)
        and action selection (``act``) for every row, in place; ``first_row`` is the index of
        the first row in the whole population (its random stream)."""

@final
class FactorKernelCore:
    """Rust kernel of factorized ``AgentPopulation``s (several hidden-state factors, explicit
    policies or ``sampling_mode="full"``): pymdp 0.0.7.1's VANILLA agent with
    ``run_vanilla_fpi`` per row, rayon over rows, detached from the interpreter. Built from the
    model's float64 arrays as pymdp gives them: ``a[m]`` (observations, *num_states), ``b[f]``
    (states, states, controls), ``c[m]``, ``d[f]`` and ``e`` (one prior per policy); what
    depends only on the model is prepared once. The numpy twin is
    ``freeagentics_rs.agents._py_factors.FactorKernel``. Allocation failures raise
    ``MemoryError``."""

    def __new__(
        cls,
        a: list[np.ndarray],
        b: list[np.ndarray],
        c: list[np.ndarray],
        d: list[np.ndarray],
        e: np.ndarray,
        *,
        policies: np.ndarray,
        gamma: float,
        alpha: float,
        deterministic: bool,
        full_sampling: bool,
        use_utility: bool,
        use_states_info_gain: bool,
        num_iter: int,
        df: float,
        df_tol: float,
        num_threads: int,
    ) -> Self: ...
    @property
    def num_policies(self) -> int: ...
    def run(
        self,
        beliefs: np.ndarray,
        q_pi: np.ndarray,
        g: np.ndarray,
        f: np.ndarray,
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
    ) -> None:
        """The three phases for every row, in place (as ``AgentKernelCore.run``); ``actions``
        is (rows, factors)."""

@final
class LearningKernelCore:
    """Rust kernel of ``AgentPopulation``s whose agents learn: a ``FactorKernelCore`` of the
    population's shared model (the normalized priors), each agent stepping with its own learned
    A[m], B[f], D[f] (the normalized expectations of its Dirichlet parameters) refreshed into a
    per-thread copy of the prepared model; with ``param_info_gain``, pymdp 0.0.7.1's pA and pB
    information gain in G. The numpy twin is
    ``freeagentics_rs.agents._learning_kernel.LearningKernel``. Rayon over agents, detached."""

    def __new__(
        cls,
        factor_kernel: FactorKernelCore,
        learned_a: list[int],
        learned_b: list[int],
        learned_d: list[int],
        log_c: list[np.ndarray],
        shared_utility: np.ndarray,
        *,
        param_info_gain: bool,
        wa_shared: list[np.ndarray | None] | None,
        wb_shared: list[np.ndarray | None] | None,
        policies: np.ndarray,
        gamma: float,
        num_threads: int,
    ) -> Self: ...
    def run(
        self,
        beliefs: np.ndarray,
        q_pi: np.ndarray,
        g: np.ndarray,
        f: np.ndarray,
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
        pa: list[np.ndarray],
        pb: list[np.ndarray],
        pd: list[np.ndarray],
    ) -> None:
        """The phases selected for every row, in place; ``pa``, ``pb``, ``pd``: the rows of the
        learned arrays, in the order of ``learned_a``, ``learned_b``, ``learned_d``."""
    def step_learning(
        self,
        beliefs: np.ndarray,
        q_pi: np.ndarray,
        g: np.ndarray,
        f: np.ndarray,
        actions: np.ndarray,
        timesteps: np.ndarray,
        /,
        *,
        observations: np.ndarray,
        key: int,
        first_row: int,
        pa: list[np.ndarray],
        pb: list[np.ndarray],
        pd: list[np.ndarray],
        lr_pa: float,
        lr_pb: float,
    ) -> None:
        """A learning step of every row in one pass (pymdp's order per agent): infer states,
        update_A and update_B of the agent's own arrays (written in place), infer policies with
        them, act."""

def dirichlet_update_a(
    pa: np.ndarray,
    num_obs: int,
    num_states: list[int],
    observations: np.ndarray,
    modality: int,
    beliefs: np.ndarray,
    lr: float,
    num_threads: int,
) -> None:
    """pymdp 0.0.7.1's ``update_obs_likelihood_dirichlet`` for modality ``modality`` of every
    agent, in place: ``pa`` (agents, num_obs, *num_states) gains ``lr`` times each agent's joint
    posterior (from ``beliefs``, (agents, sum of num_states)) on the observed row
    (``observations`` (agents, modalities) int64), where positive. Rayon over agents, detached."""

def dirichlet_update_b(
    pb: np.ndarray,
    num_controls: int,
    num_states: list[int],
    factor: int,
    actions: np.ndarray,
    qs: np.ndarray,
    qs_prev: np.ndarray,
    lr: float,
    num_threads: int,
) -> None:
    """pymdp's ``update_state_likelihood_dirichlet`` for factor ``factor``, in place: ``pb``
    (agents, n, n, num_controls) gains ``lr`` times qs (x) qs_prev on the slice of each agent's
    action (``actions`` (agents, factors) int64; -1: no action yet, left), where positive."""

def dirichlet_update_d(
    pd: np.ndarray, num_states: list[int], factor: int, qs_t0: np.ndarray, lr: float, num_threads: int
) -> None:
    """pymdp's ``update_state_prior_dirichlet`` for factor ``factor``, in place: ``pd`` (agents,
    n) gains ``lr`` times ``qs_t0``'s marginal of the factor, where positive."""

def shutdown_all_pools() -> None:
    """Shuts down every Rust pool of this process and waits for its threads (interpreter exit);
    Ctrl-C on the main thread ends the wait with ``KeyboardInterrupt``."""

def forget_pools_after_fork() -> None:
    """In a forked child: drops the parent's pools, whose threads do not exist there."""

def available_parallelism() -> int:
    """CPUs this process may use (affinity and cgroup quota), as Rust's std reports it."""
