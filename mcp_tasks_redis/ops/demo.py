"""`mcp-tasks-redis demo`: the dev stack plus an MCP client that shows what distributed tasks do.

Four steps, each checked, with live progress bars from the server's ``notifications/progress``:
three tasks of 3 s, 2 s and 1 s running at once (wall time against the 6 s sum); a task followed
by polling ``tasks/get``; a task cancelled mid-run (the worker lets go of the job); and a client
that disconnects while its task runs, reconnects as a new session and fetches results by task id.
Without a terminal rich prints plain lines, so the demo also runs headless (CI, pipes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import tempfile
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio as aioredis
import redis.exceptions
from mcp import ClientSession
from mcp.client.experimental import ExperimentalClientFeatures
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ProgressNotification, ServerNotification, TaskStatusNotification
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mcp_tasks_redis.engine.keys import GROUP, KeySpace
from mcp_tasks_redis.ops.stack import DevStack, StackError
from mcp_tasks_redis.settings import Settings

__all__ = ["run_demo"]

TOOL = "slow_compute"


class _LateMessageAtClose(logging.Filter):
    """Drops the SDK client's traceback for a message that arrives on its event stream just as the
    demo closes the session (the stream's reader is already gone): noise, not a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return type(error).__name__ not in ("ClosedResourceError", "BrokenResourceError")


logging.getLogger("mcp.client.streamable_http").addFilter(_LateMessageAtClose())
WAIT_S = 20.0  # bound on every wait for the server or a worker


def _text(result: CallToolResult) -> str:
    return next((c.text for c in result.content if c.type == "text"), "")


def _short(task_id: str) -> str:
    return task_id[:10] + "…"


class Bars:
    """Progress bars keyed by progressToken, fed from the session's notifications."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._ids: dict[str, TaskID] = {}
        self._labels: dict[str, str] = {}
        self._tokens_by_task: dict[str, str] = {}
        self._milestone: dict[str, int] = {}
        self.percent: dict[str, float] = {}
        self._changed = asyncio.Event()

    def add(self, token: str, label: str) -> None:
        self._ids[token] = self.progress.add_task(label, total=100, note="queued")
        self._labels[token], self.percent[token], self._milestone[token] = label, 0.0, 0

    def bind(self, token: str, task_id: str) -> None:
        self._tokens_by_task[task_id] = token

    def on_progress(self, token: str, value: float, total: float | None, message: str | None) -> None:
        if token not in self._ids:
            return
        pct = 100.0 * value / total if total else value
        self.percent[token] = pct
        self.progress.update(self._ids[token], completed=pct, note=message or "")
        # Headless: rich shows only the final frame of a live display, so print milestones as lines.
        if not self.console.is_terminal and int(pct // 25) > self._milestone[token]:
            self._milestone[token] = int(pct // 25)
            self.console.print(f"  {self._labels[token]:<22} {pct:5.0f}%  {message or ''}")
        self._changed.set()

    def on_status(self, task_id: str, status: str) -> None:
        token = self._tokens_by_task.get(task_id)
        if token is not None and status in ("completed", "failed", "cancelled"):
            self.progress.update(self._ids[token], note=status)
            if not self.console.is_terminal:
                self.console.print(f"  {self._labels[token]:<22} {status}")

    async def reached(self, token: str, percent: float) -> float:
        """Wait (at most WAIT_S) until the token's progress is at least ``percent``; return it."""
        deadline = time.monotonic() + WAIT_S
        while self.percent.get(token, 0.0) < percent:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"progress of {self._labels[token]} stayed below {percent:g}%")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return self.percent[token]


@dataclass
class Report:
    """One line per step for the summary: (step, what happened, whether it behaved)."""

    lines: list[tuple[str, str, bool]] = field(default_factory=list[tuple[str, str, bool]])

    def add(self, step: str, text: str, ok: bool = True) -> None:
        self.lines.append((step, text, ok))

    @property
    def ok(self) -> bool:
        return all(ok for _, _, ok in self.lines)


