"""A 2025-11-25 client (the `mcp` 1.x SDK) gets tasks from a server running on `mcp` 2.x.

The 2.x SDK still negotiates 2025-11-25 with a handshake client, and the product serves it that
wire's tasks (``mcp_tasks_redis.mcp_v2.legacy``) over the same engine and workers. This module
runs in the 1.x environment and starts the server from the 2.x one: ``MCP_TASKS_V2_COMMAND``, or
``.venv2/bin/mcp-tasks-redis`` of this checkout (``make venv2``); without either it is skipped.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.integration.procs")

from mcp.shared.exceptions import McpError  # noqa: E402
from mcp.types import INVALID_PARAMS, METHOD_NOT_FOUND, CallToolResult, ElicitResult, TextContent  # noqa: E402

from tests.integration.procs import Notifications, Stack, http_session, started_on, task_status  # noqa: E402

pytest_plugins = ["tests.integration.procs"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
V2_BIN = ROOT / ".venv2/bin/mcp-tasks-redis"
V2_COMMAND = shlex.split(os.environ.get("MCP_TASKS_V2_COMMAND", "")) or (
    [str(V2_BIN)] if V2_BIN.exists() else []
)


def texts(result: CallToolResult) -> list[str]:
    return [c.text for c in result.content if isinstance(c, TextContent)]


async def test_a_1x_client_runs_tasks_on_a_2x_server(stack: Stack) -> None:
    if not V2_COMMAND:
        pytest.skip("no mcp 2.x environment: run `make venv2` or set MCP_TASKS_V2_COMMAND")
    stack.configure(app="workers.conformance:app")
    server, worker = await asyncio.gather(stack.start_server(command=V2_COMMAND), stack.start_worker())
    asked: list[Any] = []

    async def answer(context: Any, params: Any) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action="accept", content={"confirm": True, "name": "Bob"})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        async with http_session(server.url, elicitation_callback=answer) as session:
            assert session.get_server_capabilities() is not None
            capabilities = session.get_server_capabilities()
            assert capabilities is not None
            assert capabilities.tasks is not None
            assert capabilities.tasks.requests is not None
            assert capabilities.tasks.list is None
            listed = {
                t.name: t.execution.taskSupport for t in (await session.list_tools()).tools if t.execution
            }
            assert listed["greet"] == "forbidden"
            assert listed["failing_job"] == "required"

            created = await session.experimental.call_tool_as_task(
                "slow_compute", {"seconds": 0.5}, ttl=60_000
            )
            assert (created.task.status, created.task.ttl) == ("working", 60_000)
            await started_on([worker], created.task.taskId)
            result = await session.experimental.get_task_result(created.task.taskId, CallToolResult)
            assert texts(result) == ["Computed result in 0.5 s"]
            assert result.meta == {"io.modelcontextprotocol/related-task": {"taskId": created.task.taskId}}
            with pytest.raises(McpError) as info:
                await session.experimental.cancel_task(created.task.taskId)
            assert info.value.error.code == INVALID_PARAMS

            # Input mid-task reaches the client on tasks/result, tagged with its task.
            confirm = await session.experimental.call_tool_as_task("confirm_delete", {"filename": "f.txt"})
            result = await session.experimental.get_task_result(confirm.task.taskId, CallToolResult)
            assert texts(result) == ["Deleted f.txt"]
            assert asked[-1].meta.model_dump(by_alias=True)["io.modelcontextprotocol/related-task"] == {
                "taskId": confirm.task.taskId
            }
            # A prepare step asks on the call itself, before the task exists.
            prepared = await session.experimental.call_tool_as_task("test_tool_with_task", {})
            result = await session.experimental.get_task_result(prepared.task.taskId, CallToolResult)
            assert "Hello, Bob!" in texts(result)[0]
            assert [p.message for p in asked] == ["Delete f.txt?", "What is your name?"]

            # This wire calls a tool error failed; a task-only tool cannot be called plainly.
            failing = await session.experimental.call_tool_as_task("failing_job", {})
            result = await session.experimental.get_task_result(failing.task.taskId, CallToolResult)
            assert result.isError is True
            assert (await session.experimental.get_task(failing.task.taskId)).status == "failed"
            with pytest.raises(McpError) as info:
                await session.call_tool("failing_job", {})
            assert info.value.error.code == METHOD_NOT_FOUND
            with pytest.raises(McpError) as info:
                await session.experimental.call_tool_as_task("greet", {"name": "x"})
            assert info.value.error.code == METHOD_NOT_FOUND


async def test_a_1x_client_hears_its_tasks_on_the_session_stream_of_a_2x_server(stack: Stack) -> None:
    """As on the 1.x wire: status (and statusMessage) changes as notifications/tasks/status,
    progress for a call that sent a progressToken, and input requests delivered on the session's
    stream to a client that only polls tasks/get (it calls tasks/result once the task ended)."""
    if not V2_COMMAND:
        pytest.skip("no mcp 2.x environment: run `make venv2` or set MCP_TASKS_V2_COMMAND")
    stack.configure(app="workers.conformance:app")
    server, worker = await asyncio.gather(stack.start_server(command=V2_COMMAND), stack.start_worker())
    notes = Notifications()

    async def answer(context: Any, params: Any) -> ElicitResult:
        return ElicitResult(action="accept", content={"confirm": True})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        async with http_session(server.url, elicitation_callback=answer, message_handler=notes) as session:
            created = await session.experimental.call_tool_as_task(
                "slow_compute", {"seconds": 1}, meta={"progressToken": "p-1"}
            )
            task_id = created.task.taskId
            await notes.wait(
                lambda: [n for n in notes.statuses(task_id) if n.params.status == "completed"],
                timeout_s=10,
                what="the completed status notification",
            )
            working = [n for n in notes.statuses(task_id) if n.params.status == "working"]
            messages = [n.params.statusMessage for n in working]
            assert len(set(messages)) >= 3, messages
            assert all(m and m.startswith("computing: step") for m in messages), messages
            values = [n.params.progress for n in notes.progress(task_id)]
            assert values == sorted(set(values)), values
            assert values[-1] == 100
            assert {n.params.progressToken for n in notes.progress(task_id)} == {"p-1"}

            confirm = await session.experimental.call_tool_as_task("confirm_delete", {"filename": "f.txt"})
            confirm_id = confirm.task.taskId
            await task_status(session, confirm_id, {"completed", "failed", "cancelled"}, timeout_s=10)
            result = await session.experimental.get_task_result(confirm_id, CallToolResult)
            assert texts(result) == ["Deleted f.txt"]
    await started_on([worker], confirm_id)
