"""`ToolResult`: what a tool returns when it wants to say more than a plain value.

Tools may return anything JSON-friendly (a string, a dict, a pydantic model, a list); a
`ToolResult` lets a tool give both a human text and structured content, or flag an error
result, without importing the MCP SDK. The wire adapter turns it into its own result type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToolResult:
    text: str | None = None
    structured: dict[str, Any] | None = None
    is_error: bool = False
