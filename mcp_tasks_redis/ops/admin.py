"""Operator commands, straight from Redis: ``tasks ls|get|result|cancel|retry|watch``.

They read and change tasks through the engine, not through MCP: an operator sees every task of the
namespace, whoever created it (no owner or session scoping), so give Redis access only to people
who may. ``health worker`` is the compose file's worker healthcheck; ``health server`` probes a
server's ``/health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar, cast

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import InvalidTransition, TaskIsTerminal, TaskNotFound
from mcp_tasks_redis.engine.outcome import first_text
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.engine.replies import as_text as _text
from mcp_tasks_redis.ops.cli import NamespaceOption, RedisOption, require_redis, settings_with
from mcp_tasks_redis.settings import Settings

__all__ = ["describe", "percent", "run_on_engine", "stop", "task_table", "tasks_app"]

T = TypeVar("T")

_SCOPE_NOTE = (
    "Operator view straight from Redis: every task in the namespace, whoever created it"
    " (not scoped to an owner or session, unlike MCP tasks/list)."
)

tasks_app = typer.Typer(
    help=f"List, inspect, cancel, re-run and watch tasks. {_SCOPE_NOTE}", no_args_is_help=True
)

# Task ids are URL-safe base64 and may start with "-": pass unknown "-..." words on as the ID rather
# than failing with "No such option" (so no short options on these commands either).
_ID_FIRST: dict[str, Any] = {"ignore_unknown_options": True}

IdArg = Annotated[
    str, typer.Argument(metavar="ID", help="Task id (as `tasks ls` prints it).", show_default=False)
]


# -- helpers ---------------------------------------------------------------------------------------
def stop(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def run_on_engine(settings: Settings, action: Callable[[TaskEngine], Awaitable[T]]) -> T:
    """Run one async action on an engine for ``settings`` and close the engine afterwards."""
    from mcp_tasks_redis.ops.processes import engine_from

    async def main() -> T:
        engine = engine_from(settings)
        try:
            return await action(engine)
        finally:
            await engine.close()

    return _sync(main())


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _settings(redis_url: str | None, namespace: str | None) -> Settings:
    settings = settings_with(redis_url=redis_url, namespace=namespace)
    require_redis(settings)
    return settings


async def _get(engine: TaskEngine, task_id: str) -> TaskRecord:
    record = await engine.tasks.get(task_id)
    if record is None:
        stop(
            f"no task {task_id!r} in namespace {engine.keys.namespace!r}"
            " (it never existed, or its TTL ran out; `tasks ls` lists what there is)"
        )
    return record


def percent(record: TaskRecord) -> float | None:
    """The task's progress in percent, or None when the tool never reported any."""
    p = record.progress
    if p is None or p.progress is None:
        return None
    return 100.0 * p.progress / p.total if p.total else p.progress


