"""The SEP-2663 wire: the extension's identifier, its methods' params and results as models.

The server validates incoming params with the ``*Params`` models; clients send the ``*Request``
models (each names ``taskId`` as its ``Mcp-Name`` header, as SEP-2663 requires over Streamable
HTTP) and read the ``*Result`` models. Spec text: modelcontextprotocol/ext-tasks,
``specification/draft/tasks.md`` and ``schema/draft/schema.ts``.
"""

from __future__ import annotations

from typing import Any, Literal

from mcp_types import NotificationParams, Request, RequestParams, Result
from pydantic import ConfigDict

EXTENSION_ID = "io.modelcontextprotocol/tasks"
TASKS_GET = "tasks/get"
TASKS_UPDATE = "tasks/update"
TASKS_CANCEL = "tasks/cancel"
TASKS_NOTIFICATION = "notifications/tasks"
TASK_METHODS = frozenset({TASKS_GET, TASKS_UPDATE, TASKS_CANCEL})
"""The methods whose ``Mcp-Name`` header must equal ``params.taskId``."""

TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]


# -- params (what the server validates) ------------------------------------------------------
class TaskIdParams(RequestParams):
    """``tasks/get`` and ``tasks/cancel``: ``{taskId}``."""

    task_id: str


class UpdateTaskParams(TaskIdParams):
    """``tasks/update``: ``{taskId, inputResponses}``, each response a JSON object."""

    input_responses: dict[str, dict[str, Any]]


# -- requests (what clients send) ------------------------------------------------------------
class GetTaskRequest(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class UpdateTaskRequest(Request[UpdateTaskParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateTaskParams
    name_param = "taskId"


class CancelTaskRequest(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


# -- results (what clients read) -------------------------------------------------------------
class _TaskFields(Result):
    model_config = ConfigDict(extra="allow")

    task_id: str
    status: TaskStatus
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class CreateTaskResult(_TaskFields):
    """A ``tools/call`` answered with a task handle (flat ``Result & Task``)."""

    result_type: Literal["task"] = "task"


class GetTaskResult(_TaskFields):
    """``tasks/get``: the task, with ``inputRequests``, ``result`` or ``error`` by status."""

    result_type: Literal["complete"] = "complete"
    input_requests: dict[str, dict[str, Any]] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskAck(Result):
    """The empty acknowledgement of ``tasks/update`` and ``tasks/cancel``."""

    result_type: Literal["complete"] = "complete"


class TaskNotificationParams(NotificationParams):
    """``notifications/tasks``: the full task, as ``tasks/get`` would answer it."""

    model_config = ConfigDict(extra="allow")

    task_id: str
    status: TaskStatus
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    input_requests: dict[str, dict[str, Any]] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
