"""The engine's metrics with a worker in this process, on the real Redis: what a reaper finds,
quota refusals, Redis outages, queue depths, label bounds, resource use as exported, and the
worker's metrics endpoint. Each test builds its own engine, so each sees only its own counts.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import generate_latest

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import QuotaExceeded, RedisUnavailable
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.record import TaskStatus
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.runtime.backend import RedisTaskBackend
from mcp_tasks_redis.engine.runtime.execution import RunningTask, RunResult, ToolRunner
from mcp_tasks_redis.engine.runtime.worker import Worker
from mcp_tasks_redis.engine.streams import StreamDispatch
from mcp_tasks_redis.engine.tasks import now_ms
from mcp_tasks_redis.engine.telemetry.metrics import OTHER, Metrics
from mcp_tasks_redis.engine.telemetry.queues import QueueSnapshot, read_queues
from mcp_tasks_redis.ops.metrics_endpoint import serve_metrics
from tests.observability.inproc import Running, finished, scrape
from tests.observability.workload import Scrape

Engines = Callable[..., TaskEngine]


@pytest.fixture
async def engines(redis: aioredis.Redis, namespace: str) -> AsyncIterator[Engines]:
    made: list[TaskEngine] = []

    def make(shards: int = 1, **limits: Any) -> TaskEngine:
        engine = TaskEngine(
            redis, namespace=namespace, shards=shards, limits=TaskLimits(recheck_ms=200, **limits)
        )
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


def quick_app() -> ToolRegistry:
    app = ToolRegistry("quick")

    @app.tool
    async def ok() -> str:
        return "ok"

    return app


async def test_a_reaper_counts_expired_leases_re_runs_and_the_tasks_whose_runs_ran_out(
    engines: Engines,
) -> None:
    engine = engines(lease_ms=300)
    again = await engine.tasks.create(tool="ok", dispatch=True, meta={"attempts": 3})
    spent = await engine.tasks.create(tool="ok", dispatch=True, meta={"attempts": 1})
    # A worker that takes both jobs and dies: it never renews, acknowledges or finishes them.
    dead = StreamDispatch(engine.conn, "dead-worker")
    await dead.ensure_groups()
    assert len(await dead.read(engine.keys.all_shards[0], 10, None)) == 2
    async with Running(engine, quick_app()):
        rerun, failed = await finished(engine, again.task_id), await finished(engine, spent.task_id)
    assert (rerun.status, rerun.attempt, failed.status) == (TaskStatus.COMPLETED, 2, TaskStatus.FAILED)
    seen = await scrape(engine)
    assert seen.value("mcp_tasks_lease_expiries_total", tool="ok") == 2
    assert seen.value("mcp_tasks_reruns_total", tool="ok") == 1
    assert seen.series("mcp_tasks_finished_total", "tool", "status") == {
        ("ok", "completed"): 1,
        ("ok", "failed"): 1,
        ("ok", "tool_error"): 0,
    }
    assert seen.value("mcp_tasks_run_seconds_count", tool="ok") == 1  # the re-run; the dead one never ended


async def test_a_job_nobody_took_before_its_ttl_counts_as_failed_without_a_run(engines: Engines) -> None:
    engine = engines(min_ttl_ms=100, lease_ms=300)
    app, release = ToolRegistry("busy"), asyncio.Event()

    @app.tool
    async def block() -> str:
        await release.wait()
        return "released"

    @app.tool
    async def ok() -> str:
        return "ok"

    async with Running(engine, app, concurrency=1):
        blocker = await engine.tasks.create(tool="block", dispatch=True)
        await engine.wait_until(
            blocker.task_id, lambda r: r is not None and r.entry_id is not None, timeout=5
        )
        late = await engine.tasks.create(tool="ok", dispatch=True, ttl_ms=100)
        expired = await finished(engine, late.task_id)
        release.set()
        await finished(engine, blocker.task_id)
    assert expired.status is TaskStatus.FAILED
    seen = await scrape(engine)
    assert seen.value("mcp_tasks_finished_total", tool="ok", status="failed") == 1
    assert seen.value("mcp_tasks_finished_total", tool="block", status="completed") == 1
    assert seen.value("mcp_tasks_run_seconds_count", tool="ok") is None
    assert seen.value("mcp_tasks_lease_expiries_total", tool="ok") == 0


async def test_quota_refusals_are_counted_by_tool_and_reason_and_refused_calls_are_not_created(
    engines: Engines,
) -> None:
    rate = engines(owner_rate=1)
    await rate.tasks.create(tool="ok", owner="alice", dispatch=True)
    with pytest.raises(QuotaExceeded):
        await rate.tasks.create(tool="ok", owner="alice", dispatch=True)
    queue = engines(owner_max_running=1, owner_max_queued=1)
    for _ in range(2):  # one admitted, one waits in bob's queue
        await queue.tasks.create(tool="ok", owner="bob", dispatch=True, priority=0)
    with pytest.raises(QuotaExceeded):
        await queue.tasks.create(tool="ok", owner="bob", dispatch=True, priority=0)
    by_rate, by_queue = await scrape(rate), await scrape(queue)
    assert by_rate.series("mcp_tasks_quota_refusals_total", "tool", "reason") == {("ok", "rate"): 1}
    assert by_rate.series("mcp_tasks_created_total", "tool", "priority") == {("ok", "normal"): 1}
    assert by_queue.series("mcp_tasks_quota_refusals_total", "tool", "reason") == {("ok", "queue"): 1}
    assert by_queue.series("mcp_tasks_created_total", "tool", "priority") == {("ok", "high"): 2}
    assert by_queue.value("mcp_tasks_quota_owners_waiting") == 1


async def test_redis_out_of_reach_is_counted_by_operation_and_the_queue_depths_go_missing(
    namespace: str,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = TaskEngine.from_url(f"redis://127.0.0.1:{port}/0", namespace=namespace)
    try:
        with pytest.raises(RedisUnavailable):
            await engine.tasks.get("some-task")
        with pytest.raises(RedisUnavailable):
            await engine.tasks.create(tool="ok", dispatch=True)
        seen = await scrape(engine)
    finally:
        await engine.close()
    assert seen.series("mcp_tasks_redis_errors_total", "operation") == {
        ("hgetall",): 1,
        ("create",): 1,
        ("sample_queues",): 1,
    }
    assert seen.series("mcp_tasks_queue_waiting", "priority") == {}  # no stale value either
    assert seen.value("mcp_tasks_created_total", tool="ok", priority="normal") is None


async def test_queue_depths_add_up_every_shard_by_level_at_each_scrape(engines: Engines) -> None:
    engine = engines(shards=2)
    ids = [
        (await engine.tasks.create(tool="ok", dispatch=True, priority=level)).task_id
        for level in (0, 0, 1, 1, 1, 1, 2)
    ]
    first = await scrape(engine)
    assert first.series("mcp_tasks_queue_waiting", "priority") == {("high",): 2, ("normal",): 4, ("low",): 1}
    # A consumer takes the normal jobs; one of them goes back to wait out a retry backoff.
    taker = StreamDispatch(engine.conn, "taker")
    await taker.ensure_groups()
    taken = [
        d for shard in engine.keys.all_shards for d in await taker.read(shard, 10, None, (shard.streams[1],))
    ]
    assert len(taken) == 4
    assert await taker.requeue(taken[0], "retry", due_ms=now_ms() + 60_000, max_attempts=3) == "delayed"
    second = await scrape(engine)
    assert second.series("mcp_tasks_queue_waiting", "priority") == {("high",): 2, ("normal",): 0, ("low",): 1}
    assert second.series("mcp_tasks_queue_delivered", "priority") == {
        ("high",): 0,
        ("normal",): 3,
        ("low",): 0,
    }
    assert second.value("mcp_tasks_queue_retry_backoff") == 1
    # What an admin command can show: the same numbers, read the same way.
    assert await read_queues(engine.conn) == QueueSnapshot(
        waiting={"high": 2, "normal": 0, "low": 1},
        delivered={"high": 0, "normal": 3, "low": 0},
        retry_backoff=1,
        owners_waiting=0,
    )
    for task_id in ids:
        await engine.tasks.delete(task_id)


async def test_a_runs_resource_use_is_exported_as_it_is_stored(engines: Engines) -> None:
    engine = engines()
    app = ToolRegistry("usage")

    @app.tool
    def crunch(n: int) -> int:
        return sum(i * i for i in range(n))

    async with Running(engine, app):
        task = await engine.tasks.create(tool="crunch", arguments={"n": 200_000}, dispatch=True)
        await finished(engine, task.task_id)
    stored = await engine.tasks.get(task.task_id)
    assert stored is not None
    assert stored.usage is not None
    seen = await scrape(engine)
    usage = stored.usage
    assert seen.value("mcp_tasks_tool_cpu_seconds_total", tool="crunch") == pytest.approx(
        usage["cpu_ms"] / 1000
    )
    assert seen.value("mcp_tasks_queue_wait_seconds_sum", tool="crunch") == pytest.approx(
        usage["wait_ms"] / 1000
    )
    assert seen.value("mcp_tasks_run_seconds_sum", tool="crunch") == pytest.approx(usage["run_ms"] / 1000)
    assert usage["cpu_ms"] > 0


def test_tool_labels_are_the_registrys_names_and_nothing_else() -> None:
    declared = Metrics(process_collectors=False)
    declared.declare_tools(["alpha", "beta"], "worker")
    assert [declared.tool(n) for n in ("alpha", "beta", "task-123", None)] == ["alpha", "beta", OTHER, "none"]
    undeclared = Metrics(process_collectors=False)
    names = [undeclared.tool(f"tool-{i}") for i in range(150)]
    assert names[:100] == [f"tool-{i}" for i in range(100)]
    assert set(names[100:]) == {OTHER}
    assert undeclared.tool("tool-7") == "tool-7"


def test_each_engine_has_a_registry_of_its_own() -> None:
    one, two = Metrics(process_collectors=False), Metrics(process_collectors=False)
    one.task_created("ok", 1)
    one.task_created("ok", 1)
    two.task_created("ok", 1)
    counts = [
        Scrape.parse(generate_latest(m.registry).decode()).value(
            "mcp_tasks_created_total", tool="ok", priority="normal"
        )
        for m in (one, two)
    ]
    assert counts == [2, 1]


async def test_the_workers_endpoint_answers_metrics_and_nothing_else(engines: Engines) -> None:
    engine = engines()
    engine.metrics.task_created("ok", 0)
    server = await serve_metrics(engine.metrics, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        seen = await Scrape.fetch(f"http://127.0.0.1:{port}/metrics")
        answers = [await _request(port, line) for line in ("GET /nope HTTP/1.1", "POST /metrics HTTP/1.1")]
        head = await _request(port, "HEAD /metrics HTTP/1.1")
    finally:
        server.close()
        await server.wait_closed()
    assert seen.value("mcp_tasks_created_total", tool="ok", priority="high") == 1
    assert seen.series("mcp_tasks_queue_waiting", "priority") == {("high",): 0, ("normal",): 0, ("low",): 0}
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 405 Method Not Allowed",
    ]
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert head.endswith(b"\r\n\r\n")  # HEAD: the headers only


async def _request(port: int, request_line: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{request_line}\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_a_run_the_worker_itself_fails_counts_as_failed(engines: Engines) -> None:
    engine = engines()

    class BrokenRunner(ToolRunner):
        async def __call__(self, running: RunningTask, backend: RedisTaskBackend) -> RunResult:
            raise RuntimeError("the runner broke")

    worker = Worker(engine, BrokenRunner(quick_app()))
    running = asyncio.create_task(worker.run())
    try:
        task = await engine.tasks.create(tool="ok", dispatch=True)
        done = await finished(engine, task.task_id)
    finally:
        worker.stop()
        await running
    assert done.error == {"code": -32603, "message": "The worker failed to run the task"}
    seen = await scrape(engine)
    assert seen.value("mcp_tasks_finished_total", tool="ok", status="failed") == 1
    assert seen.value("mcp_tasks_run_seconds_count", tool="ok") is None  # the run never ended normally
