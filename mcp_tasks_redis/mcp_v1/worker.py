"""Workers for the 2025 wire: each job runs its tool inside the SDK's `task_execution`.

`task_execution(task_id, store)` is the SDK's documented path for distributed workers: an
exception in the tool marks the task failed with its message. On top of it this module resolves
the tool from the shared registry, injects the tool's helpers, and writes the outcome in one
atomic step (a result with ``isError`` makes the task failed on this wire).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from mcp.shared.experimental.tasks.helpers import task_execution

from mcp_tasks_redis.engine.context import RequestInfo, ToolContext
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import TaskIsTerminal
from mcp_tasks_redis.engine.record import TaskStatus
from mcp_tasks_redis.engine.registry import Services, ToolRegistry
from mcp_tasks_redis.engine.runtime.execution import RunningTask, TaskRunner
from mcp_tasks_redis.engine.runtime.worker import TaskWorker
from mcp_tasks_redis.mcp_v1.convert import INTERNAL_ERROR, to_call_tool_result
from mcp_tasks_redis.mcp_v1.inbox import queued_input_request
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

log = logging.getLogger("mcp_tasks_redis.worker")


def make_runner(registry: ToolRegistry, *, max_result_bytes: int | None = None,
                progress_min_interval: float = 0.1) -> TaskRunner:
    """The adapter's half of a worker: how one task's tool is run and its outcome recorded."""

    async def run(task: RunningTask) -> None:
        record, engine = task.record, task.engine
        spec = registry.get(record.tool or "")
        if spec is None:
            known = ", ".join(registry.names()) or "none"
            message = f"Unknown tool {record.tool!r}: this worker serves {known}"
            await _finish(engine, task, status=TaskStatus.FAILED, message=message,
                          error={"code": INTERNAL_ERROR, "message": message})
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
        store = RedisTaskStore(engine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with task_execution(record.task_id, store):
                value = await spec.invoke(record.arguments or {}, Services.from_context(context))
                result = to_call_tool_result(value)
                if not result.isError:
                    await context.progress.finish()
                payload: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
                size = len(str(payload).encode())
                if max_result_bytes is not None and size > max_result_bytes:
                    raise ValueError(f"Tool result is {size} bytes, over the limit of {max_result_bytes} bytes")
                text = next((c.text for c in result.content if c.type == "text"), None)
                await _finish(
                    engine, task,
                    status=TaskStatus.FAILED if result.isError else TaskStatus.COMPLETED,
                    message=(text or "Tool reported an error") if result.isError else "Completed",
                    result=payload,
                )

    return run


async def _finish(engine: TaskEngine, task: RunningTask, *, status: TaskStatus, message: str,
                  result: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
    try:
        await engine.tasks.update(task.record.task_id, status=status, message=message, result=result,
                                  error=error, fence=task.worker_id)
    except TaskIsTerminal:
        # A cancel landed first: it wins, and this outcome is dropped (DESIGN decision 1).
        log.info("task %s finished after it was %s; outcome dropped", task.record.task_id, "terminal")


def build_worker(engine: TaskEngine, registry: ToolRegistry, *, concurrency: int = 10,
                 max_result_bytes: int | None = None, **options: Any) -> TaskWorker:
    return TaskWorker(
        engine,
        make_runner(registry, max_result_bytes=max_result_bytes),
        concurrency=concurrency,
        inbox_message=queued_input_request,
        **options,
    )
