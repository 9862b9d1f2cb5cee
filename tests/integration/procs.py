"""Start, watch and stop the product's real processes for the integration tests.

A :class:`Stack` is the set of processes of one test: server replicas over Streamable HTTP,
workers, and the parameters of a stdio server, all on one Redis and one key namespace. Each
process logs JSON lines (``MCP_TASKS_LOG_FORMAT=json``) to its own file, so a test can wait for
a line (``task <id> started``) and read its timestamp. Everything a stack started is stopped
when it closes (SIGTERM, then SIGKILL after a deadline), even when the test failed; the logs are
attached to the test report so a failure shows what every process said.

Also a pytest plugin (``pytest_plugins = ["tests.integration.procs"]``): the ``stack`` and
``engine`` fixtures (from ``stack.py``, which holds the process management), and it loads
``redis_fixtures`` unless a conftest already did.
Client helpers (:func:`http_session`, :func:`stdio_session`, :class:`Notifications`) open the
SDK's ``ClientSession`` over either transport, and the ``check_*`` scenarios are the end-to-end
checks that the Streamable HTTP and the stdio test modules both run, each through an
:data:`Opener` of its transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError
from mcp.types import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    CallToolResult,
    ElicitRequestFormParams,
    ElicitRequestParams,
    ElicitResult,
    ProgressNotification,
    ServerNotification,
    TaskStatusNotification,
    TextContent,
)

from mcp_tasks_redis.engine.engine import TaskEngine

__all__ = [
    "LogRecord",
    "Notifications",
    "Opener",
    "ProductProcess",
    "ServerProcess",
    "Stack",
    "check_cancel_from_other_replica",
    "check_disconnect",
    "check_elicitation",
    "check_error_codes",
    "check_failing_tool",
    "check_replica_reads",
    "check_three_tasks",
    "check_worker_crash",
    "free_port",
    "http_opener",
    "http_session",
    "product_command",
    "started_on",
    "stdio_opener",
    "stdio_session",
    "task_result",
    "task_status",
    "wait_for",
]

# The process management lives in stack.py (no MCP client there); re-exported, with its fixtures.
from tests.integration.stack import (
    LogRecord,
    ProductProcess,
    ServerProcess,
    Stack,
    free_port,
    product_command,
    started_on,
    wait_for,
)
from tests.integration.stack import engine as engine  # the pytest fixture, re-exported
from tests.integration.stack import stack as stack  # the pytest fixture, re-exported

# The Redis fixtures come from tests/redis_fixtures.py (see stack.py).
pytest_plugins = [] if "redis_fixtures" in sys.modules else ["tests.redis_fixtures"]


# -- clients ---------------------------------------------------------------------------------------


class Notifications:
    """Collects a session's server notifications with their arrival time (``time.time()``)."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Any]] = []
        self._changed = asyncio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ServerNotification):
            self.items.append((time.time(), message.root))
            self._changed.set()

    def progress(self, task_id: str | None = None) -> list[ProgressNotification]:
        found = [n for _, n in self.items if isinstance(n, ProgressNotification)]
        return [n for n in found if task_id is None or related_task(n) == task_id]

    def statuses(self, task_id: str | None = None) -> list[TaskStatusNotification]:
        found = [n for _, n in self.items if isinstance(n, TaskStatusNotification)]
        return [n for n in found if task_id is None or n.params.taskId == task_id]

    async def wait(self, check: Callable[[], Any], timeout_s: float, what: str = "notification") -> Any:
        """Wait until ``check()`` is truthy, waking on each notification (bounded by ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while not (value := check()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return value


def related_task(notification: ProgressNotification | TaskStatusNotification) -> str | None:
    """The ``io.modelcontextprotocol/related-task`` id a notification carries, if any."""
    meta = notification.params.meta
    extra: dict[str, Any] = meta.model_dump(by_alias=True) if meta is not None else {}
    related: dict[str, Any] = extra.get("io.modelcontextprotocol/related-task") or {}
    task_id = related.get("taskId")
    return task_id if isinstance(task_id, str) else None


@contextlib.asynccontextmanager
async def http_session(url: str, **session_options: Any) -> AsyncIterator[ClientSession]:
    """An initialized ``ClientSession`` over Streamable HTTP; closing it ends the MCP session."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        transport = streamablehttp_client(url)
    async with transport as (read, write, _), ClientSession(read, write, **session_options) as session:
        await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def stdio_session(
    params: StdioServerParameters, log_path: Path, **session_options: Any
) -> AsyncIterator[ClientSession]:
    """An initialized ``ClientSession`` over stdio; the server process lives as long as the session.

    The SDK's ``stdio_client`` (1.x) raises ``BrokenResourceError`` at exit when the server writes
    a message (here: a relayed notification) just as the session closes: its stdout reader only
    expects ``ClosedResourceError`` (modelcontextprotocol/python-sdk#1960, fix not released for
    1.x). That teardown race is the client's, not the product's, so it alone is dropped here;
    any other error, the test's own included, still propagates.
    """
    with log_path.open("a") as errlog:
        try:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write, **session_options) as session,
            ):
                await session.initialize()
                yield session
        except BaseExceptionGroup as group:
            _, rest = group.split(anyio.BrokenResourceError)
            if rest is None:
                return
            if len(rest.exceptions) == 1 and not isinstance(rest.exceptions[0], BaseExceptionGroup):
                raise rest.exceptions[0] from None
            raise rest from None


