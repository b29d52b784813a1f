"""Durable agent state: ``AgentStateStore`` (SQLite, WAL, versions, checksums, no pickle)."""

from ._store import AgentStateStore, StateVersion

__all__ = ["AgentStateStore", "StateVersion"]
