"""Hosting the SEP-2663 server over stdio or Streamable HTTP, from `Settings`.

The entry points ``mcp-tasks-redis serve`` (and the compose file) start on ``mcp`` 2.x, with the
same signatures as the 1.x host. Over HTTP, MCP answers at exactly ``path`` (no redirect),
``/health`` reports whether Redis answers and ``/metrics`` serves the process's metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.routing import Mount

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.http_routes import serve_app, service_routes
from mcp_tasks_redis.mcp_v2.server import build_server
from mcp_tasks_redis.settings import Settings


def server_from(
    registry: ToolRegistry,
    engine: TaskEngine,
    settings: Settings,
    *,
    token_verifier: TokenVerifier | None = None,
    required_scopes: list[str] | None = None,
) -> MCPServer[Any]:
    return build_server(
        registry,
        engine,
        max_argument_bytes=settings.max_argument_bytes,
        progress_min_interval=settings.progress_min_interval_s,
        token_verifier=token_verifier,
        required_scopes=required_scopes,
    )


async def serve_stdio(registry: ToolRegistry, engine: TaskEngine, settings: Settings) -> None:
    await server_from(registry, engine, settings).run_stdio_async()


def http_app(
    registry: ToolRegistry,
    engine: TaskEngine,
    settings: Settings,
    *,
    path: str = "/mcp",
    token_verifier: TokenVerifier | None = None,
    required_scopes: list[str] | None = None,
) -> Starlette:
    """A Starlette app serving MCP at ``path``, ``/health`` and ``/metrics`` (the Prometheus text
    format; docs/observability.md)."""
    server = server_from(
        registry, engine, settings, token_verifier=token_verifier, required_scopes=required_scopes
    )
    mcp_app = server.streamable_http_app(streamable_http_path=path, host=settings.host)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncGenerator[None]:
        async with mcp_app.router.lifespan_context(mcp_app):
            yield

    routes = [*service_routes(engine, registry), Mount("/", app=mcp_app)]
    return Starlette(routes=routes, lifespan=lifespan)


async def serve_http(
    registry: ToolRegistry,
    engine: TaskEngine,
    settings: Settings,
    *,
    token_verifier: TokenVerifier | None = None,
) -> None:
    app = http_app(registry, engine, settings, token_verifier=token_verifier)
    await serve_app(app, settings.host, settings.port)
