"""Workers for the 2025 wire: each job runs its tool inside the SDK's `task_execution`.

`task_execution(task_id, store)` is the SDK's documented path for distributed workers: an
exception in the tool marks the task failed with its message. On top of it this module resolves
the tool from the shared registry, injects the tool's helpers, and writes the outcome in one
atomic step (a result with ``isError`` makes the task failed on this wire).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

from mcp.shared.experimental.tasks.helpers import task_execution
from mcp.types import Task

from mcp_tasks_redis.engine.connection import LeaseLost
from mcp_tasks_redis.engine.context import RequestInfo, ToolContext
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable, TaskIsTerminal
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.engine.registry import Services, ToolRegistry, ToolSpec
from mcp_tasks_redis.engine.runtime.execution import RunningTask, TaskRunner
from mcp_tasks_redis.engine.runtime.worker import TaskWorker
from mcp_tasks_redis.engine.tasks import to_json
from mcp_tasks_redis.mcp_v1.convert import INTERNAL_ERROR, to_call_tool_result, to_task
from mcp_tasks_redis.mcp_v1.inbox import input_request
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

log = logging.getLogger("mcp_tasks_redis.worker")


class _ClaimedTaskStore(RedisTaskStore):
    """The store a worker runs a task through: writes fenced by the worker's lease, and the first
    read of the task (the SDK's `task_execution` starts with one) answered by the record the claim
    just returned, one round trip less between pickup and the tool starting."""

    def __init__(self, engine: TaskEngine, claimed: TaskRecord, worker_id: str) -> None:
        super().__init__(engine, fence=worker_id)
        self._claimed: TaskRecord | None = claimed

    async def get_task(self, task_id: str) -> Task | None:
        claimed, self._claimed = self._claimed, None
        if claimed is not None and claimed.task_id == task_id:
            return to_task(claimed)
        return await super().get_task(task_id)


def make_runner(
    registry: ToolRegistry, *, max_result_bytes: int | None = None, progress_min_interval: float = 0.1
) -> TaskRunner:
    """The adapter's half of a worker: how one task's tool is run and its outcome recorded."""

    async def run(task: RunningTask) -> None:
        record, engine = task.record, task.engine
        spec = registry.get(record.tool or "")
        if spec is None:
            known = ", ".join(registry.names()) or "none"
            message = f"Unknown tool {record.tool!r}: this worker serves {known}"
            await _finish(
                engine,
                task,
                status=TaskStatus.FAILED,
                message=message,
                error={"code": INTERNAL_ERROR, "message": message},
            )
            return
        request = RequestInfo(
            task_id=record.task_id,
            owner=record.owner,
            session=record.session,
            progress_token=record.progress_token,
            attempt=record.attempt,
            tool=spec.name,
        )
        context = ToolContext.create(task.backend, request, task.cancel, min_interval=progress_min_interval)
        # Fenced by this worker's lease: when a tool raises, the SDK marks the task failed through
        # this store, and a worker that lost its lease must not fail a task now running elsewhere.
        store = _ClaimedTaskStore(engine, task.record, task.worker_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                await _run_tool(task, spec, context, store, max_result_bytes)
            except (LeaseLost, TaskIsTerminal) as e:
                # The task was taken over by another worker, or finished (cancelled) meanwhile: this
                # run's outcome, and the SDK's marking of its failure, are dropped.
                log.info(
                    "task %s: outcome of this run dropped (%s)",
                    record.task_id,
                    e,
                    extra={"task_id": record.task_id},
                )

    return run


async def _run_tool(
    task: RunningTask,
    spec: ToolSpec,
    context: ToolContext,
    store: RedisTaskStore,
    max_result_bytes: int | None,
) -> None:
    record, engine = task.record, task.engine
    async with task_execution(record.task_id, store):
        value = await spec.invoke(record.arguments or {}, Services.from_context(context))
        result = to_call_tool_result(value)
        if not result.isError:
            await context.progress.finish()
        payload: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        # Measured as the task stores it (compact JSON, UTF-8), so the limit is the stored size.
        size = len(to_json(payload, "Tool result").encode())
        if max_result_bytes is not None and size > max_result_bytes:
            raise ValueError(f"Tool result is {size} bytes, over the limit of {max_result_bytes} bytes")
        text = next((c.text for c in result.content if c.type == "text"), None)
        await _finish(
            engine,
            task,
            status=TaskStatus.FAILED if result.isError else TaskStatus.COMPLETED,
            message=(text or "Tool reported an error") if result.isError else "Completed",
            result=payload,
        )


async def _finish(
    engine: TaskEngine,
    task: RunningTask,
    *,
    status: TaskStatus,
    message: str,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Write the outcome, fenced by the lease. While Redis is out of reach the write is retried for
    as long as the lease can outlive the outage (the guard keeps renewing it); after that another
    worker re-runs the task, so giving up loses nothing."""
    task_id = task.record.task_id
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + engine.limits.lease_ms / 1000
    while True:
        try:
            await engine.tasks.update(
                task_id, status=status, message=message, result=result, error=error, fence=task.worker_id
            )
            return
        except TaskIsTerminal:
            # A cancel landed first: it wins, and this outcome is dropped (DESIGN decision 1). (Or
            # an earlier try of this very write landed and only its reply was lost.)
            log.info("task %s finished after it was %s; outcome dropped", task_id, "terminal")
            return
        except LeaseLost:
            # Another worker took the task over while this one was cut off: the outcome is its to write.
            log.info("task %s finished after its lease was lost; outcome dropped", task_id)
            return
        except RedisUnavailable as e:
            if loop.time() >= give_up_at:
                raise
            log.warning(
                "task %s: outcome not written yet (%s); retrying", task_id, e, extra={"task_id": task_id}
            )
            await asyncio.sleep(0.2)


def build_worker(
    engine: TaskEngine,
    registry: ToolRegistry,
    *,
    concurrency: int = 10,
    max_result_bytes: int | None = None,
    progress_min_interval: float = 0.1,
    **options: Any,
) -> TaskWorker:
    return TaskWorker(
        engine,
        make_runner(registry, max_result_bytes=max_result_bytes, progress_min_interval=progress_min_interval),
        concurrency=concurrency,
        input_request=input_request,
        **options,
    )
