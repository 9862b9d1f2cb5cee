"""Workers on the 2025 wire run each task inside the SDK's `task_execution` context manager.

`task_execution(task_id, store)` is the SDK 1.x's documented path for distributed workers. The
engine's runner already turns whatever the tool returns or raises into the task's outcome, so the
context manager only sees a failure of the runner itself, which it records through a store fenced
by the worker's run. Its first read of the task is answered from the delivery: no round trip.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import AsyncGenerator
from typing import Any

from mcp.shared.experimental.tasks.helpers import task_execution
from mcp.types import Task

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.engine.runtime.execution import AroundRun
from mcp_tasks_redis.engine.streams import Delivery
from mcp_tasks_redis.mcp_v1.convert import to_task
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore


class _DeliveredTaskStore(RedisTaskStore):
    """The store a task runs through on a worker: writes fenced by the run, and the first read
    of the task served from the delivery the worker just received."""

    def __init__(self, engine: TaskEngine, delivery: Delivery) -> None:
        super().__init__(engine, fence=delivery.run)
        self._delivered: Delivery | None = delivery

    async def get_task(self, task_id: str) -> Task | None:
        delivered, self._delivered = self._delivered, None
        if delivered is not None and delivered.task_id == task_id:
            record = TaskRecord(
                task_id=task_id,
                status=TaskStatus.WORKING,
                created_at_ms=delivered.created_ms,
                updated_at_ms=delivered.created_ms,
                ttl_ms=delivered.ttl_ms,
            )
            return to_task(record, self.engine.limits.poll_interval_ms)
        return await super().get_task(task_id)


def task_execution_around(engine: TaskEngine) -> AroundRun:
    """The worker's wrapper around each run on this wire."""

    @contextlib.asynccontextmanager
    async def around(delivery: Delivery) -> AsyncGenerator[Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with task_execution(delivery.task_id, _DeliveredTaskStore(engine, delivery)) as ctx:
                yield ctx

    return around