class DemoClient:
    """The demo's MCP client: each step is a method that prints as it goes and adds to the report."""

    def __init__(self, stack: DevStack, console: Console) -> None:
        self.stack, self.console = stack, console
        self.shards = Settings().shards  # the stack's processes read the same environment
        self.bars: Bars | None = None
        self.report = Report()

    async def _on_message(self, message: Any) -> None:
        if not isinstance(message, ServerNotification) or self.bars is None:
            return
        note = message.root
        if isinstance(note, ProgressNotification):
            p = note.params
            self.bars.on_progress(str(p.progressToken), p.progress, p.total, p.message)
        elif isinstance(note, TaskStatusNotification):
            self.bars.on_status(note.params.taskId, note.params.status)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncGenerator[ExperimentalClientFeatures]:
        """A new MCP session over Streamable HTTP (a new connection and session id each time)."""
        async with (
            streamable_http_client(self.stack.mcp_url) as (read, write, _),
            ClientSession(read, write, message_handler=self._on_message) as session,
        ):
            await session.initialize()
            # Built directly rather than through `session.experimental`, whose getter warns that the
            # SDK drops SEP-1686 tasks in mcp 2: the 2025-11-25 wire is the one this server speaks.
            yield ExperimentalClientFeatures(session)

    def _heading(self, text: str) -> None:
        self.console.print()
        self.console.rule(f"[bold]{text}", align="left")

    # -- the steps ----------------------------------------------------------------------------
    async def concurrency(self, mcp: ExperimentalClientFeatures) -> str:
        self._heading("1. Three tasks at once: 3 s, 2 s and 1 s of work (6 s one after the other)")
        bars = self.bars = Bars(self.console)
        with bars.progress:
            started = time.monotonic()
            ids: list[str] = []
            for seconds in (3, 2, 1):
                token = f"concurrent-{seconds}"
                bars.add(token, f"{TOOL}({seconds} s)")
                created = await mcp.call_tool_as_task(
                    TOOL, {"seconds": seconds}, meta={"progressToken": token}
                )
                bars.bind(token, created.task.taskId)
                ids.append(created.task.taskId)
            results = await asyncio.wait_for(
                asyncio.gather(*(mcp.get_task_result(i, CallToolResult) for i in ids)), WAIT_S
            )
            wall = time.monotonic() - started
        texts = [_text(r) for r in results]
        self.console.print(f"results: {'; '.join(texts)}")
        ok = wall < 5.0 and all(not r.isError for r in results)
        self.report.add(
            "parallel",
            f"3 tasks (3 s + 2 s + 1 s = 6 s one after the other) finished in"
            f" {wall:.1f} s on {self.stack.workers} workers",
            ok,
        )
        return ids[0]

    async def polling(self, mcp: ExperimentalClientFeatures) -> None:
        self._heading("2. Status polling: tasks/get until the task ends, then tasks/result")
        self.bars = None
        created = await mcp.call_tool_as_task(TOOL, {"seconds": 2})
        task_id, polls = created.task.taskId, 0
        self.console.print(f"created task {_short(task_id)} ({created.task.status})")
        deadline = time.monotonic() + WAIT_S
        while True:
            got = await mcp.get_task(task_id)
            polls += 1
            self.console.print(f"  tasks/get -> {got.status:<10} {got.statusMessage or ''}")
            if got.status in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                break
            await asyncio.sleep((got.pollInterval or 500) / 1000)
        result = await mcp.get_task_result(task_id, CallToolResult)
        self.console.print(f"  tasks/result -> {_text(result)}")
        text = f"{polls} tasks/get calls: working -> {got.status}; result {_text(result)!r}"
        self.report.add("polling", text, got.status == "completed")

    async def cancel(self, mcp: ExperimentalClientFeatures, store: aioredis.Redis) -> None:
        self._heading("3. Cancel mid-run: a 20 s task, cancelled once it is under way")
        bars = self.bars = Bars(self.console)
        token = "cancel-me"
        with bars.progress:
            bars.add(token, f"{TOOL}(20 s)")
            created = await mcp.call_tool_as_task(TOOL, {"seconds": 20}, meta={"progressToken": token})
            task_id = created.task.taskId
            bars.bind(token, task_id)
            at = await bars.reached(token, 5)
            # A running task's job is an entry of its shard's stream, pending under the worker
            # that runs it; the cancel removes it, and the worker stops the tool on the event.
            shard = KeySpace(self.stack.namespace, self.shards).shard_of(task_id)
            entry = _text_of(await store.hget(shard.task(task_id), "q"))
            pending = await store.xpending_range(shard.stream, GROUP, entry, entry, 1) if entry else []
            was_running = bool(pending)
            cancelled = await mcp.cancel_task(task_id)
            asked = time.monotonic()
            released = await _gone(store, shard.stream, entry)
            stopped_after = time.monotonic() - asked
        got = await mcp.get_task(task_id)
        self.console.print(
            f"tasks/cancel -> {cancelled.status}; tasks/get -> {got.status} ({got.statusMessage})"
        )
        holder = _text_of(pending[0]["consumer"]) if pending else "no worker"
        worker = (
            f"the job (held by worker {holder}) left the queue {stopped_after * 1000:.0f} ms later"
            if released
            else f"the job is still queued after {WAIT_S:g} s"
        )
        self.console.print(f"in Redis: {worker}")
        ok = cancelled.status == got.status == "cancelled" and was_running and released
        self.report.add("cancel", f"cancelled at {at:.0f}% -> status {got.status}; {worker}", ok)

    async def reconnect(self, first_id: str) -> None:
        self._heading("4. Disconnect and reconnect: a new session picks tasks up by id")
        bars = self.bars = Bars(self.console)
        token = "reconnect"
        with bars.progress:
            async with self.connect() as mcp:
                bars.add(token, f"{TOOL}(2 s)")
                created = await mcp.call_tool_as_task(TOOL, {"seconds": 2}, meta={"progressToken": token})
                task_id = created.task.taskId
                bars.bind(token, task_id)
                at = await bars.reached(token, 25)
        self.bars = None
        self.console.print(f"disconnected at {at:.0f}% from task {_short(task_id)}; the task keeps running")
        async with self.connect() as mcp:
            got = await mcp.get_task(task_id)
            self.console.print(
                f"new session: tasks/get {_short(task_id)} -> {got.status} {got.statusMessage or ''}"
            )
            result = await asyncio.wait_for(mcp.get_task_result(task_id, CallToolResult), WAIT_S)
            self.console.print(f"new session: tasks/result {_short(task_id)} -> {_text(result)}")
            again = await mcp.get_task_result(first_id, CallToolResult)
            self.console.print(
                f"new session: tasks/result {_short(first_id)} (step 1, fetched again) -> {_text(again)}"
            )
        ok = _text(result).startswith("Computed for 2") and _text(again).startswith("Computed for 3")
        text = f"new session fetched {_text(result)!r} and, again, {_text(again)!r}"
        self.report.add("reconnect", text, ok)

    async def run(self) -> Report:
        store: aioredis.Redis = cast(Any, aioredis.Redis).from_url(self.stack.redis_url)
        try:
            async with self.connect() as mcp:
                first = await self.concurrency(mcp)
                await self.polling(mcp)
                await self.cancel(mcp, store)
            await self.reconnect(first)
        finally:
            await store.aclose()
        return self.report


