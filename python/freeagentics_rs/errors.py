"""The one exception hierarchy of freeagentics_rs, shared by the Rust and Python backends.

Both backends raise exactly these classes with the same messages; the Rust extension imports
them from here (``rust/python/errors.rs``).
"""

from concurrent.futures.thread import BrokenThreadPool

__all__ = [
    "AgentNotRegisteredError",
    "BrokenThreadPool",
    "FreeAgenticsError",
    "ManagerShutdownError",
    "PoolExhaustedError",
    "RustPanicError",
    "ShardsLostError",
    "StateCorruptedError",
]


class FreeAgenticsError(Exception):
    """Base class of the errors this package defines itself."""


class RustPanicError(FreeAgenticsError, RuntimeError):
    """A bug in the Rust core panicked while running a job; the job's future carries it and the
    worker thread lives on."""


class AgentNotRegisteredError(FreeAgenticsError, KeyError, ValueError):
    """A task was submitted for an agent id the manager does not know. A ``KeyError``, and also a
    ``ValueError`` as FreeAgentics' manager raised, so code written for either catches it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ManagerShutdownError(FreeAgenticsError, RuntimeError, ValueError):
    """A task was submitted to an ``OptimizedThreadPoolManager`` after ``shutdown()``. A
    ``RuntimeError``, and also the ``ValueError`` FreeAgentics' manager raised then."""


class StateCorruptedError(FreeAgenticsError):
    """A stored agent state failed its checksum or could not be decoded."""

    def __init__(self, agent_id: object, version: int, reason: str = "checksum mismatch") -> None:
        super().__init__(f"state of agent {agent_id!r}, version {version}, is corrupted: {reason}")
        self.agent_id, self.version = agent_id, version


class PoolExhaustedError(FreeAgenticsError):
    """A ``SharedMemoryPool`` had no free slot: at once with ``on_exhausted="raise"``, after the
    timeout with ``"block"``, or at ``max_capacity`` with ``"grow"``."""


class ShardsLostError(FreeAgenticsError, RuntimeError):
    """Shards of a ``DistributedPopulation`` were lost with their worker. They have been rebuilt
    on surviving workers from the last checkpoint; ``shards`` names them, ``step`` is the step
    of that checkpoint, and the step that failed returned nothing."""

    def __init__(self, shards: list[int], step: int) -> None:
        super().__init__(
            f"shards {shards} were lost with their worker; rebuilt from the checkpoint of step {step}, "
            "so those agents are back at that step (this step returned no actions)"
        )
        self.shards, self.step = shards, step
