"""freeagentics_rs: fast, correct scheduling for multi-agent Python systems.

A Rust core (PyO3) with a pure-Python fallback for every component; ``BACKEND`` says which one
``FREEAGENTICS_RS_BACKEND`` (auto | rust | python) chose, and every constructor takes
``backend=`` to override it per object.
"""

from importlib import metadata as _metadata

from ._backend import BACKEND, BACKENDS
from ._cpus import available_cpus
from .aio import AgentOperationResult, AsyncAgentManager, EventBus, EventLoopThread
from .errors import (
    AgentNotRegisteredError,
    BrokenThreadPool,
    FreeAgenticsError,
    ManagerShutdownError,
    PoolExhaustedError,
    RustPanicError,
    ShardsLostError,
    StateCorruptedError,
)
from .executor import AdaptiveThreadPoolExecutor, ResizeEvent, WorkStealingThreadPool
from .manager import AgentTask, OptimizedThreadPoolManager, TaskResult
from .memory import SharedMemoryPool, SharedModelStore
from .profiler import ExecutorProfile, InstrumentedLock, ThreadingProfiler, ThreadingReport
from .registry import AgentRegistry, LockFreeAgentRegistry
from .state import AgentStateStore, StateVersion

# The version lives in Cargo.toml alone; maturin writes it into the package metadata.
try:
    __version__ = _metadata.version("freeagentics_rs")
except _metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

__all__ = [
    "AdaptiveThreadPoolExecutor",
    "AgentNotRegisteredError",
    "AgentOperationResult",
    "AgentRegistry",
    "AgentStateStore",
    "AgentTask",
    "AsyncAgentManager",
    "BACKEND",
    "BACKENDS",
    "BrokenThreadPool",
    "EventBus",
    "EventLoopThread",
    "ExecutorProfile",
    "FreeAgenticsError",
    "InstrumentedLock",
    "LockFreeAgentRegistry",
    "ManagerShutdownError",
    "OptimizedThreadPoolManager",
    "PoolExhaustedError",
    "ResizeEvent",
    "RustPanicError",
    "ShardsLostError",
    "SharedMemoryPool",
    "SharedModelStore",
    "StateCorruptedError",
    "StateVersion",
    "TaskResult",
    "ThreadingProfiler",
    "ThreadingReport",
    "WorkStealingThreadPool",
    "__version__",
    "available_cpus",
]
