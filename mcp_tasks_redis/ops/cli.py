"""The `mcp-tasks-redis` command: serve, worker, dev, demo, tasks, health.

Every option is also read from the environment (``REDIS_URL`` and the ``MCP_TASKS_*`` names of
`Settings`); flags win over the environment. Errors a user can fix are one clear line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Generator
from typing import Annotated, Any, Literal, NoReturn, cast

import typer

from mcp_tasks_redis.engine.loading import RegistryLoadError, load_registry
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.ops import logs
from mcp_tasks_redis.ops.embedded import redis_answers
from mcp_tasks_redis.settings import Settings

cli = typer.Typer(
    name="mcp-tasks-redis",
    help="Distributed MCP Tasks: MCP servers and worker processes sharing task state in Redis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

AppOption = Annotated[
    str | None, typer.Option("--app", help="Tool registry as MODULE:ATTR [env MCP_TASKS_APP].")
]
RedisOption = Annotated[str | None, typer.Option("--redis-url", help="Redis URL [env REDIS_URL].")]
NamespaceOption = Annotated[
    str | None, typer.Option("--namespace", help="Key namespace [env MCP_TASKS_NAMESPACE].")
]
HostOption = Annotated[str | None, typer.Option("--host", help="HTTP bind address [env MCP_TASKS_HOST].")]


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
    # Like uvicorn and arq: an app module next to where the command runs is importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
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
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=fast_event_loop()) as runner:
        runner.run(coro)


def fast_event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (about a tenth less CPU per task, measured in bench/);
    None: asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@cli.command()
def serve(
    app: AppOption = None,
    transport: Annotated[
        Literal["stdio", "streamable-http"] | None,
        typer.Option("--transport", help="stdio or streamable-http [env MCP_TASKS_TRANSPORT]."),
    ] = None,
    host: HostOption = None,
    port: Annotated[int | None, typer.Option("--port", help="HTTP port [env MCP_TASKS_PORT].")] = None,
    redis_url: RedisOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Run the MCP server for the tools the app declares (task calls go to workers)."""

    settings = settings_with(
        app=app, transport=transport, host=host, port=port, redis_url=redis_url, namespace=namespace
    )
    logs.configure(settings.log_level, settings.log_format)
    registry = load_app(settings.app)
    require_redis(settings)
    if settings.transport != "stdio":
        ensure_port_free(settings.host, settings.port)
        typer.echo(f"serving {len(registry)} tools at http://{settings.host}:{settings.port}/mcp", err=True)
    with traced(settings, "server"):
        run(_serve(registry, settings))


async def _serve(registry: ToolRegistry, settings: Settings) -> None:
    from mcp_tasks_redis import wire
    from mcp_tasks_redis.ops.processes import engine_from

    engine = engine_from(settings)
    try:
        await wire.serve(registry, engine, settings)
    finally:
        await engine.close()


@cli.command()
def worker(
    app: AppOption = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, help="Tasks run at once [env MCP_TASKS_CONCURRENCY]."),
    ] = None,
    redis_url: RedisOption = None,
    namespace: NamespaceOption = None,
    burst: Annotated[bool, typer.Option("--burst", help="Exit once the queue is empty.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65_535,
            help="Serve Prometheus metrics at http://HOST:PORT/metrics [env MCP_TASKS_METRICS_PORT].",
        ),
    ] = None,
    host: HostOption = None,
    dispatcher: Annotated[
        Literal["streams", "arq"] | None,
        typer.Option("--dispatcher", help="streams or arq (the [arq] extra) [env MCP_TASKS_DISPATCHER]."),
    ] = None,
) -> None:
    """Run a worker process; SIGTERM hands its unfinished tasks back to the queue."""
    from mcp_tasks_redis.ops.processes import run_worker

    settings = settings_with(
        app=app,
        concurrency=concurrency,
        redis_url=redis_url,
        namespace=namespace,
        metrics_port=metrics_port,
        host=host,
        dispatcher=dispatcher,
    )
    logs.configure(settings.log_level, settings.log_format)
    registry = load_app(settings.app)
    require_redis(settings)
    if settings.dispatcher == "arq":
        try:
            from mcp_tasks_redis.arq_dispatch.worker import run_arq_worker
        except ImportError:
            fail("the arq dispatcher needs arq", 'pip install "mcp-tasks-redis[arq]"')
        with traced(settings, "worker"):
            run_arq_worker(registry, settings, burst=burst)
        return
    if settings.metrics_port is not None:
        ensure_port_free(settings.host, settings.metrics_port)
    with traced(settings, "worker"):
        run(run_worker(registry, settings, burst=burst))


@contextlib.contextmanager
def traced(settings: Settings, role: str) -> Generator[None]:
    """Export this process's spans as the traces setting says (nothing when unset), flushing
    what is buffered when the block ends."""
    if settings.traces is None:
        yield
        return
    from mcp_tasks_redis.ops.tracing_setup import TracingSetupError, configure_tracing

    try:
        shutdown = configure_tracing(settings.traces, role)
    except TracingSetupError as e:
        fail(str(e))
    try:
        yield
    finally:
        shutdown()


