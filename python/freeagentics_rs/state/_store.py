"""AgentStateStore: durable per-agent state on SQLite (stdlib ``sqlite3``, WAL mode), with
versions, checksums and async variants that never block the event loop."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, ParamSpec, TypeVar

import numpy as np

from .. import _backend, _validate
from ..errors import StateCorruptedError
from ..executor import WorkStealingThreadPool
from ._codec import decode, encode

_P = ParamSpec("_P")
_T = TypeVar("_T")

__all__ = ["AgentStateStore", "StateHistory", "StateVersion"]

MAX_KEEP_VERSIONS = 1 << 62

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_states (
    agent TEXT NOT NULL,
    version INTEGER NOT NULL,
    saved_at REAL NOT NULL,
    checksum INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (agent, version)
)
"""


class _ThreadConnection:
    """A thread's connection, closed when the thread ends (its thread-local storage goes)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __del__(self) -> None:
        self.conn.close()


class StateVersion(NamedTuple):
    version: int
    saved_at: float
    state: dict[str, Any]


def _key(agent_id: object) -> str:
    if isinstance(agent_id, str):
        return "s:" + agent_id
    if isinstance(agent_id, (int, np.integer)) and not isinstance(agent_id, (bool, np.bool_)):
        return f"i:{int(agent_id)}"
    raise TypeError(f"agent_id: must be a str or an int, not {type(agent_id).__name__}")


def _agent_id(key: object) -> str | int | None:
    """The agent id a key of this store stands for; ``None`` for a key it did not write."""
    if isinstance(key, str):
        if key.startswith("s:"):
            return key[2:]
        if key.startswith("i:"):
            try:
                number = int(key[2:])
            except ValueError:
                return None
            return number if f"i:{number}" == key else None
    return None


class StateHistory(list[StateVersion]):
    """``history()``'s result: the intact versions (``StateVersion``), newest first, and in
    ``corrupted`` a ``StateCorruptedError`` for each kept version that failed its checks."""

    def __init__(self, intact: list[StateVersion], corrupted: list[StateCorruptedError]) -> None:
        super().__init__(intact)
        self.corrupted = corrupted


class AgentStateStore:
    """Durable agent states in one SQLite file (WAL mode: a crash, even SIGKILL mid-write, leaves
    every agent at its previous or its new version). Keeps the last ``keep_versions`` versions of
    each agent, each with a CRC-32 checksum. Safe from many threads (a connection per thread).
    ``*_async`` variants run on the store's own worker threads."""

    def __init__(self, path: str | os.PathLike[str], *, keep_versions: int = 3, backend: str | None = None) -> None:
        # Versions are SQLite integers (64 bits): a larger count could never be reached.
        keep_versions = _validate.integer(keep_versions, "keep_versions", minimum=1, maximum=MAX_KEEP_VERSIONS)
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"path: must be a str or an os.PathLike, not {type(path).__name__}")
        self.path = os.fsdecode(path)
        if "\0" in self.path:
            raise ValueError(f"path: must not contain a NUL character, got {self.path!r}")
        if self.path == ":memory:" or not self.path:
            raise ValueError("path must name a file (an in-memory database is not durable)")
        self.keep_versions = keep_versions
        # The record format is one codec (_codec) on both backends; the backend picks the
        # executor that runs the async variants.
        self.backend = _backend.resolve(backend)
        self._local = threading.local()
        self._connections: weakref.WeakSet[_ThreadConnection] = weakref.WeakSet()
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._executor: WorkStealingThreadPool | None = None
        with self._conn() as conn:
            conn.execute(_SCHEMA)

    # -- connections ------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("the state store is closed")
        if self._pid != os.getpid():
            # A forked child must not use the parent's connections (SQLite forbids it).
            self._pid, self._local, self._connections = os.getpid(), threading.local(), weakref.WeakSet()
        holder = getattr(self._local, "conn", None)
        if holder is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: atomic and crash-safe commits
            holder = self._local.conn = _ThreadConnection(conn)
            with self._lock:
                self._connections.add(holder)
        return holder.conn

    # -- writing ----------------------------------------------------------------------------
    def save(self, agent_id: str | int, state: dict[str, Any]) -> int:
        """Saves a new version of an agent's state; returns its version number."""
        _key(agent_id)  # named before it is used as a dict key (a list is unhashable)
        return self.save_many({agent_id: state})[agent_id]

    def save_many(self, states: dict[Any, dict[str, Any]]) -> dict[Any, int]:
        """Saves several agents' states in one transaction; returns their version numbers."""
        if not isinstance(states, Mapping):
            raise TypeError(f"states: must be a dict (agent_id -> state), not {type(states).__name__}")
        records = [(_key(agent_id), agent_id, encode(state)) for agent_id, state in states.items()]
        conn = self._conn()
        now = time.time()
        versions = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for key, agent_id, data in records:
                (latest,) = conn.execute(
                    # A version some other writer stored as text or real is not a version of ours.
                    "SELECT COALESCE(MAX(version), 0) FROM agent_states "
                    "WHERE agent = ? AND typeof(version) = 'integer'",
                    (key,),
                ).fetchone()
                version = latest + 1
                conn.execute(
                    "INSERT INTO agent_states VALUES (?, ?, ?, ?, ?)", (key, version, now, zlib.crc32(data), data)
                )
                conn.execute(
                    "DELETE FROM agent_states WHERE agent = ? AND version <= ?", (key, version - self.keep_versions)
                )
                versions[agent_id] = version
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error matters more
            raise
        return versions

    def delete(self, agent_id: str | int) -> None:
        """Deletes every version of an agent's state; ``KeyError`` if it has none."""
        cursor = self._conn().execute("DELETE FROM agent_states WHERE agent = ?", (_key(agent_id),))
        if cursor.rowcount == 0:
            raise KeyError(f"agent {agent_id!r} has no saved state")

    # -- reading ----------------------------------------------------------------------------
    def _rows(self, agent_id: str | int) -> list[tuple[int, float, int, bytes]]:
        rows = (
            self._conn()
            .execute(
                "SELECT version, saved_at, checksum, data FROM agent_states WHERE agent = ? ORDER BY version DESC",
                (_key(agent_id),),
            )
            .fetchall()
        )
        if not rows:
            raise KeyError(f"agent {agent_id!r} has no saved state")
        return rows

    @staticmethod
    def _decode(agent_id: object, version: int, checksum: int, data: bytes) -> dict[str, Any]:
        # Rows another writer put there may hold any SQLite type in any column.
        if not isinstance(data, bytes):
            raise StateCorruptedError(agent_id, version, f"its data is a {type(data).__name__}, not a BLOB")
        if type(checksum) is not int or zlib.crc32(data) != checksum:
            raise StateCorruptedError(agent_id, version)
        try:
            return decode(data)
        except ValueError as exc:
            raise StateCorruptedError(agent_id, version, str(exc)) from None

    def load(self, agent_id: str | int, *, fallback: bool = False) -> dict[str, Any]:
        """The newest state of an agent. A corrupted record raises ``StateCorruptedError``; with
        ``fallback=True`` the newest intact version is returned instead (the error is raised only
        if none is intact). ``KeyError`` if the agent has no saved state."""
        rows = self._rows(agent_id)
        first_error: StateCorruptedError | None = None
        for version, _, checksum, data in rows:
            try:
                return self._decode(agent_id, version, checksum, data)
            except StateCorruptedError as exc:
                if not fallback:
                    raise
                first_error = first_error or exc
        assert first_error is not None
        raise first_error

    def history(self, agent_id: str | int) -> StateHistory:
        """The intact kept versions of an agent's state, newest first (a list of
        ``StateVersion``); its ``corrupted`` attribute lists a ``StateCorruptedError`` for each
        kept version that is not intact (newest first). ``KeyError`` if the agent has none."""
        intact, corrupted = [], []
        for version, saved_at, checksum, data in self._rows(agent_id):
            try:
                if isinstance(saved_at, bool) or not isinstance(saved_at, (int, float)):
                    raise StateCorruptedError(agent_id, version, f"its time is a {type(saved_at).__name__}")
                intact.append(StateVersion(version, saved_at, self._decode(agent_id, version, checksum, data)))
            except StateCorruptedError as exc:
                corrupted.append(exc)
        return StateHistory(intact, corrupted)

    def ids(self) -> list[str | int]:
        """Every agent with a saved state (keys this store did not write are skipped)."""
        rows = self._conn().execute("SELECT DISTINCT agent FROM agent_states ORDER BY agent").fetchall()
        return [agent_id for (key,) in rows if (agent_id := _agent_id(key)) is not None]

    def __contains__(self, agent_id: object) -> bool:
        try:
            _key(agent_id)
        except TypeError:
            return False  # as a dict answers for a key of another type
        row = self._conn().execute("SELECT 1 FROM agent_states WHERE agent = ? LIMIT 1", (_key(agent_id),)).fetchone()
        return row is not None

    # -- async ------------------------------------------------------------------------------
    async def _off_loop(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self._lock:
            if self._closed:  # refused before anything is created
                raise RuntimeError("the state store is closed")
            if self._executor is None:
                self._executor = WorkStealingThreadPool(2, "AgentStateStore", backend=self.backend)
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(fn, *args, **kwargs))

    async def save_async(self, agent_id: str | int, state: dict[str, Any]) -> int:
        return await self._off_loop(self.save, agent_id, state)

    async def save_many_async(self, states: dict[Any, dict[str, Any]]) -> dict[Any, int]:
        return await self._off_loop(self.save_many, states)

    async def load_async(self, agent_id: str | int, *, fallback: bool = False) -> dict[str, Any]:
        return await self._off_loop(self.load, agent_id, fallback=fallback)

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Closes every connection; using the store afterwards is a ``RuntimeError``."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
            holders = list(self._connections)
        if executor is not None:
            executor.shutdown(wait=True)
        for holder in holders:
            holder.conn.close()

    def __enter__(self) -> AgentStateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AgentStateStore {self.path!r} keep_versions={self.keep_versions}>"
