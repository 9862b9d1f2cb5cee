"""The engine's task records as the SEP-2663 wire shows them.

On this wire a tool result with ``isError: true`` is ``completed`` (exactly how the engine stores
it) and ``failed`` carries the JSON-RPC error. ``inputRequests`` list only the kinds of request
the asking client declared it can answer (the MRTR rule).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mcp_types import ClientCapabilities

from mcp_tasks_redis.engine.outcome import INTERNAL_ERROR
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus

# The kind of client capability each input request needs.
INPUT_KINDS = {
    "elicitation/create": "elicitation",
    "sampling/createMessage": "sampling",
    "roots/list": "roots",
}


def input_kinds(capabilities: ClientCapabilities | None) -> list[str]:
    """The kinds of input request a client declared it can answer."""
    if capabilities is None:
        return []
    return [kind for kind in ("elicitation", "sampling", "roots") if getattr(capabilities, kind) is not None]


def declares_tasks(capabilities: ClientCapabilities | None, extension_id: str) -> bool:
    return capabilities is not None and extension_id in (capabilities.extensions or {})


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_fields(record: TaskRecord, poll_interval_ms: int) -> dict[str, Any]:
    """The ``Task`` fields every task-shaped result carries."""
    fields: dict[str, Any] = {
        "taskId": record.task_id,
        "status": record.status.value,
        "createdAt": iso(record.created_at),
        "lastUpdatedAt": iso(record.updated_at),
        "ttlMs": record.ttl_ms,
        "pollIntervalMs": poll_interval_ms,
    }
    message = record.status_message
    if message is not None:
        fields["statusMessage"] = message
    return fields


def create_task_result(record: TaskRecord, poll_interval_ms: int) -> dict[str, Any]:
    """The flat ``CreateTaskResult`` of a new task."""
    return {"resultType": "task", **task_fields(record, poll_interval_ms)}


def detailed_task(record: TaskRecord, poll_interval_ms: int, kinds: list[str] | None) -> dict[str, Any]:
    """The ``DetailedTask`` of a record (``tasks/get``, ``notifications/tasks``); ``kinds`` are the
    input kinds the reader declared (None: show every input request)."""
    task = task_fields(record, poll_interval_ms)
    if record.status is TaskStatus.INPUT_REQUIRED:
        task["inputRequests"] = {
            key: request
            for key, request in record.input_requests.items()
            if kinds is None or INPUT_KINDS.get(str(request.get("method")), "") in kinds
        }
    elif record.status is TaskStatus.COMPLETED:
        task["result"] = record.result if record.result is not None else {"content": []}
    elif record.status is TaskStatus.FAILED:
        task["error"] = failure(record)
    return task


def failure(record: TaskRecord) -> dict[str, Any]:
    """The JSON-RPC error of a failed task (one the engine failed itself may store none)."""
    error = record.error
    if error and isinstance(error.get("code"), int) and isinstance(error.get("message"), str):
        return error
    return {"code": INTERNAL_ERROR, "message": record.status_message or "Task failed"}
