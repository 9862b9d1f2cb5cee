"""`build_server`: an `mcp` 1.x low-level `Server` whose task-augmented tool calls run on workers.

It serves the tools of one `ToolRegistry` on the 2025-11-25 wire with our own handlers on the
SDK's public extension points (request handlers, response routers), none of the SDK's
in-process task machinery: any replica built this way over the same Redis is interchangeable.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.lowlevel import Server
from mcp.shared.exceptions import McpError
from mcp.types import INTERNAL_ERROR, ErrorData

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.mcp_v1 import task_requests, tools
from mcp_tasks_redis.mcp_v1.relay import session_relay
from mcp_tasks_redis.mcp_v1.state import ServerState, SessionState


def build_server(
    registry: ToolRegistry,
    engine: TaskEngine,
    *,
    max_argument_bytes: int = 1_000_000,
    progress_min_interval: float = 0.1,
) -> Server[Any, Any]:
    @asynccontextmanager
    async def lifespan(_: Server[Any, Any]) -> AsyncGenerator[SessionState]:
        # The low-level server enters its lifespan once per session (stdio, each HTTP session):
        # what lives here lives exactly as long as the session.
        async with session_relay(engine, engine.limits.poll_interval_ms) as relay:
            yield SessionState(relay)

    server: Server[Any, Any] = Server(
        registry.name, version=registry.version, instructions=registry.instructions, lifespan=lifespan
    )
    state = ServerState(
        engine,
        registry,
        server,
        max_argument_bytes=max_argument_bytes,
        progress_min_interval=progress_min_interval,
    )
    tools.register(state)
    task_requests.register(state)
    for kind, handler in list(server.request_handlers.items()):
        server.request_handlers[kind] = _reporting_redis_outages(handler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # Touching `experimental` makes the server advertise the tasks capability for the
        # handlers registered above; enable_tasks is deliberately not called.
        _ = server.experimental  # pyright: ignore[reportDeprecated]
    return server


def _reporting_redis_outages(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """Redis out of reach is a JSON-RPC internal error (-32603) that says so; left to the SDK, any
    other exception is answered with code 0, which JSON-RPC does not define."""

    async def handle(request: Any) -> Any:
        try:
            return await handler(request)
        except RedisUnavailable as e:
            raise McpError(ErrorData(code=INTERNAL_ERROR, message=str(e))) from None

    return handle