# -- scenarios both transports run ---------------------------------------------------------------

Opener = Callable[..., contextlib.AbstractAsyncContextManager[ClientSession]]
"""Opens a new client session (``**ClientSession options``) on one server replica."""


def http_opener(server: ServerProcess) -> Opener:
    """Sessions over Streamable HTTP on ``server``."""
    return functools.partial(http_session, server.url)


def stdio_opener(stack: Stack, name: str = "stdio-server") -> Opener:
    """Sessions over stdio, each on a server process of its own (a fresh replica per session)."""

    def open_session(**options: Any) -> contextlib.AbstractAsyncContextManager[ClientSession]:
        return stdio_session(stack.stdio_params(), stack.stdio_log(name), **options)

    return open_session


async def task_status(
    session: ClientSession, task_id: str, statuses: set[str], timeout_s: float = 10.0
) -> Any:
    """Poll ``tasks/get`` until the task is in one of ``statuses``; that GetTaskResult."""

    async def check() -> Any:
        got = await session.experimental.get_task(task_id)
        return got if got.status in statuses else None

    return await wait_for(
        check, timeout_s=timeout_s, interval=0.05, what=f"task {task_id} to be one of {statuses}"
    )


async def task_result(session: ClientSession, task_id: str, timeout_s: float = 30.0) -> CallToolResult:
    """``tasks/result`` (blocks until the task is terminal), bounded by ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        return await session.experimental.get_task_result(task_id, CallToolResult)


def error_code(info: pytest.ExceptionInfo[McpError]) -> int:
    return info.value.error.code


async def check_three_tasks(open_session: Opener, workers: list[ProductProcess]) -> float:
    """slow_compute 3 s, 2 s, 1 s on two one-slot workers end in about 3 s (< 5 s) with ordered
    progress ending at 100 and a terminal status notification each; returns the elapsed time."""
    assert len(workers) == 2
    notes = Notifications()
    durations = (3.0, 2.0, 1.0)
    async with open_session(message_handler=notes) as session:
        began = time.monotonic()
        ids: list[str] = []
        for seconds in durations:
            created = await session.experimental.call_tool_as_task(
                "slow_compute", {"seconds": seconds}, meta={"progressToken": f"progress-{seconds:g}"}
            )
            assert created.task.status == "working"
            ids.append(created.task.taskId)
        results = await asyncio.gather(*(task_result(session, task_id) for task_id in ids))
        elapsed = time.monotonic() - began
        await notes.wait(
            lambda: all(
                notes.statuses(t) and notes.statuses(t)[-1].params.status == "completed" for t in ids
            ),
            timeout_s=10,
            what="a completed status notification per task",
        )

    assert 2.9 <= elapsed < 5.0, f"three tasks on two workers took {elapsed:.2f} s"
    for seconds, task_id, result in zip(durations, ids, results, strict=True):
        assert not result.isError
        assert result.structuredContent == {"seconds": seconds}
        progress = notes.progress(task_id)
        values = [n.params.progress for n in progress]
        assert len(values) >= 10, values
        assert values == sorted(set(values)), f"progress out of order or repeated: {values}"
        assert values[-1] == 100
        assert {n.params.total for n in progress} == {100}
        assert {n.params.progressToken for n in progress} == {f"progress-{seconds:g}"}
        # The terminal status comes after the last progress notification of the task.
        positions = [
            i
            for i, (_, n) in enumerate(notes.items)
            if (isinstance(n, ProgressNotification) and related_task(n) == task_id)
            or (isinstance(n, TaskStatusNotification) and n.params.taskId == task_id)
        ]
        assert isinstance(notes.items[positions[-1]][1], TaskStatusNotification)

    # Both workers ran tasks, and the queued task started as soon as a slot freed up.
    starts = {t: (w.name, r.ts) for w in workers for t in ids for r in w.find_all(f"task {t} started:")}
    finishes = {t: r.ts for w in workers for t in ids for r in w.find_all(f"task {t} finished")}
    assert {name for name, _ in starts.values()} == {w.name for w in workers}, starts
    last_start = max(ts for _, ts in starts.values() if ts is not None)
    first_finish = min(ts for ts in finishes.values() if ts is not None)
    assert last_start - first_finish < 0.4, (
        f"queued task waited {last_start - first_finish:.3f} s for a free slot"
    )
    return elapsed


async def check_replica_reads(open_a: Opener, open_b: Opener) -> None:
    """A task created on replica A is visible on B at once, and B's tasks/result returns its result."""
    async with open_a() as a, open_b() as b:
        created = await a.experimental.call_tool_as_task("slow_compute", {"seconds": 1.5})
        task_id = created.task.taskId
        seen = await b.experimental.get_task(task_id)
        assert (seen.taskId, seen.status) == (task_id, "working")
        result = await task_result(b, task_id)
        assert not result.isError
        assert result.structuredContent == {"seconds": 1.5}
        assert result.meta is not None
        assert result.meta["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
        assert (await a.experimental.get_task(task_id)).status == "completed"
        assert (await b.experimental.get_task(task_id)).status == "completed"
        # The result can be fetched again, from either replica.
        again = await task_result(a, task_id)
        assert again.structuredContent == {"seconds": 1.5}


async def check_cancel_from_other_replica(
    open_a: Opener, open_b: Opener, workers: list[ProductProcess]
) -> tuple[float, float]:
    """Cancel on B of a task created on A stops the tool on its worker. Returns (request -> tool
    stopped, cancelled in Redis -> tool stopped) in seconds; the second is the worker's reaction.
    The cancel lands right after the tool started on a fresh worker, which is where a worker that
    subscribes to the task's events only after claiming it could miss the signal."""
    async with open_a() as a, open_b() as b:
        created = await a.experimental.call_tool_as_task("slow_compute", {"seconds": 30})
        task_id = created.task.taskId
        worker, _ = await started_on(workers, task_id)
        await task_status(a, task_id, {"working"})
        asked_at = time.time()
        cancelled = await b.experimental.cancel_task(task_id)
        assert cancelled.status == "cancelled"
        stop = await worker.wait_for_log(f"stopping task {task_id}", timeout_s=5)
        assert stop.msg.endswith("task cancelled"), stop.msg
        assert stop.ts is not None
        end_to_end = stop.ts - asked_at
        reaction = stop.ts - cancelled.lastUpdatedAt.timestamp()
        # The tool has returned on the worker; the task stays cancelled on every replica.
        await worker.wait_for_log(f"task {task_id} finished", timeout_s=5)
        for session in (a, b):
            got = await session.experimental.get_task(task_id)
            assert got.status == "cancelled"
            with pytest.raises(McpError) as info:
                await task_result(session, task_id)
            assert "cancelled" in info.value.error.message
        assert worker.find(f"task {task_id} progress reached 100%") is None
    # Pub/sub makes this milliseconds; ~0.5 s would mean the worker only noticed at a heartbeat.
    assert reaction < 0.4, f"worker stopped the tool {reaction:.3f} s after the cancel was stored"
    assert end_to_end < 2.0, f"cancel request -> tool stopped took {end_to_end:.3f} s"
    return end_to_end, reaction


async def check_worker_crash(
    open_session: Opener, workers: list[ProductProcess], engine: TaskEngine, lease_s: float
) -> float:
    """SIGKILL of the worker running a task: another worker re-runs it after the lease (attempt 2)
    and the client gets the result; returns kill -> restart seconds."""
    notes = Notifications()
    async with open_session(message_handler=notes) as session:
        created = await session.experimental.call_tool_as_task(
            "slow_compute", {"seconds": 2}, meta={"progressToken": "crash"}
        )
        task_id = created.task.taskId
        victim, _ = await started_on(workers, task_id, attempt=1)
        await notes.wait(
            lambda: len(notes.progress(task_id)) >= 2, timeout_s=10, what="progress from the first run"
        )
        victim.kill()
        killed_at = time.time()
        survivors = [w for w in workers if w is not victim]
        _, rerun = await started_on(survivors, task_id, attempt=2, timeout_s=lease_s + 10)
        result = await task_result(session, task_id)
        assert result.structuredContent == {"seconds": 2}
        assert (await session.experimental.get_task(task_id)).status == "completed"
        await notes.wait(
            lambda: [n for n in notes.statuses(task_id) if n.params.status == "completed"],
            timeout_s=5,
            what="a completed status notification",
        )
    # The re-run starts its progress from 0 again; the client's progress must still only go up.
    values = [n.params.progress for n in notes.progress(task_id)]
    assert values == sorted(set(values)), f"progress went backwards across the re-run: {values}"
    assert values[-1] == 100
    record = await engine.tasks.get(task_id)
    assert record is not None
    assert (record.status, record.attempt) == ("completed", 2)
    assert rerun.ts is not None
    recovery = rerun.ts - killed_at
    assert recovery < lease_s + 3, f"re-run {recovery:.2f} s after the kill (lease {lease_s:g} s)"
    return recovery


async def check_elicitation(open_session: Opener, workers: list[ProductProcess]) -> None:
    """ask_user on a worker: input_required, the request reaches the client on tasks/result with the
    related-task _meta, the answer goes back through Redis to the tool, and the task completes."""
    asked: list[ElicitRequestParams] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="accept", content={"answer": "forty-two"})

    async with open_session(elicitation_callback=answer) as session:
        created = await session.experimental.call_tool_as_task(
            "ask_user", {"question": "What is the answer?"}
        )
        task_id = created.task.taskId
        await started_on(workers, task_id)
        # No poll for input_required here: the server delivers the request on the session's
        # stream as soon as the tool asks, and the answer may come back before any poll.
        result = await task_result(session, task_id)
        assert not result.isError
        assert [c.text for c in result.content if isinstance(c, TextContent)] == ["forty-two"]
        assert (await session.experimental.get_task(task_id)).status == "completed"
    assert len(asked) == 1
    params = asked[0]
    assert params.message == "What is the answer?"
    assert isinstance(params, ElicitRequestFormParams)
    assert "answer" in params.requestedSchema["properties"]
    assert params.meta is not None
    assert params.meta.model_dump(by_alias=True)["io.modelcontextprotocol/related-task"] == {
        "taskId": task_id
    }


