"""What a tool's run comes to, in the one shape both MCP wires share.

A tool returns a plain value (a string, a dict, a pydantic model, a `ToolResult`, a list of
content blocks) or raises. Both wires answer a tool call with the same JSON: a CallToolResult
(``content``, ``structuredContent``, ``isError``), or a JSON-RPC error. This module turns a run into
that JSON without importing the `mcp` SDK, so workers need not know which wire the server speaks;
each adapter only decides what the outcome means for the task's status on its wire.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel

from mcp_tasks_redis.engine.results import ToolResult

INTERNAL_ERROR = -32603
REQUEST_TIMEOUT = -32001  # the code the MCP SDKs use for a request that timed out
CONTENT_TYPES = frozenset({"text", "image", "audio", "resource", "resource_link"})


class ProtocolError(Exception):
    """Raised by a tool to answer its call with a JSON-RPC error instead of a result.

    The task then fails on both wires with that error (``tasks/get`` inlines it on SEP-2663;
    ``tasks/result`` answers it on 2025-11-25). Any other exception is a tool error: a result with
    ``isError: true`` carrying the exception's message, as a plain call would answer.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass(frozen=True)
class Outcome:
    """A finished run: a CallToolResult (``result``) or a JSON-RPC error (``error``)."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def is_error(self) -> bool:
        return self.error is not None or (self.result is not None and self.result.get("isError") is True)

    @property
    def message(self) -> str:
        """The status message of the finished task."""
        if self.error is not None:
            return str(self.error.get("message") or "Failed")
        if self.is_error:
            return first_text(self.result) or "Tool reported an error"
        return "Completed"

    @classmethod
    def of_error(cls, code: int, message: str, data: Any = None) -> Outcome:
        return cls(error=ProtocolError(code, message, data).to_json())

    @classmethod
    def tool_error(cls, message: str) -> Outcome:
        return cls(result=error_result(message))


def error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def first_text(result: dict[str, Any] | None) -> str | None:
    blocks: list[Any] = (result or {}).get("content") or []
    for block in blocks:
        if isinstance(block, dict) and cast(dict[str, Any], block).get("type") == "text":
            return str(cast(dict[str, Any], block).get("text"))
    return None


def from_exception(exc: BaseException) -> Outcome:
    """A tool's exception as the outcome a plain call would have had."""
    if isinstance(exc, ProtocolError):
        return Outcome(error=exc.to_json())
    # The mcp SDK's McpError (either major) carries an ErrorData: a JSON-RPC error by intent.
    data: Any = getattr(exc, "error", None)
    code, message = getattr(data, "code", None), getattr(data, "message", None)
    if isinstance(code, int) and isinstance(message, str):
        return Outcome.of_error(code, message, getattr(data, "data", None))
    return Outcome.tool_error(str(exc) or type(exc).__name__)


def to_result(value: Any) -> dict[str, Any]:
    """A tool's return value as CallToolResult JSON."""
    if isinstance(value, ToolResult):
        text = value.text if value.text is not None else _json_text(value.structured)
        result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
        if value.text is None and value.structured is None:
            result["content"] = []
        if value.structured is not None:
            result["structuredContent"] = value.structured
        if value.is_error:
            result["isError"] = True
        return result
    if value is None:
        return {"content": []}
    if isinstance(value, str):
        return {"content": [{"type": "text", "text": value}]}
    if isinstance(value, BaseModel):
        if type(value).__name__ == "CallToolResult":  # the SDK's own result type, either major
            return value.model_dump(mode="json", by_alias=True, exclude_none=True)
        value = value.model_dump(mode="json", by_alias=True)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        structured = {str(k): v for k, v in cast(dict[Any, Any], value).items()}
        return {
            "content": [{"type": "text", "text": _json_text(structured)}],
            "structuredContent": structured,
        }
    if isinstance(value, list | tuple):
        blocks = [_content_block(item) for item in cast(list[Any], value)]
        if all(block is not None for block in blocks):
            return {"content": blocks}
    return {"content": [{"type": "text", "text": _json_text(value)}]}


def _content_block(item: Any) -> dict[str, Any] | None:
    if isinstance(item, BaseModel):
        item = item.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(item, dict) and cast(dict[str, Any], item).get("type") in CONTENT_TYPES:
        return cast(dict[str, Any], item)
    return None


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
