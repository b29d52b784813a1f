"""The one exception hierarchy of freeagentics_rs, shared by the Rust and Python backends.

Both backends raise exactly these classes with the same messages; the Rust extension imports
them from here (``rust/python/errors.rs``).
"""

from concurrent.futures.thread import BrokenThreadPool

__all__ = ["FreeAgenticsError", "BrokenThreadPool", "RustPanicError"]


class FreeAgenticsError(Exception):
    """Base class of the errors this package defines itself."""


class RustPanicError(FreeAgenticsError, RuntimeError):
    """A bug in the Rust core panicked while running a job; the job's future carries it and the
    worker thread lives on."""
