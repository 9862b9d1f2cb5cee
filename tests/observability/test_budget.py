"""Metrics and traces add no Redis command to a task's life (docs/architecture.md, "Budget").

Counted with ``INFO commandstats`` (commands inside scripts included) on a Redis of the test's
own, so that nobody else's commands are counted: a ``noop`` task created with a session index,
picked up, finished and read costs the same 11 commands with every series counted and every span
recorded (its trace context travels inside the job's JSON), plus the acknowledgement that jobs
finishing together share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.runtime.execution import ToolRunner
from mcp_tasks_redis.engine.runtime.worker import Worker
from mcp_tasks_redis.engine.telemetry import tracing
from mcp_tasks_redis.ops.embedded import EmbeddedRedis

TASKS = 40
PER_TASK = {
    # create: the script, and what it runs
    "evalsha": 2,  # create, finish
    "xadd": 1,
    "hset": 2,  # create, finish
    "pexpire": 1,
    "zadd": 1,  # the session's listing index
    "xreadgroup": 1,  # pickup
    "hmget": 1,  # finish's check
    "publish": 1,  # the terminal event, with the outcome
    "hgetall": 1,  # the result read
}


@pytest.fixture(scope="module")
def own_redis() -> Iterator[str]:
    with EmbeddedRedis("auto") as embedded:
        if embedded.kind != "redis-server":
            pytest.skip("needs redis-server on PATH: fakeredis keeps no command statistics")
        yield embedded.url


async def calls(engine: TaskEngine) -> dict[str, int]:
    stats: Any = await engine.redis.info("commandstats")  # type: ignore[misc]
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_a_traced_and_counted_task_costs_the_same_redis_commands(own_redis: str) -> None:
    provider, spans = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.use_tracer_provider(provider)
    app = ToolRegistry("budget")

    @app.tool
    async def noop() -> str:
        return "ok"

    # Quiet background loops (no health report, lease renewal or reaping while counting).
    engine = TaskEngine.from_url(own_redis, namespace="budget", limits=TaskLimits(lease_ms=600_000))
    worker = Worker(engine, ToolRunner(app), health_interval_s=600, block_ms=60_000)
    try:
        running = asyncio.create_task(worker.run())
        first = await engine.tasks.create(tool="noop", session="s", dispatch=True)  # warms up the scripts
        await engine.wait_until(first.task_id, lambda r: r is not None and r.is_terminal)
        before = await calls(engine)
        for _ in range(TASKS):
            task = await engine.tasks.create(tool="noop", session="s", dispatch=True)
            assert "trace" in task.meta  # the span context rides in the job
            done = await engine.wait_until(task.task_id, lambda r: r is not None and r.is_terminal)
            assert done is not None
        after = await calls(engine)
        worker.stop()
        await running
    finally:
        await engine.close()
        tracing.use_tracer_provider(None)
        provider.shutdown()
    delta = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    for connecting in ("info", "hello", "client|setinfo", "client|setname", "select", "auth", "ping"):
        delta.pop(connecting, None)  # ours, or a connection the pool opened meanwhile
    acks = (delta.pop("xack", 0), delta.pop("xdel", 0))
    assert delta == {name: count * TASKS for name, count in PER_TASK.items()}
    assert acks[0] == acks[1] <= TASKS  # one XACK + XDEL per batch of jobs that finished together
    assert sum(PER_TASK.values()) == 11
    assert len([s for s in spans.get_finished_spans() if s.name == "task.run noop"]) == TASKS + 1
