"""Hosting the 2025-11-25 server over stdio or Streamable HTTP, from `Settings`.

These are the entry points that the `mcp-tasks-redis serve` command (and the compose file) start on
`mcp` 1.x; each builds its engine from the settings (`ops.processes`).
"""

from __future__ import annotations

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
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.http_routes import serve_app, service_routes
from mcp_tasks_redis.mcp_v1.server import build_server
from mcp_tasks_redis.mcp_v1.state import server_state
from mcp_tasks_redis.settings import Settings

log = logging.getLogger("mcp_tasks_redis.host")


def server_from(registry: ToolRegistry, engine: TaskEngine, settings: Settings) -> Server[Any, Any]:
    return build_server(
        registry,
        engine,
        max_argument_bytes=settings.max_argument_bytes,
        progress_min_interval=settings.progress_min_interval_s,
    )


async def serve_stdio(registry: ToolRegistry, engine: TaskEngine, settings: Settings) -> None:
    server = server_from(registry, engine, settings)
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await server_state(server).aclose()


class _SessionEndpoint:
    """The session manager as a plain ASGI app: an object, so that `Route` passes it the raw
    scope instead of wrapping it as a request -> response function."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self._manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._manager.handle_request(scope, receive, send)


def _exact_routes(path: str, endpoint: ASGIApp) -> list[Route]:
    """Routes for ``path`` with and without its trailing slash. A `Mount` would answer
    ``POST /mcp`` with a 307 to ``/mcp/``: a second round trip on every request, a failure for
    clients that do not re-POST on a redirect, and an ``http://`` Location behind a TLS proxy."""
    bare = "/" + path.strip("/")
    paths = [bare] if bare == "/" else [bare, bare + "/"]
    return [Route(p, endpoint=endpoint) for p in paths]


def http_app(
    registry: ToolRegistry,
    engine: TaskEngine,
    settings: Settings,
    *,
    path: str = "/mcp",
    token_verifier: TokenVerifier | None = None,
    required_scopes: list[str] | None = None,
) -> Starlette:
    """A Starlette app serving MCP at ``path`` (stateful sessions), ``/health`` and ``/metrics``
    (the Prometheus text format; docs/observability.md).

    MCP answers at ``path`` and at ``path/`` alike, with no redirect. To add it to an existing
    Starlette or FastAPI app, mount it under a prefix of your choice and run its lifespan from
    the parent's (Starlette does not run a mounted app's lifespan)::

        tasks_app = http_app(registry, engine, settings)
        parent = Starlette(routes=[Mount("/agents", tasks_app)], lifespan=tasks_app.router.lifespan_context)
        # MCP at /agents/mcp, health at /agents/health

    With a ``token_verifier``, every MCP request needs a valid bearer token (the SDK's auth
    middleware), and tasks are bound to the token's issuer, client id and subject.
    """
    server = server_from(registry, engine, settings)
    manager = StreamableHTTPSessionManager(app=server)

    mcp_endpoint: ASGIApp = _SessionEndpoint(manager)
    middleware: list[Middleware] = []
    if token_verifier is not None:
        mcp_endpoint = RequireAuthMiddleware(mcp_endpoint, required_scopes or [])
        middleware = [
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(token_verifier)),
            Middleware(AuthContextMiddleware),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncGenerator[None]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with manager.run():
                try:
                    yield
                finally:
                    await server_state(server).aclose()

    return Starlette(
        routes=[*service_routes(engine, registry), *_exact_routes(path, mcp_endpoint)],
        middleware=middleware,
        lifespan=lifespan,
    )


async def serve_http(
    registry: ToolRegistry,
    engine: TaskEngine,
    settings: Settings,
    *,
    token_verifier: TokenVerifier | None = None,
) -> None:
    app = http_app(registry, engine, settings, token_verifier=token_verifier)
    await serve_app(app, settings.host, settings.port)
