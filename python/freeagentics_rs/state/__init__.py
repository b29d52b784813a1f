"""Durable agent state: ``AgentStateStore`` (SQLite, WAL, versions, checksums, no pickle)."""

from ._store import AgentStateStore, StateHistory, StateVersion

__all__ = ["AgentStateStore", "StateHistory", "StateVersion"]
