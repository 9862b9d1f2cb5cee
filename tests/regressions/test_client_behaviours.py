"""What real MCP clients found (issue 9), with the SDK 1.x client against real processes.

Each test drives the product as a client would and holds on any engine underneath: each failed
on 8c401a3 (before the Streams engine), as the issue describes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import McpError
from mcp.types import (
    INTERNAL_ERROR,
    ElicitRequestParams,
    ElicitResult,
    TaskStatusNotification,
    TextContent,
)

from tests.integration.procs import Notifications, Stack, http_session, started_on, task_result, task_status

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.integration.procs"]

ROOT = str(Path(__file__).resolve().parents[2])


def text_of(result: Any) -> list[str]:
    return [c.text for c in result.content if isinstance(c, TextContent)]


@pytest.fixture
def regressions_app(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("PYTHONPATH", ROOT)
    stack.configure(app="tests.regressions.apps:app")
    return stack


async def test_a_task_call_takes_arguments_that_validate_into_non_json_values(regressions_app: Stack) -> None:
    """datetime, UUID, Decimal, Path, sets and models: the task stores what the client sent."""
    server, worker = await asyncio.gather(regressions_app.start_server(), regressions_app.start_worker())
    arguments = {
        "at": "2026-11-29T10:00:00+00:00",
        "ids": ["5a1c3a4e-0f5b-4c86-9a57-3c9a4f0e2b11"],
        "amount": "12.50",
        "path": "/tmp/a/b.txt",
        "item": {"name": "bolt", "qty": 3},
    }
    async with http_session(server.url) as session:
        plain = await session.call_tool("describe", arguments)
        created = await session.experimental.call_tool_as_task("describe", arguments)
        await started_on([worker], created.task.taskId)
        result = await task_result(session, created.task.taskId)
    assert not plain.isError
    assert not result.isError
    assert text_of(result) == text_of(plain)
    assert "['datetime', 'UUID', 'Decimal', 'PosixPath']" in text_of(result)[0]


async def test_input_is_never_requested_from_a_client_that_cannot_answer_it(regressions_app: Stack) -> None:
    """A client without the elicitation capability: the tool gets the refusal a plain call gets,
    at once, instead of a task waiting for an answer that cannot come."""
    server, _ = await asyncio.gather(regressions_app.start_server(), regressions_app.start_worker())
    async with http_session(server.url) as session:  # no elicitation callback: not declared
        with pytest.raises(McpError) as plain:
            await session.call_tool("ask", {"question": "Name?"})
        created = await session.experimental.call_tool_as_task("ask", {"question": "Name?"})
        with pytest.raises(McpError) as as_task:
            await task_result(session, created.task.taskId, timeout_s=10)
    assert plain.value.error.message == as_task.value.error.message == "Elicitation not supported"
    assert plain.value.error.code == as_task.value.error.code


async def test_an_input_request_nobody_answers_ends_the_task_and_frees_its_slot(
    regressions_app: Stack,
) -> None:
    """The client that could answer went away: at the task's TTL the task fails, saying why, and
    the worker's slot runs the next task."""
    regressions_app.configure(min_ttl_ms=100)
    server, worker = await asyncio.gather(
        regressions_app.start_server(), regressions_app.start_worker(concurrency=1)
    )

    asked = asyncio.Event()

    async def walk_away(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.set()
        await anyio.sleep_forever()  # the user closes the laptop: no answer ever comes
        raise AssertionError("unreachable")

    async with http_session(server.url, elicitation_callback=walk_away) as session:
        created = await session.experimental.call_tool_as_task("ask", {"question": "Still there?"}, ttl=2_000)
        task_id = created.task.taskId
        await started_on([worker], task_id)
        await asyncio.wait_for(asked.wait(), 10)
    # A new session that cannot answer watches the task run out of time.
    async with http_session(server.url) as watcher:
        failed = await task_status(watcher, task_id, {"failed", "completed", "cancelled"}, timeout_s=15)
        assert failed.status == "failed"
        assert "No answer to the input request within" in (failed.statusMessage or "")
        after = await watcher.experimental.call_tool_as_task("noop", {})
        assert text_of(await task_result(watcher, after.task.taskId, timeout_s=10)) == ["ok"]


async def test_a_client_that_only_polls_tasks_get_receives_the_input_request(regressions_app: Stack) -> None:
    """Clients such as FastMCP 3's and the Inspector poll tasks/get and never call tasks/result:
    the request reaches them on the session's stream (the 2025-11-25 spec allows any stream)."""
    server, _ = await asyncio.gather(regressions_app.start_server(), regressions_app.start_worker())

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content={"answer": "Ada"})

    async with http_session(server.url, elicitation_callback=answer) as session:
        created = await session.experimental.call_tool_as_task("ask", {"question": "Name?"})
        task_id = created.task.taskId
        await task_status(session, task_id, {"completed"}, timeout_s=10)
        assert text_of(await task_result(session, task_id)) == ["Ada"]


async def test_status_message_changes_reach_clients_that_show_only_status(stack: Stack) -> None:
    """A client that sent no progressToken still sees the task's progress, as the statusMessage of
    notifications/tasks/status (throttled like progress)."""
    server, _ = await asyncio.gather(stack.start_server(), stack.start_worker())
    notes = Notifications()
    async with http_session(server.url, message_handler=notes) as session:
        created = await session.experimental.call_tool_as_task("slow_compute", {"seconds": 1})
        task_id = created.task.taskId
        await task_result(session, task_id)
        await notes.wait(
            lambda: [n for n in notes.statuses(task_id) if n.params.status == "completed"],
            timeout_s=5,
            what="the completed status notification",
        )
    working: list[TaskStatusNotification] = [
        n for n in notes.statuses(task_id) if n.params.status == "working"
    ]
    messages = [n.params.statusMessage for n in working]
    assert len(set(messages)) >= 5, messages
    assert all(m and m.startswith("computing: step") for m in messages), messages


async def test_a_redis_outage_during_a_task_call_is_an_internal_error(stack: Stack, tmp_path: Path) -> None:
    """Not -32602 (invalid params): clients take that for their own mistake and do not retry."""
    from mcp_tasks_redis.ops.embedded import EmbeddedRedis

    with EmbeddedRedis("redis-server" if os.environ.get("MCP_TASKS_TEST_NO_REDIS") != "1" else "auto") as own:
        outage = Stack(own.url, stack.namespace, tmp_path)
        try:
            server = await outage.start_server()
            async with http_session(server.url) as session:
                own.stop()
                with pytest.raises(McpError) as info:
                    await session.experimental.call_tool_as_task("slow_compute", {"seconds": 1})
                assert info.value.error.code == INTERNAL_ERROR
                assert "unreachable" in info.value.error.message
        finally:
            outage.close()
