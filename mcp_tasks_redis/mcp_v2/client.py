"""The client half of SEP-2663 on the 2.x SDK: declare the extension, follow and finish tasks.

    async with Client(url, extensions=[TasksClientExtension(on_input=answer)]) as client:
        result = await client.call_tool("long_report", {"seconds": 30})  # a task, transparently

`TasksClientExtension` declares ``io.modelcontextprotocol/tasks`` on every request and claims the
``resultType: "task"`` answer of ``tools/call``: it polls ``tasks/get`` (at the task's
``pollIntervalMs``) until the task ends, answers input requests through ``on_input`` with
``tasks/update``, and returns the tool's result (or raises its JSON-RPC error). For direct
control, call ``client.session.call_tool(..., allow_claimed=True)`` and use `get_task`,
`update_task`, `cancel_task` and `wait_task`. ``on_notification`` receives ``notifications/tasks``
from a ``subscriptions/listen`` stream opened with `listen_request`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
from mcp.client.extension import ClaimContext, ClientExtension, NotificationBinding, ResultClaim
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    CallToolResult,
    SubscriptionFilter,
    SubscriptionsListenRequest,
    SubscriptionsListenRequestParams,
)

from mcp_tasks_redis.mcp_v2.protocol import (
    EXTENSION_ID,
    TASKS_NOTIFICATION,
    CancelTaskRequest,
    CreateTaskResult,
    GetTaskRequest,
    GetTaskResult,
    TaskAck,
    TaskIdParams,
    TaskNotificationParams,
    UpdateTaskParams,
    UpdateTaskRequest,
)

TERMINAL = frozenset({"completed", "failed", "cancelled"})
DEFAULT_POLL_S = 0.5

InputHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""Answers one input request ``(key, {"method", "params"})`` with the client's response."""


class TaskCancelledError(MCPError):
    """The task ended ``cancelled``: it has no result."""


async def get_task(session: ClientSession, task_id: str) -> GetTaskResult:
    return await session.send_request(GetTaskRequest(params=TaskIdParams(task_id=task_id)), GetTaskResult)


async def update_task(
    session: ClientSession, task_id: str, responses: Mapping[str, Mapping[str, Any]]
) -> None:
    params = UpdateTaskParams(task_id=task_id, input_responses={k: dict(v) for k, v in responses.items()})
    await session.send_request(UpdateTaskRequest(params=params), TaskAck)


async def cancel_task(session: ClientSession, task_id: str) -> None:
    await session.send_request(CancelTaskRequest(params=TaskIdParams(task_id=task_id)), TaskAck)


async def wait_task(
    session: ClientSession,
    task_id: str,
    *,
    on_input: InputHandler | None = None,
    poll_interval_s: float | None = None,
) -> GetTaskResult:
    """Poll ``tasks/get`` until the task ends; each input request is answered once, by key."""
    answered: set[str] = set()
    while True:
        task = await get_task(session, task_id)
        if task.status in TERMINAL:
            return task
        if task.status == "input_required" and on_input is not None:
            responses: dict[str, dict[str, Any]] = {}
            for key, request in (task.input_requests or {}).items():
                if key not in answered:
                    answered.add(key)
                    responses[key] = await on_input(key, request)
            if responses:
                await update_task(session, task_id, responses)
                continue
        interval = poll_interval_s
        if interval is None:
            interval = task.poll_interval_ms / 1000 if task.poll_interval_ms else DEFAULT_POLL_S
        await anyio.sleep(interval)


def task_outcome(task: GetTaskResult) -> CallToolResult:
    """What the ``tools/call`` would have answered: the result, or its JSON-RPC error raised."""
    if task.status == "completed":
        return CallToolResult.model_validate(task.result or {"content": []}, by_name=False)
    if task.status == "failed":
        error = task.error or {}
        raise MCPError(
            code=int(error.get("code", INTERNAL_ERROR)),
            message=str(error.get("message") or task.status_message or "Task failed"),
            data=error.get("data"),
        )
    if task.status == "cancelled":
        raise TaskCancelledError(code=INTERNAL_ERROR, message=f"Task {task.task_id} was cancelled")
    raise ValueError(f"Task {task.task_id} has not ended ({task.status})")


def listen_request(task_ids: Sequence[str]) -> SubscriptionsListenRequest:
    """A ``subscriptions/listen`` request for ``notifications/tasks`` of these tasks; its result
    arrives when the server ends the stream (here: once every task has ended)."""
    notifications = SubscriptionFilter.model_validate({"taskIds": list(task_ids)})
    return SubscriptionsListenRequest(params=SubscriptionsListenRequestParams(notifications=notifications))


class TasksClientExtension(ClientExtension):
    identifier = EXTENSION_ID

    def __init__(
        self,
        *,
        on_input: InputHandler | None = None,
        on_notification: Callable[[TaskNotificationParams], Awaitable[None]] | None = None,
        poll_interval_s: float | None = None,
    ) -> None:
        self.on_input = on_input
        self.on_notification = on_notification
        self.poll_interval_s = poll_interval_s

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=self._resolve)]

    def notifications(self) -> Sequence[NotificationBinding[Any]]:
        if self.on_notification is None:
            return ()
        return [
            NotificationBinding(
                method=TASKS_NOTIFICATION, params_type=TaskNotificationParams, handler=self.on_notification
            )
        ]

    async def _resolve(self, created: CreateTaskResult, ctx: ClaimContext) -> CallToolResult:
        task = await wait_task(
            ctx.session, created.task_id, on_input=self.on_input, poll_interval_s=self.poll_interval_s
        )
        return task_outcome(task)
