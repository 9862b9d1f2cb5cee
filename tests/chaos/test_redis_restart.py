"""Redis (append-only file on) is stopped and started again mid-run, on the same port and data.

A server replica and two workers run on it; a client has tasks running on the workers and more
waiting in the queue when Redis goes away. Nobody is restarted: the server and the workers must
reconnect by themselves, every running task must finish (its worker keeps it, or another re-runs
it), every queued job must still be delivered, and the client must get every result - including a
`tasks/result` that was already waiting when Redis went down.

    .venv/bin/pytest tests/chaos/test_redis_restart.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.integration.procs")

from mcp.shared.exceptions import McpError  # noqa: E402
from mcp.types import INTERNAL_ERROR, CallToolResult  # noqa: E402
from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from mcp_tasks_redis.engine.errors import RedisUnavailable  # noqa: E402
from mcp_tasks_redis.engine.keyed import KeyedDispatch  # noqa: E402
from mcp_tasks_redis.engine.keys import GROUP  # noqa: E402
from mcp_tasks_redis.engine.record import TaskRecord  # noqa: E402
from mcp_tasks_redis.ops.embedded import EmbeddedRedis  # noqa: E402
from tests.integration.procs import Notifications, Stack, http_session, started_on, wait_for  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

RUNNING = 6  # two workers x three slots
QUEUED = 6
TASK_S = 3.0
LEASE_MS = 4000


def dispatcher_for(namespace: str) -> KeyedDispatch | None:
    """The dispatcher the processes use (MCP_TASKS_TEST_DISPATCHER), for tasks this test creates."""
    if os.environ.get("MCP_TASKS_TEST_DISPATCHER") != "arq":
        return None
    from mcp_tasks_redis.arq_dispatch import ArqDispatch

    return ArqDispatch.for_namespace(namespace)


async def read_records(engine: TaskEngine, ids: list[str]) -> list[TaskRecord | None]:
    """The tasks, read by the test's own engine, whose pooled connections died with Redis: a
    command on one fails once (redis-py 8 does not retry it), the next one reconnects."""
    for _ in range(3):
        with contextlib.suppress(RedisUnavailable):
            return [await engine.tasks.get(t) for t in ids]
    return [await engine.tasks.get(t) for t in ids]


async def queued_jobs(engine: TaskEngine) -> int:
    """Jobs delivered to no worker yet: stream entries not pending, or (arq) queued jobs that hold
    no in-progress key (arq keeps a running job in its queue until it ends)."""
    if os.environ.get("MCP_TASKS_TEST_DISPATCHER") == "arq":
        from mcp_tasks_redis.arq_dispatch import queue_name_for

        members = await engine.redis.zrange(queue_name_for(engine.keys.namespace), 0, -1)
        running = [await engine.redis.exists(b"arq:in-progress:" + member) for member in members]
        return len(members) - sum(running)
    queued = 0
    for shard in engine.keys.all_shards:
        for stream in shard.streams:
            pending = await engine.redis.xpending(stream, GROUP)
            queued += await engine.redis.xlen(stream) - int(pending["pending"])
    return queued


@pytest.fixture
def aof_redis() -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone, with append-only persistence, restartable in place."""
    with EmbeddedRedis(prefer="redis-server", appendonly=True) as embedded:
        yield embedded


