"""The `mcp-tasks-redis` command: serve, worker, dev, demo, tasks, health.

Every option is also read from the environment (``REDIS_URL`` and the ``MCP_TASKS_*`` names of
`Settings`); flags win over the environment. Errors a user can fix are one clear line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any, Literal, NoReturn

import typer

from mcp_tasks_redis.engine.registry import RegistryLoadError, ToolRegistry, load_registry
from mcp_tasks_redis.ops import logs
from mcp_tasks_redis.ops.embedded import redis_answers
from mcp_tasks_redis.settings import Settings

cli = typer.Typer(
    name="mcp-tasks-redis",
    help="Distributed MCP Tasks: an MCP server and arq workers sharing task state in Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

AppOption = Annotated[str | None, typer.Option("--app", help="Tool registry as MODULE:ATTR [env MCP_TASKS_APP].")]
RedisOption = Annotated[str | None, typer.Option("--redis-url", help="Redis URL [env REDIS_URL].")]
NamespaceOption = Annotated[str | None, typer.Option("--namespace", help="Key namespace [env MCP_TASKS_NAMESPACE].")]


def fail(message: str, hint: str | None = None) -> NoReturn:
    typer.secho(f"error: {message}" + (f" ({hint})" if hint else ""), err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def settings_with(**overrides: Any) -> Settings:
    """Settings from the environment, with the flags that were given laid on top."""
    from pydantic import ValidationError

    try:
        base = Settings()
        given = {k: v for k, v in overrides.items() if v is not None}
        return base.model_validate({**base.model_dump(), **given}) if given else base
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        fail(f"invalid setting {where}: {first['msg']}")


def load_app(spec: str) -> ToolRegistry:
    try:
        return load_registry(spec)
    except RegistryLoadError as e:
        fail(str(e), "pass --app MODULE:ATTR naming a ToolRegistry")


def require_redis(settings: Settings) -> str:
    url = settings.resolved_redis_url
    if not redis_answers(url, timeout=2.0):
        fail(f"Redis at {url} is unreachable", "start Redis or set REDIS_URL / --redis-url")
    return url


def run(coro: Any) -> None:
    try:
        asyncio.run(coro)
    except KeyboardInterrupt:
        pass


@cli.command()
def serve(
    app: AppOption = None,
    transport: Annotated[
        Literal["stdio", "streamable-http"] | None,
        typer.Option("--transport", help="stdio or streamable-http [env MCP_TASKS_TRANSPORT]."),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="HTTP bind address [env MCP_TASKS_HOST].")] = None,
    port: Annotated[int | None, typer.Option("--port", help="HTTP port [env MCP_TASKS_PORT].")] = None,
    redis_url: RedisOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Run the MCP server for the tools the app declares (task calls go to workers)."""
    from mcp_tasks_redis.mcp_v1.host import serve_http, serve_stdio

    settings = settings_with(app=app, transport=transport, host=host, port=port, redis_url=redis_url,
                             namespace=namespace)
    logs.configure(settings.log_level, settings.log_format)
    registry = load_app(settings.app)
    require_redis(settings)
    if settings.transport == "stdio":
        run(serve_stdio(registry, settings))
        return
    ensure_port_free(settings.host, settings.port)
    typer.echo(f"serving {len(registry)} tools at http://{settings.host}:{settings.port}/mcp", err=True)
    run(serve_http(registry, settings))


@cli.command()
def worker(
    app: AppOption = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1,
                                                    help="Tasks run at once [env MCP_TASKS_CONCURRENCY].")] = None,
    redis_url: RedisOption = None,
    namespace: NamespaceOption = None,
    burst: Annotated[bool, typer.Option("--burst", help="Exit once the queue is empty.")] = False,
) -> None:
    """Run a worker process; SIGTERM hands its unfinished tasks back to the queue."""
    from mcp_tasks_redis.mcp_v1.host import run_worker

    settings = settings_with(app=app, concurrency=concurrency, redis_url=redis_url, namespace=namespace)
    logs.configure(settings.log_level, settings.log_format)
    registry = load_app(settings.app)
    require_redis(settings)
    run(run_worker(registry, settings, burst=burst))


def ensure_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            fail(f"cannot listen on {host}:{port}: {e.strerror}", "pick another --port")


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
