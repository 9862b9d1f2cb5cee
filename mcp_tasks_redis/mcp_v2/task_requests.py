"""``tasks/get``, ``tasks/update`` and ``tasks/cancel``: SEP-2663's methods, served from Redis.

Each first requires the calling request to declare the extension (else -32021), then finds the
task for the caller: an unknown id and another owner's id both answer -32602, and nothing is
written for either. ``tasks/get`` is a pure read; ``tasks/update`` hands each answer to the
worker waiting for it through Redis (unknown and already answered keys are ignored);
``tasks/cancel`` is an acknowledgement, also for a task that already finished. ``tasks/result``
and ``tasks/list`` do not exist on this wire: -32601. A handshake-era client (2025-11-25) gets
that wire's ``tasks/get``, ``tasks/cancel`` and ``tasks/result`` instead (legacy.py).
"""

from __future__ import annotations

import contextlib
from typing import Any

from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.extension import MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_tasks_redis.engine.errors import TaskError, TaskIsTerminal, TaskNotFound
from mcp_tasks_redis.engine.tasks import to_json
from mcp_tasks_redis.mcp_v2 import legacy
from mcp_tasks_redis.mcp_v2.convert import detailed_task, input_kinds
from mcp_tasks_redis.mcp_v2.protocol import (
    EXTENSION_ID,
    TASKS_CANCEL,
    TASKS_GET,
    TASKS_UPDATE,
    TaskIdParams,
    UpdateTaskParams,
)
from mcp_tasks_redis.mcp_v2.state import TasksState, invalid_params, reporting_redis_outages

ACK: dict[str, Any] = {"resultType": "complete"}
MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
LEGACY = frozenset({legacy.LEGACY_VERSION})
TASKS_RESULT = "tasks/result"


def bindings(state: TasksState) -> list[MethodBinding]:
    @reporting_redis_outages
    async def get_task(ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        if ctx.protocol_version in LEGACY:
            return await legacy.get_task(state, ctx, params.task_id)
        require_client_extension(ctx, EXTENSION_ID)
        record = await state.task_for_caller(params.task_id)
        kinds = input_kinds(ctx.session.client_capabilities)
        return {**ACK, **detailed_task(record, state.poll_interval_ms, kinds)}

    @reporting_redis_outages
    async def update_task(ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> HandlerResult:
        require_client_extension(ctx, EXTENSION_ID)
        record = await state.task_for_caller(params.task_id)
        responses = params.input_responses
        if not responses or record.is_terminal:
            return dict(ACK)
        try:
            size = len(to_json(responses, "Input responses").encode())
        except TaskError as e:
            raise invalid_params(str(e)) from None
        if size > state.max_argument_bytes:
            raise invalid_params(
                f"inputResponses are {size} bytes, over the limit of {state.max_argument_bytes}"
            )
        # Stored as a JSON-RPC response would carry it; the engine ignores keys that are not
        # outstanding, and the task goes back to working once none remain.
        try:
            await state.engine.tasks.answer(
                params.task_id, {key: {"result": value} for key, value in responses.items()}
            )
        except TaskNotFound:
            raise invalid_params(f"Failed to retrieve task: Task not found ({params.task_id})") from None
        return dict(ACK)

    @reporting_redis_outages
    async def cancel_task(ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        if ctx.protocol_version in LEGACY:
            return await legacy.cancel_task(state, await state.task_for_caller(params.task_id))
        require_client_extension(ctx, EXTENSION_ID)
        record = await state.task_for_caller(params.task_id)
        # A task that finished (or expired) meanwhile keeps its end: cancellation is a request.
        if not record.is_terminal:
            with contextlib.suppress(TaskIsTerminal, TaskNotFound):
                await state.engine.tasks.cancel(params.task_id, "Cancelled by the client", tool=record.tool)
        return dict(ACK)

    @reporting_redis_outages
    async def task_result(ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        return await legacy.task_result(state, await state.task_for_caller(params.task_id), ctx)

    return [
        MethodBinding(TASKS_GET, TaskIdParams, get_task, protocol_versions=MODERN | LEGACY),
        MethodBinding(TASKS_UPDATE, UpdateTaskParams, update_task, protocol_versions=MODERN),
        MethodBinding(TASKS_CANCEL, TaskIdParams, cancel_task, protocol_versions=MODERN | LEGACY),
        MethodBinding(TASKS_RESULT, TaskIdParams, task_result, protocol_versions=LEGACY),
    ]
