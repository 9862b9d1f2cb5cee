"""Through the MCP server (2025-11-25 wire, mcp 1.x): a server replica configured with
``MCP_TASKS_DISPATCHER=arq`` enqueues task calls as arq jobs, and an arq worker process runs them;
the client sees the same tasks it sees with the streams dispatcher.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

pytest.importorskip("arq", reason='the arq dispatcher needs the [arq] extra: pip install ".[arq]"')

from mcp.types import TextContent

from mcp_tasks_redis.engine.engine import TaskEngine
from tests.arq_dispatch.test_arq_worker_process import JOB_TIMEOUT_S, assert_arq_clean, cli_worker
from tests.integration.procs import http_session, task_result, task_status
from tests.integration.stack import Stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    # mcp 1.x marks its experimental tasks client API deprecated
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture
def stack(request: pytest.FixtureRequest, redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Stack]:
    processes = Stack(redis_url, namespace, tmp_path, dispatcher="arq", arq_job_timeout_s=str(JOB_TIMEOUT_S))
    try:
        yield processes
    finally:
        processes.close()
        request.node.add_report_section("teardown", "product logs", processes.report())


async def test_task_calls_through_the_mcp_server_run_on_an_arq_worker(
    stack: Stack, redis: aioredis.Redis, namespace: str
) -> None:
    server = await stack.start_server(app="tests.arq_dispatch.arq_app:app")
    cli_worker(stack, "arq-worker", hold=True)
    async with http_session(server.url) as session:
        created = await session.experimental.call_tool_as_task("echo", {"text": "over MCP"})
        assert created.task.status == "working"
        result = await task_result(session, created.task.taskId)
        assert not result.isError
        assert result.content == [TextContent(type="text", text="echo: over MCP")]
        assert (await session.experimental.get_task(created.task.taskId)).status == "completed"

        held = await session.experimental.call_tool_as_task("hold", {})
        await task_status(session, held.task.taskId, {"working"})
        cancelled = await session.experimental.cancel_task(held.task.taskId)
        assert cancelled.status == "cancelled"
        assert (await session.experimental.get_task(held.task.taskId)).status == "cancelled"
    # arq ends the stopped job after the cancel; its queue is then empty and gone.
    engine = TaskEngine(redis, namespace=namespace)
    await assert_arq_clean(redis, engine, [created.task.taskId, held.task.taskId])
    await engine.close()