@pytest.mark.parametrize("outage_s", [0.0, 2.0], ids=["restart", "down-2s"])
async def test_redis_restart_loses_no_task_and_no_queued_job(
    aof_redis: EmbeddedRedis, tmp_path: Path, request: pytest.FixtureRequest, outage_s: float
) -> None:
    """``restart``: stopped (SIGTERM) and started at once; ``down-2s``: shut down (SHUTDOWN, the AOF
    is written) and started again 2 s later, so every process hits refused connections for a
    while: pub/sub, the workers' blocked XREADGROUP, lease renewals and the reaper, progress
    writes and a waiting tasks/result."""
    namespace = f"restart-{uuid.uuid4().hex[:8]}"
    stack = Stack(aof_redis.url, namespace, tmp_path, lease_ms=LEASE_MS, poll_interval_ms=250)
    engine = TaskEngine.from_url(aof_redis.url, namespace=namespace)
    try:
        server, idle, *workers = await asyncio.gather(
            stack.start_server(),
            # A worker with free slots blocks on its (empty) streams all through the outage.
            stack.start_worker("idle-worker", concurrency=2, namespace=f"{namespace}-idle"),
            stack.start_worker("worker-1", concurrency=3),
            stack.start_worker("worker-2", concurrency=3),
        )
        notes = Notifications()
        async with http_session(server.url, message_handler=notes) as session:
            ids = [
                (
                    await session.experimental.call_tool_as_task("slow_compute", {"seconds": TASK_S})
                ).task.taskId
                for _ in range(RUNNING + QUEUED)
            ]
            running = ids[:RUNNING]
            for task_id in running:
                await started_on(workers, task_id, timeout_s=10)
            if os.environ.get("MCP_TASKS_TEST_DISPATCHER") == "arq":
                # The jobs not yet claimed wait in the queue.
                assert await queued_jobs(engine) == QUEUED
            else:
                # A delivered job stays in its stream as a pending entry of the workers' group
                # (the entry is its lease); the rest wait there, not yet delivered to anyone.
                assert await jobs_in_stream(engine) == (QUEUED, RUNNING)
            # A client is already waiting on a result when Redis goes away.
            waiting = asyncio.create_task(session.experimental.get_task_result(ids[-1], CallToolResult))
            await asyncio.sleep(0.5)

            down_at = time.monotonic()
            if outage_s:
                with contextlib.suppress(RedisConnectionError):
                    await engine.redis.shutdown()
                # While Redis is away, a request that needs it gets a clear internal error.
                with pytest.raises(McpError) as info:
                    await session.experimental.get_task(ids[0])
                assert info.value.error.code == INTERNAL_ERROR, info.value.error
                assert "unreachable" in info.value.error.message
                await asyncio.sleep(outage_s)
            await asyncio.to_thread(aof_redis.restart)
            downtime = time.monotonic() - down_at
            # Only this test's observer client is replaced: its one pooled connection died with the
            # old server, and a redis-py 8 client made by `from_url` retries nothing, so its next
            # command would fail once. The product's processes keep theirs.
            await engine.close()
            engine = TaskEngine.from_url(aof_redis.url, namespace=namespace)

            results: dict[str, CallToolResult] = {}
            for task_id in ids[:-1]:
                results[task_id] = await asyncio.wait_for(get_result_retrying(session, task_id), timeout=60)
            results[ids[-1]] = await asyncio.wait_for(waiting, timeout=60)
            # The relay of each task's events to this session outlived the outage too.
            await notes.wait(
                lambda: all(any(n.params.status == "completed" for n in notes.statuses(t)) for t in ids),
                timeout_s=10,
                what="a completed status notification for every task",
            )

        if os.environ.get("MCP_TASKS_TEST_DISPATCHER") != "arq":
            # Every job was delivered and acknowledged: none is left queued or pending.
            await wait_for(
                lambda: _nothing_left(engine), timeout_s=10, what="every job to be acknowledged and deleted"
            )
        records = await read_records(engine, ids)
        assert all(r is not None for r in records), "a task was lost with the restart"
        statuses = [r.status.value for r in records if r is not None]
        reruns = sum(max(r.attempt - 1, 0) for r in records if r is not None)
        assert statuses == ["completed"] * len(ids), [
            (r.task_id, r.status.value, r.status_message) for r in records if r is not None
        ]
        for task_id, result in results.items():
            assert not result.isError, (task_id, result)
            assert result.structuredContent == {"seconds": TASK_S}
        for worker in [*workers, idle]:
            assert worker.alive, f"{worker.name} exited:\n{worker.tail()}"
        assert server.alive, server.tail()
        # Service is back: a new task runs end to end on the same processes.
        async with http_session(server.url) as session:
            created = await session.experimental.call_tool_as_task("slow_compute", {"seconds": 0.1})
            again = await session.experimental.get_task_result(created.task.taskId, CallToolResult)
            assert again.structuredContent == {"seconds": 0.1}
        idle_engine = TaskEngine.from_url(
            aof_redis.url, namespace=f"{namespace}-idle", dispatcher=dispatcher_for(f"{namespace}-idle")
        )
        try:
            job = await idle_engine.tasks.create(tool="slow_compute", arguments={"seconds": 0}, dispatch=True)
            done = await idle_engine.wait_until(job.task_id, lambda r: r is None or r.is_terminal, timeout=10)
            assert done is not None
            assert done.status.value == "completed"
        finally:
            await idle_engine.close()
        print(
            f"\nredis {request.node.callspec.id}: {len(ids)} tasks ({RUNNING} running, {QUEUED} queued), "
            f"Redis away {downtime:.2f} s; completed {statuses.count('completed')}, "
            f"re-runs {reruns}, lost 0, results {len(results)}/{len(ids)}"
        )
    finally:
        stack.close()
        request.node.add_report_section("teardown", "product logs", stack.report())
        await engine.close()


async def jobs_in_stream(engine: TaskEngine) -> tuple[int, int]:
    """(queued, delivered) jobs of the namespace's one shard: entries not yet delivered to a
    worker, and entries pending in the workers' group (running, or finished but not yet
    acknowledged)."""
    [shard] = engine.keys.all_shards
    total = delivered = 0
    for stream in shard.streams:
        total += await engine.redis.xlen(stream)
        delivered += (await engine.redis.xpending(stream, GROUP))["pending"]
    return total - delivered, delivered


async def _nothing_left(engine: TaskEngine) -> bool:
    return await jobs_in_stream(engine) == (0, 0)


async def get_result_retrying(session: object, task_id: str) -> CallToolResult:
    """tasks/result; while Redis is still coming back the server may answer an error, and a client
    simply asks again (the task and its result are not lost)."""
    from mcp import ClientSession

    assert isinstance(session, ClientSession)

    async def attempt() -> CallToolResult | None:
        try:
            return await session.experimental.get_task_result(task_id, CallToolResult)
        except McpError as e:
            if "unreachable" in e.error.message:
                return None
            raise

    result: CallToolResult = await wait_for(attempt, timeout_s=30, interval=0.2, what=f"result of {task_id}")
    return result
