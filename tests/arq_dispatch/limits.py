"""The limits of the arq tests' engines and workers (in-process and worker processes alike)."""

from mcp_tasks_redis.engine.limits import TaskLimits

LIMITS = TaskLimits(recheck_ms=200, max_attempts=3)
"""Quick re-reads of a waited-on task, and three runs of a task in all."""