async def check_failing_tool(open_session: Opener) -> None:
    """A tool that raises: the task ends failed with the message, and tasks/result answers what the
    plain call answers (the 2025-11-25 spec's rule): a result with isError and the message."""
    message = "disk on fire: sector 7G"
    notes = Notifications()
    async with open_session(message_handler=notes) as session:
        plain = await session.call_tool("fail", {"message": message})
        created = await session.experimental.call_tool_as_task("fail", {"message": message})
        task_id = created.task.taskId
        failed = await task_status(session, task_id, {"failed", "completed", "cancelled"})
        assert failed.status == "failed"
        assert message in (failed.statusMessage or "")
        result = await task_result(session, task_id)
        assert result.isError is True
        assert result.content == plain.content
        assert plain.isError is True
        await notes.wait(
            lambda: [n for n in notes.statuses(task_id) if n.params.status == "failed"],
            timeout_s=5,
            what="a failed status notification",
        )


async def check_error_codes(open_session: Opener) -> None:
    """Spec error codes: -32601 for task-support mismatches, -32602 for unknown ids and for
    cancelling a terminal task; nothing is lost on the way."""
    async with open_session() as session:
        with pytest.raises(McpError) as info:
            await session.call_tool("long_report", {"seconds": 0.1})
        assert error_code(info) == METHOD_NOT_FOUND
        with pytest.raises(McpError) as info:
            await session.experimental.call_tool_as_task("greet", {"name": "Ada"})
        assert error_code(info) == METHOD_NOT_FOUND
        greeting = await session.call_tool("greet", {"name": "Ada"})
        assert [c.text for c in greeting.content if isinstance(c, TextContent)] == ["Hello, Ada!"]

        unknown = "no-such-task-" + os.urandom(8).hex()
        asks: list[Callable[[str], Awaitable[Any]]] = [
            session.experimental.get_task,
            session.experimental.cancel_task,
            functools.partial(task_result, session),
        ]
        for ask in asks:
            with pytest.raises(McpError) as info:
                await ask(unknown)
            assert error_code(info) == INVALID_PARAMS

        created = await session.experimental.call_tool_as_task("slow_compute", {"seconds": 0})
        task_id = created.task.taskId
        done = await task_result(session, task_id)
        assert done.structuredContent == {"seconds": 0}
        with pytest.raises(McpError) as info:
            await session.experimental.cancel_task(task_id)
        assert error_code(info) == INVALID_PARAMS
        assert (await session.experimental.get_task(task_id)).status == "completed"


async def check_disconnect(open_a: Opener, open_b: Opener, workers: list[ProductProcess]) -> None:
    """A client that goes away does not cancel its task; a new session (on B) fetches the result."""
    async with open_a() as a:
        created = await a.experimental.call_tool_as_task("slow_compute", {"seconds": 3})
        task_id = created.task.taskId
        worker, _ = await started_on(workers, task_id)
    async with open_b() as b:
        # Still running, or finished while B's session was being opened: never cancelled.
        assert (await b.experimental.get_task(task_id)).status in ("working", "completed")
        result = await task_result(b, task_id)
        assert result.structuredContent == {"seconds": 3}
    await worker.wait_for_log(f"task {task_id} finished", timeout_s=5)
    # (A worker logs "stopping task <id>: task completed" when its own tool finished: not a cancel.)
    assert worker.find(f"stopping task {task_id}: task cancelled") is None