def _age(ms: int, now_ms: int) -> str:
    seconds = max(0, (now_ms - ms) // 1000)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


_STATUS_STYLE = {
    "working": "cyan",
    "input_required": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def task_table(records: list[TaskRecord], *, title: str | None = None, now_ms: int | None = None) -> Table:
    """Rows of id, tool, status, progress %, message and age; ids are never cut (operators copy them)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("id", no_wrap=True, min_width=32)
    table.add_column("tool", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("progress", justify="right", no_wrap=True)
    table.add_column("message", overflow="ellipsis", no_wrap=True, max_width=40)
    table.add_column("age", justify="right", no_wrap=True)
    for r in records:
        pct = percent(r)
        message = r.status_message or (r.progress.message if r.progress else None) or ""
        if not message and r.is_error_result:
            message = first_text(r.result) or ""  # why the tool failed
        shown = "failed (tool error)" if r.is_error_result else r.status.value
        style = _STATUS_STYLE.get(_shown_status(r).value, "")
        table.add_row(
            r.task_id,
            r.tool or "-",
            f"[{style}]{shown}[/]" if style else shown,
            "-" if pct is None else f"{pct:.0f}%",
            message,
            _age(r.created_at_ms, now),
        )
    if not records:
        table.add_row("(no tasks)", "", "", "", "", "")
    return table


async def _newest(
    engine: TaskEngine, limit: int, status: TaskStatus | None, scan_max: int = 10_000
) -> list[TaskRecord]:
    """Newest tasks first (by creation), with ``status`` only those; failed tasks come most
    recent failure first.

    Tasks that a server created are indexed per owner or per session, not store-wide, so the
    operator's view walks the namespace's records with SCAN (at most ``scan_max`` of them; SCAN
    never blocks Redis). Failed tasks also come from the shards' dead-letter index, which holds
    every task a worker failed, however many tasks the namespace has.
    """
    keys: list[str] = []
    async for key in cast(Any, engine.redis).scan_iter(match=engine.keys.scan_pattern, count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        if not name.endswith(":inbox"):
            keys.append(name)
        if len(keys) >= scan_max:
            break
    records = [r for r in await _records(engine, keys) if status is None or _shown_status(r) == status]
    if status is TaskStatus.FAILED:
        seen = {r.task_id for r in records}
        records += [r for r in await _dead_letter(engine, limit) if r.task_id not in seen]
        records.sort(key=lambda r: r.updated_at_ms, reverse=True)
    else:
        records.sort(key=lambda r: r.created_at_ms, reverse=True)
    return records[:limit]


def _shown_status(record: TaskRecord) -> TaskStatus:
    """The status an operator filters by: a tool's error result counts as failed (as on the
    2025-11-25 wire; SEP-2663 calls it completed with ``isError``)."""
    return TaskStatus.FAILED if record.is_error_result else record.status


async def _dead_letter(engine: TaskEngine, limit: int) -> list[TaskRecord]:
    """Failed tasks, the most recent failure first, from each shard's failed-task index."""
    scored: list[tuple[float, str]] = []
    for shard in engine.keys.all_shards:
        rows = cast(
            list[tuple[bytes | str, float]],
            await engine.conn.call("zrevrange", shard.failed, 0, limit - 1, withscores=True),
        )
        scored += [(float(score), shard.task(_text(member))) for member, score in rows]
    scored.sort(reverse=True)
    return await _records(engine, [key for _, key in scored[:limit]])


async def _records(engine: TaskEngine, keys: list[str]) -> list[TaskRecord]:
    """The records at ``keys`` (in order), skipping any that expired meanwhile."""
    records: list[TaskRecord] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        raws = await engine.conn.pipeline(*[("hgetall", key) for key in chunk])
        records += [r for r in (TaskRecord.from_hash(raw) for raw in raws if raw) if r is not None]
    return records


def _console() -> Console:
    return Console(soft_wrap=False)


# -- tasks -----------------------------------------------------------------------------------------
@tasks_app.command("ls")
def tasks_ls(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="Tasks to show.")] = 20,
    status: Annotated[TaskStatus | None, typer.Option("--status", "-s", help="Only this status.")] = None,
    redis_url: RedisOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """List the newest tasks (all owners and sessions: operator view)."""
    settings = _settings(redis_url, namespace)
    records = run_on_engine(settings, lambda e: _newest(e, limit, status))
    _console().print(task_table(records, title=f"tasks in {settings.namespace!r}"))


@tasks_app.command("get", context_settings=_ID_FIRST)
def tasks_get(task_id: IdArg, redis_url: RedisOption = None, namespace: NamespaceOption = None) -> None:
    """Show everything stored about one task."""
    settings = _settings(redis_url, namespace)
    record = run_on_engine(settings, lambda e: _get(e, task_id))
    for name, value in describe(record):
        typer.echo(f"{name + ':':<11}{value}")


_LEVELS = {0: "high", 1: "normal", 2: "low"}


def describe(record: TaskRecord) -> list[tuple[str, str]]:
    """What `tasks get` shows of a record, as (label, value) rows; rows without a value are left out."""
    from mcp_tasks_redis.engine.telemetry.tracing import trace_id_of

    pct = percent(record)
    note = f" ({record.progress.message})" if record.progress and record.progress.message else ""
    allowed = record.meta.get("attempts")
    usage = record.usage or {}
    rows: list[tuple[str, Any]] = [
        ("id", record.task_id),
        ("tool", record.tool),
        ("status", record.status.value + (" (the tool's error result)" if record.is_error_result else "")),
        ("message", record.status_message),
        ("progress", None if pct is None else f"{pct:.0f}%{note}"),
        ("attempt", f"{record.attempt} of {allowed}" if isinstance(allowed, int) else record.attempt),
        ("priority", _LEVELS.get(record.priority, record.priority)),
        ("queue wait", _ms(usage.get("wait_ms"))),
        ("run time", _ms(usage.get("run_ms"))),
        ("cpu time", _ms(usage.get("cpu_ms"))),
        ("created", record.created_at.isoformat(timespec="milliseconds")),
        ("updated", record.updated_at.isoformat(timespec="milliseconds")),
        ("ttl", f"{record.ttl_ms} ms"),
        ("owner", record.owner),
        ("session", record.session),
        ("rerun of", record.meta.get("rerun_of")),
        ("trace id", trace_id_of(record.meta)),
        ("arguments", json.dumps(record.arguments)),
        ("error", None if record.error is None else json.dumps(record.error)),
    ]
    return [(name, str(value)) for name, value in rows if value is not None]


def _ms(value: Any) -> str | None:
    return f"{value:.0f} ms" if isinstance(value, int | float) else None


