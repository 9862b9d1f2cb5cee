"""The HTTP routes every server serves beside MCP, whichever wire it speaks.

``/health`` answers 200 with the registry's tools while Redis answers, 503 saying why when it does
not (the compose file's and a load balancer's probe); ``/metrics`` serves the process's metrics in
the Prometheus text format (docs/observability.md).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.registry import ToolRegistry

__all__ = ["serve_app", "service_routes"]


def service_routes(engine: TaskEngine, registry: ToolRegistry) -> list[Route]:
    async def health(_: Request) -> Response:
        try:
            await engine.redis.ping()  # type: ignore[misc]
        except Exception as e:  # any failure means "not healthy"; the body says why
            return JSONResponse({"status": "unhealthy", "redis": str(e)}, status_code=503)
        return JSONResponse({"status": "ok", "tools": registry.names()})

    async def metrics(request: Request) -> Response:
        body, content_type = await engine.metrics.render(request.headers.get("accept", ""))
        return Response(body, headers={"Content-Type": content_type})

    return [Route("/health", health), Route("/metrics", metrics)]


async def serve_app(app: Starlette, host: str, port: int) -> None:
    """Serve a server's HTTP app with uvicorn until it is stopped."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
