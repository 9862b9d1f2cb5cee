"""Translations between the engine's values and the 2025-11-25 wire types of the `mcp` SDK."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

from mcp.shared.experimental.tasks.helpers import RELATED_TASK_METADATA_KEY
from mcp.types import CallToolResult, ContentBlock, ErrorData, Task, TextContent
from pydantic import BaseModel, TypeAdapter

from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.results import ToolResult

INTERNAL_ERROR = -32603
_CONTENT = TypeAdapter(ContentBlock)


def related_task_meta(task_id: str) -> dict[str, Any]:
    return {RELATED_TASK_METADATA_KEY: {"taskId": task_id}}


def task_fields(record: TaskRecord) -> dict[str, Any]:
    """The `Task` fields of a record, as keyword arguments for any Task-shaped SDK model."""
    return {
        "taskId": record.task_id,
        "status": record.status.value,
        "statusMessage": record.status_message,
        "createdAt": record.created_at,
        "lastUpdatedAt": record.updated_at,
        "ttl": record.ttl_ms,
        "pollInterval": record.poll_interval_ms,
    }


def to_task(record: TaskRecord) -> Task:
    return Task(**task_fields(record))


def to_call_tool_result(value: Any) -> CallToolResult:
    """What `tools/call` answers for a tool's return value."""
    if isinstance(value, CallToolResult):
        return value
    if isinstance(value, ToolResult):
        text = value.text if value.text is not None else _json_text(value.structured)
        return CallToolResult(
            content=[TextContent(type="text", text=text)] if text is not None else [],
            structuredContent=value.structured,
            isError=value.is_error,
        )
    if value is None:
        return CallToolResult(content=[])
    if isinstance(value, str):
        return CallToolResult(content=[TextContent(type="text", text=value)])
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        mapping = cast(dict[Any, Any], value)
        structured: dict[str, Any] = {str(k): v for k, v in mapping.items()}
        return CallToolResult(
            content=[TextContent(type="text", text=_json_text(structured) or "")],
            structuredContent=structured,
        )
    if isinstance(value, list | tuple):
        try:
            items: list[Any] = list(value)  # pyright: ignore[reportUnknownArgumentType]
            return CallToolResult(content=[_CONTENT.validate_python(item) for item in items])
        except ValueError:
            pass
    return CallToolResult(content=[TextContent(type="text", text=_json_text(value) or "")])


def error_result(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], isError=True)


def error_data(error: dict[str, Any] | None, fallback: str) -> ErrorData:
    if error and isinstance(error.get("code"), int) and isinstance(error.get("message"), str):
        return ErrorData(code=error["code"], message=error["message"], data=error.get("data"))
    return ErrorData(code=INTERNAL_ERROR, message=fallback)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=str)
