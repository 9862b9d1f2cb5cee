"""Running one claimed task: the tool in a cancel scope, beside a guard that renews the lease and
stops the tool as soon as the task is cancelled (pub/sub) or at worst one poll interval later.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from mcp_tasks_redis.engine.context import CancellationToken
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.runtime.backend import RedisTaskBackend

log = logging.getLogger("mcp_tasks_redis.worker")


@dataclass
class RunningTask:
    """Everything a wire adapter needs to run one task on a worker."""

    record: TaskRecord
    engine: TaskEngine
    worker_id: str
    cancel: CancellationToken
    backend: RedisTaskBackend


# The adapter's part: run the tool of ``task.record`` and write its outcome to the task.
TaskRunner = Callable[[RunningTask], Awaitable[None]]


async def execute(task: RunningTask, runner: TaskRunner) -> None:
    """Run ``runner`` until it returns, or until the task is cancelled / the lease is lost."""
    async with anyio.create_task_group() as tg:
        tool_scope = anyio.CancelScope()
        tg.start_soon(_guard, task, tool_scope)
        with tool_scope:
            await runner(task)
        tg.cancel_scope.cancel()


async def _guard(task: RunningTask, tool_scope: anyio.CancelScope) -> None:
    """Renew the lease every poll interval; cancel the tool when the task stops being ours."""
    engine, task_id = task.engine, task.record.task_id
    poll = engine.limits.poll_interval_ms / 1000
    heartbeat_every = min(poll, engine.limits.lease_ms / 3000)
    async with engine.events.watch(engine.keys.channel(task_id)) as watch:
        # Subscribed: read the task once at once (the first heartbeat), so that a cancel landing
        # between the claim and this subscription stops the tool now, not a heartbeat later.
        next_beat = anyio.current_time()
        while True:
            event = await watch.next(max(0.0, next_beat - anyio.current_time()))
            if (
                event is not None
                and event.get("type") == "status"
                and event.get("status")
                in (
                    "completed",
                    "failed",
                    "cancelled",
                )
            ):
                reason = f"task {event['status']}"
            else:
                if anyio.current_time() < next_beat:
                    continue
                next_beat = anyio.current_time() + heartbeat_every
                try:
                    status = await engine.leases.heartbeat(task_id, task.worker_id)
                except RedisUnavailable as e:
                    # Keep running: the lease outlives short outages; the next beat retries.
                    log.warning("heartbeat failed for task %s: %s", task_id, e)
                    continue
                if status in ("working", "input_required"):
                    continue
                reason = "lease lost to another worker" if status == "lost" else f"task {status}"
            # A completion or failure is usually this worker's own write landing first; only a
            # cancel or a lost lease means the tool is being stopped from outside.
            level = logging.DEBUG if reason in ("task completed", "task failed") else logging.INFO
            log.log(level, "stopping task %s: %s", task_id, reason, extra={"task_id": task_id})
            task.cancel.cancel(reason)
            tool_scope.cancel()
            return
