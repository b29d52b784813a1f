"""How a Rust pool's worker thread appears to ``threading``: a ``Thread`` named
``{thread_name_prefix}_{slot}``, registered for the thread's lifetime, so that
``threading.current_thread()``, ``threading.enumerate()`` and logging's ``%(threadName)s`` name
it as they name ``ThreadPoolExecutor``'s threads (not as a ``Dummy-N`` thread)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

__all__ = ["WorkerThread"]


class WorkerThread(threading.Thread):
    """The calling thread (started by Rust, not by ``start()``) registered under ``name``.
    Created and unregistered by the pool on that thread; ``join()`` waits until it leaves."""

    if TYPE_CHECKING:  # Thread's private state, left out of typeshed
        _started: threading.Event
        _ident: int | None
        _is_stopped: bool

        def _set_ident(self) -> None: ...
        def _set_native_id(self) -> None: ...

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=False)
        self._left = threading.Event()
        self._started.set()
        self._set_ident()
        if hasattr(self, "_set_native_id"):
            self._set_native_id()
        with threading._active_limbo_lock:  # type: ignore[attr-defined]
            threading._active[self._ident] = self  # type: ignore[attr-defined]

    def unregister(self) -> None:
        with threading._active_limbo_lock:  # type: ignore[attr-defined]
            if threading._active.get(self._ident) is self:  # type: ignore[attr-defined]
                del threading._active[self._ident]  # type: ignore[attr-defined]
        self._is_stopped = True
        self._left.set()

    def is_alive(self) -> bool:
        return not self._left.is_set()

    def join(self, timeout: float | None = None) -> None:
        if threading.get_ident() == self._ident:
            raise RuntimeError("cannot join current thread")
        self._left.wait(timeout)
