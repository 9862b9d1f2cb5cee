"""Health checks for compose files and probes: ``health worker`` (a worker on this host reported
within its health TTL) and ``health server`` (a server's ``/health`` answers)."""

from __future__ import annotations

import json
import socket
import time
from typing import Annotated, Any, cast

import typer

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.ops.admin import run_on_engine, stop
from mcp_tasks_redis.ops.cli import NamespaceOption, RedisOption, settings_with

__all__ = ["health_app"]

health_app = typer.Typer(
    help="Health checks (exit 0 healthy, 1 not), for compose files and probes.", no_args_is_help=True
)


@health_app.command("worker")
def health_worker(
    any_host: Annotated[bool, typer.Option("--any-host", help="Accept a worker on any host.")] = False,
    redis_url: RedisOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Exit 0 if a worker on this host (hostname) reported within its health TTL, else 1 saying why."""
    settings = settings_with(redis_url=redis_url, namespace=namespace)
    host = socket.gethostname()

    async def reports(engine: TaskEngine) -> list[dict[str, Any]]:
        members = cast(list[bytes], await cast(Any, engine.redis).zrange(engine.keys.workers, 0, -1))
        if not members:
            return []
        raw: list[bytes | str | None] = await engine.redis.mget(
            [engine.keys.worker(m.decode()) for m in members]
        )
        # A member whose key has expired is a worker that stopped reporting: not alive.
        return [cast(dict[str, Any], json.loads(r)) for r in raw if r]

    from mcp_tasks_redis.ops.embedded import redis_answers

    if not redis_answers(settings.resolved_redis_url, timeout=2.0):
        stop(f"unhealthy: Redis at {settings.resolved_redis_url} is unreachable")
    live = run_on_engine(settings, reports)
    mine = live if any_host else [r for r in live if r.get("host") == host]
    if not mine:
        where = "any host" if any_host else f"host {host!r}"
        stop(
            f"unhealthy: no worker on {where} has reported in namespace {settings.namespace!r} within its"
            f" health TTL ({len(live)} live worker(s) elsewhere)"
        )
    for r in mine:
        age = time.time() - float(r.get("at", 0))
        typer.echo(
            f"ok: worker {r.get('worker')} running {r.get('running')}/{r.get('slots')},"
            f" completed {r.get('completed')}, reported {age:.1f}s ago"
        )


@health_app.command("server")
def health_server(
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Health URL [default: http://HOST:PORT/health from MCP_TASKS_HOST / MCP_TASKS_PORT].",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for it.")] = 3.0,
) -> None:
    """Exit 0 if the server's /health answers ok (Redis reachable from the server), else 1 saying why."""
    from mcp_tasks_redis.ops.stack import http_health

    if url is None:
        settings = settings_with()
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        url = f"http://{host}:{settings.port}/health"
    ok, detail = http_health(url, timeout=timeout)
    if not ok:
        stop(f"unhealthy: {url}: {detail}")
    typer.echo(f"ok: {url} {detail}")
