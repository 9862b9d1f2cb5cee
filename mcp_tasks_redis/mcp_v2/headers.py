"""SEP-2663's routing header over Streamable HTTP: ``Mcp-Name`` must name ``params.taskId``.

The SDK already checks ``Mcp-Method`` on every request and ``Mcp-Name`` for ``tools/call``,
``prompts/get`` and ``resources/read`` (SEP-2243); this middleware adds the tasks methods. A
missing or different header is -32020 (HeaderMismatch, HTTP 400), as for the SDK's own checks.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import HEADER_MISMATCH
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request

from mcp_tasks_redis.mcp_v2.protocol import TASK_METHODS


class TaskRoutingHeaders:
    """A server middleware (``MCPServer(middleware=[...])``) checking ``Mcp-Name`` on tasks/*."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        request = ctx.request
        if (
            ctx.method in TASK_METHODS
            and ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
            and isinstance(request, Request)
        ):
            task_id = (ctx.params or {}).get("taskId")
            if (
                isinstance(task_id, str)
                and decode_header_value(request.headers.get(MCP_NAME_HEADER)) != task_id
            ):
                raise MCPError(
                    code=HEADER_MISMATCH,
                    message=f"{MCP_NAME_HEADER} header does not match the request body's 'taskId' parameter",
                )
        return await call_next(ctx)
