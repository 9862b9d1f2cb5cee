"""`tasks/get`, `tasks/result`, `tasks/list` and `tasks/cancel` for the 2025-11-25 wire.

All four read and write Redis only, so any replica answers for any task. `tasks/result` blocks
until the task is terminal, delivering the task's queued input requests on its own stream while
it waits, and answers exactly the tool's `CallToolResult` or the JSON-RPC error of a failed task.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mcp.shared.exceptions import McpError
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp.types import (
    INVALID_PARAMS,
    CancelTaskRequest,
    CancelTaskResult,
    ErrorData,
    GetTaskPayloadRequest,
    GetTaskPayloadResult,
    GetTaskRequest,
    GetTaskResult,
    JSONRPCMessage,
    ListTasksRequest,
    ListTasksResult,
    ServerResult,
)

from mcp_tasks_redis.engine.errors import InvalidCursor, RedisUnavailable, TaskIsTerminal
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.mcp_v1.convert import error_data, related_task_meta, task_fields, to_task
from mcp_tasks_redis.mcp_v1.identity import list_scope
from mcp_tasks_redis.mcp_v1.state import ServerState

# How long a waiting tasks/result keeps waiting while Redis cannot be reached, before it answers
# the error (a restart or a failover takes seconds; a Redis that stays away is worth reporting).
REDIS_OUTAGE_TOLERANCE_S = 30.0


def register(state: ServerState) -> None:
    handlers = state.server.request_handlers

    async def get_task(request: GetTaskRequest) -> ServerResult:
        record = await state.task_for_caller(request.params.taskId)
        state.relay.follow(state.session(), record, from_start=False)
        return ServerResult(GetTaskResult(**task_fields(record)))

    async def get_result(request: GetTaskPayloadRequest) -> ServerResult:
        return ServerResult(await _task_result(state, request.params.taskId))

    async def list_tasks(request: ListTasksRequest) -> ServerResult:
        cursor = request.params.cursor if request.params is not None else None
        try:
            page = await state.engine.tasks.list(scope=list_scope(state.session()), cursor=cursor)
        except InvalidCursor as e:
            raise McpError(ErrorData(code=INVALID_PARAMS, message=str(e))) from None
        return ServerResult(
            ListTasksResult(tasks=[to_task(r) for r in page.tasks], nextCursor=page.next_cursor)
        )

    async def cancel_task(request: CancelTaskRequest) -> ServerResult:
        task_id = request.params.taskId
        record = await state.task_for_caller(task_id)
        try:
            if record.is_terminal:
                raise TaskIsTerminal(task_id, record.status.value, "cancelled")
            record = await state.engine.tasks.cancel(task_id, "Cancelled by the client")
        except TaskIsTerminal as e:
            raise McpError(
                ErrorData(
                    code=INVALID_PARAMS,
                    message=f"Cannot cancel task: already in terminal status '{e.current}'",
                )
            ) from None
        return ServerResult(CancelTaskResult(**task_fields(record)))

    handlers[GetTaskRequest] = get_task
    handlers[GetTaskPayloadRequest] = get_result
    handlers[ListTasksRequest] = list_tasks
    handlers[CancelTaskRequest] = cancel_task


async def _task_result(state: ServerState, task_id: str) -> GetTaskPayloadResult:
    record = await state.task_for_caller(task_id)
    ctx = state.server.request_context
    session = state.session()
    state.relay.follow(session, record, from_start=False)
    engine = state.engine
    poll = engine.limits.poll_interval_ms / 1000
    loop = asyncio.get_running_loop()
    unreachable_since: float | None = None
    sent: set[object] = set()

    async def deliver(message: dict[str, Any]) -> None:
        # Input requests go out on this request's stream, once per tasks/result call; a client
        # that reconnects and asks again gets the still-unanswered ones again. The reply comes
        # back through the session's router to the task's reply slot.
        if message.get("id") in sent:
            return
        sent.add(message.get("id"))
        await session.send_message(
            SessionMessage(
                message=JSONRPCMessage.model_validate(message),
                metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
            )
        )

    async with engine.events.watch(engine.keys.channel(task_id)) as watch:
        while True:
            try:
                # Input requests live on the task itself (not in the inbox list that the SDK's
                # own task helpers use with RedisTaskMessageQueue), so one read tells all.
                current = await engine.tasks.get(task_id)
                if current is not None and current.status is TaskStatus.INPUT_REQUIRED:
                    for request in (await engine.inputs.pending(task_id)).values():
                        await deliver(request)
            except RedisUnavailable:
                # A client blocked on the result rides out a Redis restart or failover: the task
                # and its result are in Redis, not in this process. A long outage is an error.
                unreachable_since = unreachable_since if unreachable_since is not None else loop.time()
                if loop.time() - unreachable_since >= REDIS_OUTAGE_TOLERANCE_S:
                    raise
                await asyncio.sleep(poll)
                continue
            unreachable_since = None
            if current is None:
                raise McpError(ErrorData(code=INVALID_PARAMS, message=f"Task not found: {task_id}"))
            if current.is_terminal:
                return _payload(current)
            await watch.next(poll)
            watch.drain()


def _payload(record: TaskRecord) -> GetTaskPayloadResult:
    meta = related_task_meta(record.task_id)
    if record.status is TaskStatus.CANCELLED:
        raise McpError(
            ErrorData(code=-32603, message=f"Task {record.task_id} was cancelled", data={"_meta": meta})
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
