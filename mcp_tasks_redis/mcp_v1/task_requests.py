"""`tasks/get`, `tasks/result`, `tasks/list` and `tasks/cancel` for the 2025-11-25 wire.

All four read and write Redis only, so any replica answers for any task. `tasks/result` blocks
until the task is terminal, delivering the task's input requests on its own stream while it
waits, and answers exactly what `tools/call` would have: the tool's `CallToolResult` (with
``isError: true`` for a failed tool) or the JSON-RPC error.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mcp.shared.exceptions import McpError
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CancelTaskRequest,
    CancelTaskResult,
    ErrorData,
    GetTaskPayloadRequest,
    GetTaskPayloadResult,
    GetTaskRequest,
    GetTaskResult,
    ListTasksRequest,
    ListTasksResult,
    ServerResult,
)

from mcp_tasks_redis.engine.errors import InvalidCursor, TaskIsTerminal, TaskNotFound
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.engine.tasks import now_ms
from mcp_tasks_redis.mcp_v1.convert import error_data, related_task_meta, task_fields, to_task, wire_status
from mcp_tasks_redis.mcp_v1.identity import list_scope
from mcp_tasks_redis.mcp_v1.state import ServerState

# How long a waiting tasks/result keeps waiting while Redis cannot be reached, before it answers
# the error (a restart or a failover takes seconds; a Redis that stays away is worth reporting).
REDIS_OUTAGE_TOLERANCE_S = 30.0


def register(state: ServerState) -> None:
    handlers = state.server.request_handlers

    async def get_task(request: GetTaskRequest) -> ServerResult:
        relay = state.relay
        with relay.reading(request.params.taskId):
            record = await state.task_for_caller(request.params.taskId)
            relay.follow(record, from_start=False)
        return ServerResult(GetTaskResult(**task_fields(record, state.poll_interval_ms)))

    async def get_result(request: GetTaskPayloadRequest) -> ServerResult:
        return ServerResult(await _task_result(state, request.params.taskId))

    async def list_tasks(request: ListTasksRequest) -> ServerResult:
        cursor = request.params.cursor if request.params is not None else None
        try:
            page = await state.engine.tasks.list(scope=list_scope(state.session()), cursor=cursor)
        except InvalidCursor as e:
            raise McpError(ErrorData(code=INVALID_PARAMS, message=str(e))) from None
        tasks = [to_task(r, state.poll_interval_ms) for r in page.tasks]
        return ServerResult(ListTasksResult(tasks=tasks, nextCursor=page.next_cursor))

    async def cancel_task(request: CancelTaskRequest) -> ServerResult:
        task_id = request.params.taskId
        record = await state.task_for_caller(task_id)
        message = "Cancelled by the client"
        try:
            if record.is_terminal:
                raise TaskIsTerminal(task_id, wire_status(record), "cancelled")
            await state.engine.tasks.cancel(task_id, message, tool=record.tool)
        except TaskIsTerminal as e:
            current = wire_status(record) if record.is_terminal else e.current
            raise McpError(
                ErrorData(
                    code=INVALID_PARAMS, message=f"Cannot cancel task: already in terminal status '{current}'"
                )
            ) from None
        except TaskNotFound:
            raise McpError(ErrorData(code=INVALID_PARAMS, message=f"Task not found: {task_id}")) from None
        cancelled = replace(
            record, status=TaskStatus.CANCELLED, stored_message=message, updated_at_ms=now_ms()
        )
        return ServerResult(CancelTaskResult(**task_fields(cancelled, state.poll_interval_ms)))

    handlers[GetTaskRequest] = get_task
    handlers[GetTaskPayloadRequest] = get_result
    handlers[ListTasksRequest] = list_tasks
    handlers[CancelTaskRequest] = cancel_task


async def _task_result(state: ServerState, task_id: str) -> GetTaskPayloadResult:
    ctx = state.server.request_context
    relay = state.relay
    first = True

    async def on_record(record: TaskRecord | None) -> None:
        nonlocal first
        if first:
            first = False
            record = state.check_access(task_id, record)
            relay.follow(record, from_start=False)
        # Input requests go out on this request's stream, once per session; a client that
        # reconnects and asks again gets the still-unanswered ones again. The reply comes back
        # through the session's router to the task.
        if record is not None and record.status is TaskStatus.INPUT_REQUIRED:
            await relay.deliver_inputs(record, related_request_id=ctx.request_id)

    with relay.reading(task_id):
        record = await state.engine.wait_until(
            task_id,
            lambda r: r is None or r.is_terminal,
            outage_tolerance=REDIS_OUTAGE_TOLERANCE_S,
            on_record=on_record,
        )
    if record is None:
        raise McpError(ErrorData(code=INVALID_PARAMS, message=f"Task not found: {task_id}"))
    return _payload(record)


def _payload(record: TaskRecord) -> GetTaskPayloadResult:
    meta = related_task_meta(record.task_id)
    if record.status is TaskStatus.CANCELLED:
        raise McpError(
            ErrorData(
                code=INTERNAL_ERROR, message=f"Task {record.task_id} was cancelled", data={"_meta": meta}
            )
        )
    if record.result is not None:
        result: dict[str, Any] = dict(record.result)
        result["_meta"] = {**(result.get("_meta") or {}), **meta}
        return GetTaskPayloadResult.model_validate(result)
    # A failed task with no tool result: the JSON-RPC error the plain call would have raised.
    error = error_data(record.error, record.status_message or "Task failed")
    raise McpError(
        ErrorData(
            code=error.code,
            message=error.message,
            data=error.data if error.data is not None else {"_meta": meta},
        )
    )