@tasks_app.command("result", context_settings=_ID_FIRST)
def tasks_result(
    task_id: IdArg,
    wait: Annotated[float | None, typer.Option("--wait", min=0, help="Wait up to SECONDS.")] = None,
    redis_url: RedisOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Print a finished task's stored result as JSON (exit 1 if it failed, was cancelled or is not done)."""
    settings = _settings(redis_url, namespace)

    async def fetch(engine: TaskEngine) -> TaskRecord:
        record = await _get(engine, task_id)
        if wait and not record.is_terminal:
            try:
                waited = await engine.wait_until(task_id, lambda r: r is None or r.is_terminal, timeout=wait)
            except TimeoutError:
                waited = await engine.tasks.get(task_id)
            record = waited or record
        return record

    record = run_on_engine(settings, fetch)
    if not record.is_terminal:
        pct = percent(record)
        stop(
            f"task {task_id} has no result yet: {record.status.value}"
            + (f" at {pct:.0f}%" if pct is not None else "")
            + " (try --wait SECONDS or `tasks watch ID`)"
        )
    outcome = record.result if record.result is not None else record.error
    if outcome is not None:
        typer.echo(json.dumps(outcome, indent=2, ensure_ascii=False))
    if record.status != TaskStatus.COMPLETED:
        stop(f"task {task_id} {record.status.value}: {record.status_message or 'no message'}")


@tasks_app.command("cancel", context_settings=_ID_FIRST)
def tasks_cancel(task_id: IdArg, redis_url: RedisOption = None, namespace: NamespaceOption = None) -> None:
    """Cancel a task that has not finished; its worker stops the tool within a poll interval."""
    settings = _settings(redis_url, namespace)

    async def cancel(engine: TaskEngine) -> TaskStatus:
        before = await _get(engine, task_id)
        try:
            await engine.tasks.cancel(task_id, "Cancelled by an operator", tool=before.tool)
            return TaskStatus.CANCELLED
        except TaskIsTerminal:
            stop(f"task {task_id} already ended ({before.status.value}); nothing to cancel")
        except TaskNotFound:
            stop(f"no task {task_id!r} in namespace {engine.keys.namespace!r}")

    status = run_on_engine(settings, cancel)
    typer.echo(f"{task_id} {status.value}")


@tasks_app.command("retry", context_settings=_ID_FIRST)
def tasks_retry(task_id: IdArg, redis_url: RedisOption = None, namespace: NamespaceOption = None) -> None:
    """Run a finished task's tool again, as a new task (same arguments, owner, session, priority).

    The old task stays as it ended; the new one names it (`tasks get NEW` shows "rerun of") and
    appears in the same owner's or session's task list, where its client finds it.
    """
    settings = _settings(redis_url, namespace)

    async def rerun(engine: TaskEngine) -> TaskRecord:
        before = await _get(engine, task_id)
        try:
            return await engine.tasks.rerun(task_id)
        except InvalidTransition:
            stop(f"task {task_id} has not finished ({before.status.value}); only a finished task is re-run")

    record = run_on_engine(settings, rerun)
    typer.echo(f"{record.task_id} {record.status.value} (re-runs {task_id})")


@tasks_app.command("watch", context_settings=_ID_FIRST)
def tasks_watch(
    task_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[ID]",
            help="Follow this task until it ends (default: newest tasks).",
            show_default=False,
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Rows without an ID.")] = 15,
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="Seconds between refreshes.")] = 0.5,
    redis_url: RedisOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """A live table of tasks: id, tool, status, progress, message, age (Ctrl-C to leave)."""
    settings = _settings(redis_url, namespace)
    console = _console()
    title = f"task {task_id}" if task_id else f"newest tasks in {settings.namespace!r}"

    async def rows(engine: TaskEngine) -> list[TaskRecord]:
        if task_id is None:
            return await _newest(engine, limit, None)
        return [await _get(engine, task_id)]

    async def watch(engine: TaskEngine) -> None:
        records = await rows(engine)
        if once:
            console.print(task_table(records, title=title))
            return
        # One task: its events wake us at each change (--interval bounds the wait).
        # The newest tasks: there is no event for "any task", so refresh every --interval.
        table = task_table(records, title=title)
        with Live(table, console=console, refresh_per_second=8) as live, contextlib.ExitStack() as stack:
            events = stack.enter_context(engine.events.listen(task_id)) if task_id else None
            if events is not None:
                await engine.events.ready()
                records = await rows(engine)
            while not (task_id and records and records[0].is_terminal):
                if events is None:
                    await asyncio.sleep(interval)
                else:
                    await events.next(interval)
                records = await rows(engine)
                live.update(task_table(records, title=title))

    run_on_engine(settings, watch)
