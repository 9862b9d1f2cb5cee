"""Hosting: the server over stdio or Streamable HTTP, and a worker process, from `Settings`.

These are the process entry points that the `mcp-tasks-redis` command (and the compose file)
start; each builds its engine from the settings so every process of a deployment agrees on the
namespace, TTL bounds, lease and poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import AsyncGenerator
from typing import Any

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import TokenVerifier
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from mcp_tasks_redis.engine.connection import TaskLimits
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.mcp_v1.server import build_server
from mcp_tasks_redis.mcp_v1.worker import build_worker
from mcp_tasks_redis.settings import Settings

log = logging.getLogger("mcp_tasks_redis.host")


def limits_from(settings: Settings) -> TaskLimits:
    return TaskLimits(
        default_ttl_ms=settings.default_ttl_ms,
        min_ttl_ms=settings.min_ttl_ms,
        max_ttl_ms=settings.max_ttl_ms,
        poll_interval_ms=settings.poll_interval_ms,
        lease_ms=settings.lease_ms,
        max_attempts=settings.max_attempts,
    )


def engine_from(settings: Settings) -> TaskEngine:
    return TaskEngine.from_url(
        settings.resolved_redis_url, namespace=settings.namespace, limits=limits_from(settings)
    )


def server_from(registry: ToolRegistry, engine: TaskEngine, settings: Settings) -> Server[Any, Any]:
    return build_server(
        registry,
        engine,
        max_argument_bytes=settings.max_argument_bytes,
        progress_min_interval=settings.progress_min_interval_s,
    )


async def serve_stdio(registry: ToolRegistry, settings: Settings) -> None:
    engine = engine_from(settings)
    server = server_from(registry, engine, settings)
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await engine.close()


def http_app(
    registry: ToolRegistry,
    engine: TaskEngine,
    settings: Settings,
    *,
    path: str = "/mcp",
    token_verifier: TokenVerifier | None = None,
    required_scopes: list[str] | None = None,
) -> Starlette:
    """A Starlette app serving MCP at ``path`` (stateful sessions) and ``/health``.

    With a ``token_verifier``, every MCP request needs a valid bearer token (the SDK's auth
    middleware), and tasks are bound to the token's issuer, client id and subject.
    """
    server = server_from(registry, engine, settings)
    manager = StreamableHTTPSessionManager(app=server)

    async def handle_mcp(scope: Scope, receive: Receive, send: Send) -> None:
        await manager.handle_request(scope, receive, send)

    mcp_endpoint: Any = handle_mcp
    middleware: list[Middleware] = []
    if token_verifier is not None:
        mcp_endpoint = RequireAuthMiddleware(handle_mcp, required_scopes or [])
        middleware = [
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(token_verifier)),
            Middleware(AuthContextMiddleware),
        ]

    async def health(_: Request) -> JSONResponse:
        try:
            await engine.redis.ping()  # type: ignore[misc]
        except Exception as e:  # any failure means "not healthy"; the body says why
            return JSONResponse({"status": "unhealthy", "redis": str(e)}, status_code=503)
        return JSONResponse({"status": "ok", "tools": registry.names()})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncGenerator[None]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with manager.run():
                yield

    return Starlette(
        routes=[Route("/health", health), Mount(path, app=mcp_endpoint)],
        middleware=middleware,
        lifespan=lifespan,
    )


async def serve_http(
    registry: ToolRegistry, settings: Settings, *, token_verifier: TokenVerifier | None = None
) -> None:
    import uvicorn

    engine = engine_from(settings)
    app = http_app(registry, engine, settings, token_verifier=token_verifier)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="on")
    try:
        await uvicorn.Server(config).serve()
    finally:
        await engine.close()


async def run_worker(
    registry: ToolRegistry, settings: Settings, *, concurrency: int | None = None, burst: bool = False
) -> None:
    """One worker process: runs until SIGTERM/SIGINT, then hands back unfinished tasks."""
    engine = engine_from(settings)
    worker = build_worker(
        engine,
        registry,
        concurrency=concurrency or settings.concurrency,
        max_result_bytes=settings.max_result_bytes,
        progress_min_interval=settings.progress_min_interval_s,
        poll_delay_s=settings.poll_interval_ms / 1000,
        burst=burst,
    )
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        # arq's signal handler cancels its main task: that is the normal way a worker stops.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    finally:
        await worker.close()
        await engine.close()