async def _gone(store: aioredis.Redis, stream: str, entry: str) -> bool:
    """Poll (at most WAIT_S) until the stream no longer holds ``entry``."""
    deadline = time.monotonic() + WAIT_S
    while await store.xrange(stream, entry, entry):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else "" if value is None else str(value)


def _summary(console: Console, report: Report, total: float) -> None:
    table = Table(title="Summary", title_justify="left", show_header=False, expand=False)
    table.add_column("step", style="bold", no_wrap=True)
    table.add_column("what happened")
    table.add_column("", no_wrap=True)
    for step, text, ok in report.lines:
        table.add_row(step, text, "[green]ok[/]" if ok else "[red]FAILED[/]")
    table.add_row("total", f"{total:.1f} s, stack start and stop included", "")
    console.print()
    console.print(table)


def _drop_namespace(url: str, namespace: str) -> None:
    """Delete the demo's own keys (its namespace is unique to this run); best effort."""
    with (
        contextlib.suppress(redis.exceptions.RedisError, OSError),
        contextlib.closing(cast(Any, redis.Redis).from_url(url, socket_timeout=5)) as client,
    ):
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)


def run_demo(*, redis_url: str | None = None, workers: int = 2, console: Console | None = None) -> int:
    """Run the demo; 0 when every step behaved, 1 otherwise (with the stack's log tail)."""
    if console is None:
        plain = Console()
        # A file or pipe has no width: use a wide one rather than rich's 80 columns.
        console = plain if plain.is_terminal else Console(width=120)
    namespace = f"demo-{secrets.token_hex(4)}"  # its own keys, so it never mixes with a real deployment
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mcp-tasks-demo-") as tmp:
        log = Path(tmp) / "stack.log"
        stack = DevStack(
            workers=workers,
            namespace=namespace,
            log_level="WARNING",
            log_path=log,
            redis_url=redis_url,
            say=console.print,
        )
        console.rule("[bold]mcp-tasks-redis demo", align="left")
        try:
            with stack:
                console.print(f"stack up in {time.monotonic() - started:.1f} s")
                report = asyncio.run(DemoClient(stack, console).run())
        except StackError as e:
            console.print(f"[red]error:[/] {e}")
            return 1
        except Exception as e:  # any other failure: one line and the stack's log, not a traceback
            console.print(f"[red]error:[/] the demo failed: {type(e).__name__}: {e}")
            _tail(console, log)
            return 1
        finally:
            if stack.embedded is None and stack.started:
                _drop_namespace(stack.redis_url, namespace)
        _summary(console, report, time.monotonic() - started)
        if not report.ok:
            _tail(console, log)
            return 1
    return 0


def _tail(console: Console, log: Path, lines: int = 20) -> None:
    with contextlib.suppress(OSError):
        console.print("last lines of the stack's log:\n" + "\n".join(log.read_text().splitlines()[-lines:]))
