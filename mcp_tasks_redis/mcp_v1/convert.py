"""Translations between the engine's values and the 2025-11-25 wire types of the `mcp` SDK 1.x."""

from __future__ import annotations

from typing import Any

from mcp.shared.experimental.tasks.helpers import RELATED_TASK_METADATA_KEY
from mcp.types import CallToolResult, ErrorData, Task

from mcp_tasks_redis.engine.outcome import INTERNAL_ERROR, error_result
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus


def related_task_meta(task_id: str) -> dict[str, Any]:
    return {RELATED_TASK_METADATA_KEY: {"taskId": task_id}}


def wire_status(record: TaskRecord) -> str:
    """The task's status on this wire: a tool result with ``isError: true`` makes it failed."""
    if record.status is TaskStatus.COMPLETED and record.is_error_result:
        return TaskStatus.FAILED.value
    return record.status.value


def task_fields(record: TaskRecord, poll_interval_ms: int) -> dict[str, Any]:
    """The `Task` fields of a record, as keyword arguments for any Task-shaped SDK model."""
    return {
        "taskId": record.task_id,
        "status": wire_status(record),
        "statusMessage": record.status_message,
        "createdAt": record.created_at,
        "lastUpdatedAt": record.updated_at,
        "ttl": record.ttl_ms,
        "pollInterval": poll_interval_ms,
    }


def to_task(record: TaskRecord, poll_interval_ms: int) -> Task:
    return Task(**task_fields(record, poll_interval_ms))


def call_tool_result(result: dict[str, Any]) -> CallToolResult:
    return CallToolResult.model_validate(result)


def tool_error(message: str) -> CallToolResult:
    return call_tool_result(error_result(message))


def error_data(error: dict[str, Any] | None, fallback: str) -> ErrorData:
    if error and isinstance(error.get("code"), int) and isinstance(error.get("message"), str):
        return ErrorData(code=error["code"], message=error["message"], data=error.get("data"))
    return ErrorData(code=INTERNAL_ERROR, message=fallback)
