"""OptimizedThreadPoolManager, AgentTask, TaskResult: FreeAgentics' agent manager API on this
package's executors and registry (the same Python code drives both backends)."""

from ._manager import AgentTask, OptimizedThreadPoolManager, TaskResult

__all__ = ["AgentTask", "OptimizedThreadPoolManager", "TaskResult"]