def ensure_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            fail(f"cannot listen on {host}:{port}: {e.strerror}", "pick another --port")


@cli.command()
def dev(
    workers: Annotated[int, typer.Option("--workers", "-w", min=0, max=64, help="Worker processes.")] = 2,
    app: AppOption = None,
    host: HostOption = None,
    port: Annotated[int | None, typer.Option("--port", help="HTTP port [env MCP_TASKS_PORT].")] = None,
    redis_url: RedisOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Run the whole stack: Redis, one Streamable HTTP server and N workers; Ctrl-C stops it all.

    Redis: --redis-url / REDIS_URL if given, else one answering on 127.0.0.1:6379, else an embedded
    one (redis-server from PATH, else in-process fakeredis), stopped on exit.
    """
    import os
    import signal

    from mcp_tasks_redis.ops.stack import DevStack, StackError

    settings = settings_with(app=app, host=host, port=port, redis_url=redis_url, namespace=namespace)
    logs.configure(settings.log_level, settings.log_format)
    # The children run with `python -m`, which puts the cwd on sys.path; check --app the same way.
    sys.path.insert(0, os.getcwd())
    load_app(settings.app)
    ensure_port_free(settings.host, settings.port)

    def on_signal(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwinds like Ctrl-C: the stack stops in order

    # SIGINT too: a shell script's `cmd &` starts us with SIGINT ignored, and `kill -INT` must work.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stack = DevStack(
        workers=workers,
        app=settings.app,
        host=settings.host,
        port=settings.port,
        redis_url=settings.redis_url,
        namespace=settings.namespace,
        log_level=settings.log_level,
        say=typer.echo,
    )
    try:
        with stack:
            typer.echo(f"ready:   MCP endpoint {stack.mcp_url} (Ctrl-C stops everything)")
            child = stack.wait()
            fail(f"{child.name} exited with code {child.process.returncode}; stopped the stack")
    except StackError as e:
        fail(str(e))
    except KeyboardInterrupt:
        pass
    typer.echo("stopped")


@cli.command()
def demo(
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, max=8, help="Worker processes.")] = 2,
    redis_url: RedisOption = None,
) -> None:
    """Run the dev stack and a client showing tasks in parallel, live progress, polling, cancel, reconnect.

    Uses its own key namespace (deleted afterwards); Redis as for `dev`. Exits 1 if a step misbehaves.
    """
    from mcp_tasks_redis.ops.demo import run_demo

    settings = settings_with(redis_url=redis_url)
    logs.configure("WARNING", settings.log_format)
    if settings.redis_url is not None:
        require_redis(settings)  # a configured Redis must answer; else the demo finds or starts one
    raise typer.Exit(run_demo(redis_url=settings.redis_url, workers=workers))


def _add_sub_apps() -> None:
    # Imported here, after the helpers above exist: the sub-apps import them from this module.
    from mcp_tasks_redis.ops.admin import tasks_app
    from mcp_tasks_redis.ops.health import health_app

    cli.add_typer(tasks_app, name="tasks")
    cli.add_typer(health_app, name="health")


if __name__ != "__main__":  # under `python -m`, the trampoline at the bottom imports the real module
    _add_sub_apps()


def _click_error_classes() -> tuple[type[Exception], type[Exception]]:
    """(UsageError, ClickException) of the click that typer uses: newer typers vendor their own copy,
    older ones use the `click` package, so take them from the class tree of `typer.BadParameter`."""
    tree = typer.BadParameter.__mro__
    usage = next(c for c in tree if c.__name__ == "UsageError")
    base = next(c for c in tree if c.__name__ == "ClickException")
    return cast(type[Exception], usage), cast(type[Exception], base)


def main() -> None:
    """Entry point: typer parses; usage errors become one line on stderr with exit code 2."""
    usage_error, click_error = _click_error_classes()
    try:
        code = cli(standalone_mode=False)
    except usage_error as e:
        ctx: Any = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help(), err=True)
            sys.exit(2)
        where = ctx.command_path if ctx is not None else "mcp-tasks-redis"
        message = cast(Any, e).format_message()
        typer.secho(f"error: {message} (see '{where} --help')", err=True, fg=typer.colors.RED)
        sys.exit(int(getattr(e, "exit_code", 2)))
    except click_error as e:
        typer.secho(f"error: {cast(Any, e).format_message()}", err=True, fg=typer.colors.RED)
        sys.exit(int(getattr(e, "exit_code", 1)))
    except KeyboardInterrupt:
        sys.exit(130)
    except RuntimeError as e:
        if type(e).__name__ != "Abort":  # click's Abort (EOF at a prompt): exit quietly like click does
            raise
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    # `python -m mcp_tasks_redis.ops.cli` (how the dev stack starts its children): run the copy
    # imported under its real name, so the sub-apps and this module share one set of helpers.
    from mcp_tasks_redis.ops.cli import main as _main

    _main()
