"""Task policies: retries with backoff, timeouts, priorities without starvation, and the resource
use each run records. Tools run on a real worker (in this process) against the real Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from mcp_tasks_redis.engine.admission import admit
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.policy import PolicyError, Retry, ToolTimeout
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.runtime.worker import Worker
from mcp_tasks_redis.ops.processes import build_worker

FAST = Retry(attempts=3, on=(ConnectionError,), backoff_s=0.05, jitter=0)


class Running:
    """A worker in this process for the duration of a test."""

    def __init__(self, engine: TaskEngine, registry: ToolRegistry, concurrency: int = 4) -> None:
        self.worker: Worker = build_worker(engine, registry, concurrency=concurrency)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Worker:
        self.task = asyncio.create_task(self.worker.run())
        return self.worker

    async def __aexit__(self, *_: object) -> None:
        self.worker.stop()
        assert self.task is not None
        await self.task


@pytest.fixture
async def engine(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    engine = TaskEngine(redis, namespace=namespace, limits=TaskLimits(lease_ms=3_000, recheck_ms=200))
    yield engine
    await engine.close()


async def finished(engine: TaskEngine, task_id: str, timeout: float = 10.0) -> TaskRecord:
    record = await engine.wait_until(task_id, lambda r: r is None or r.is_terminal, timeout=timeout)
    assert record is not None
    return record


def flaky(failures: int) -> tuple[ToolRegistry, Callable[[], int]]:
    app, runs = ToolRegistry("flaky"), [0]

    @app.tool(retry=FAST)
    async def fetch() -> str:
        runs[0] += 1
        if runs[0] <= failures:
            raise ConnectionError(f"upstream refused (run {runs[0]})")
        return f"ok after {runs[0]} runs"

    return app, lambda: runs[0]


async def test_a_run_that_fails_with_a_retryable_error_is_run_again_until_it_succeeds(
    engine: TaskEngine,
) -> None:
    app, runs = flaky(failures=2)
    messages: list[str] = []
    async with Running(engine, app):
        task = await engine.tasks.create(
            tool="fetch", dispatch=True, meta=admit(app.get("fetch"), engine.limits, None).meta
        )  # type: ignore[arg-type]

        async def note(record: TaskRecord | None) -> None:
            if record is not None and record.status_message:
                messages.append(record.status_message)

        done = await engine.wait_until(
            task.task_id, lambda r: r is None or r.is_terminal, timeout=10, on_record=note
        )
    assert done is not None
    assert (done.status, done.attempt, runs()) == (TaskStatus.COMPLETED, 3, 3)
    assert done.result == {"content": [{"type": "text", "text": "ok after 3 runs"}]}
    waiting = [m for m in messages if m.startswith("retrying in")]
    assert any("attempt 2 of 3: upstream refused (run 1)" in m for m in waiting), messages


async def test_when_runs_run_out_the_task_fails_with_the_last_error(engine: TaskEngine) -> None:
    app, runs = flaky(failures=5)
    async with Running(engine, app):
        task = await engine.tasks.create(tool="fetch", dispatch=True, meta={"attempts": 3})
        done = await finished(engine, task.task_id)
    assert (done.status, runs()) == (TaskStatus.FAILED, 3)
    assert done.error == {"code": -32603, "message": "Failed after 3 attempt(s): upstream refused (run 3)"}
    failed = await engine.redis.zrange(engine.keys.shard_of(task.task_id).failed, 0, -1)
    assert failed == [task.task_id.encode()]


async def test_an_exception_the_policy_does_not_name_is_a_tool_error_at_once(engine: TaskEngine) -> None:
    app, runs = ToolRegistry("picky"), [0]

    @app.tool(retry=FAST)
    async def parse() -> str:
        runs[0] += 1
        raise ValueError("not a number")

    async with Running(engine, app):
        task = await engine.tasks.create(tool="parse", dispatch=True, meta={"attempts": 3})
        done = await finished(engine, task.task_id)
    assert (done.status, runs[0], done.is_error_result) == (TaskStatus.COMPLETED, 1, True)


async def test_a_timeout_cancels_the_tool_and_fails_the_task(engine: TaskEngine) -> None:
    app, seen = ToolRegistry("slow"), asyncio.Event()

    @app.tool(timeout_s=0.2)
    async def hang() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.set()
            raise
        return "never"

    async with Running(engine, app):
        task = await engine.tasks.create(tool="hang", dispatch=True)
        started = time.monotonic()
        done = await finished(engine, task.task_id)
        elapsed = time.monotonic() - started
    assert seen.is_set(), "the tool was not cancelled"
    assert done.status is TaskStatus.FAILED
    assert done.error == {"code": -32001, "message": "Tool timed out after 0.2 s"}
    assert elapsed < 5


async def test_a_timed_out_run_is_retried_when_the_policy_names_timeouts(engine: TaskEngine) -> None:
    app, runs = ToolRegistry("slow-then-fast"), [0]

    @app.tool(timeout_s=0.2, retry=Retry(attempts=2, on=(ToolTimeout,), backoff_s=0))
    async def sometimes() -> str:
        runs[0] += 1
        if runs[0] == 1:
            await asyncio.sleep(30)
        return "fast this time"

    async with Running(engine, app):
        task = await engine.tasks.create(tool="sometimes", dispatch=True, meta={"attempts": 2})
        done = await finished(engine, task.task_id)
    assert (done.status, done.attempt, runs[0]) == (TaskStatus.COMPLETED, 2, 2)


async def test_higher_priorities_start_first_on_a_saturated_worker(engine: TaskEngine) -> None:
    app, order, release, blocking = ToolRegistry("prio"), list[str](), asyncio.Event(), asyncio.Event()

    @app.tool
    async def block() -> str:
        blocking.set()
        await release.wait()
        return "released"

    @app.tool
    async def job(name: str) -> str:
        order.append(name)
        return name

    async with Running(engine, app, concurrency=1):
        blocker = await engine.tasks.create(tool="block", dispatch=True)
        await engine.wait_until(
            blocker.task_id, lambda r: r is not None and r.entry_id is not None, timeout=5
        )
        created = []
        for name, level in [
            ("low-1", 2),
            ("normal-1", 1),
            ("low-2", 2),
            ("high-1", 0),
            ("normal-2", 1),
            ("high-2", 0),
        ]:
            created.append(
                await engine.tasks.create(tool="job", arguments={"name": name}, priority=level, dispatch=True)
            )
        release.set()
        for task in created:
            await finished(engine, task.task_id)
    assert order == ["high-1", "high-2", "normal-1", "normal-2", "low-1", "low-2"]


async def test_a_steady_flow_of_high_priority_work_does_not_starve_low(engine: TaskEngine) -> None:
    app, order = ToolRegistry("starve"), list[str]()

    @app.tool
    async def job(name: str) -> str:
        order.append(name)
        return name

    created = [await engine.tasks.create(tool="job", arguments={"name": "low"}, priority=2, dispatch=True)]
    created += [
        await engine.tasks.create(tool="job", arguments={"name": f"high-{i}"}, priority=0, dispatch=True)
        for i in range(12)
    ]
    async with Running(engine, app, concurrency=1):
        for task in created:
            await finished(engine, task.task_id)
    assert order.index("low") <= 4, order


async def test_a_run_records_its_queue_wait_run_time_attempts_and_a_sync_tools_cpu(
    engine: TaskEngine,
) -> None:
    app = ToolRegistry("usage")

    @app.tool
    def crunch(n: int) -> int:
        return sum(i * i for i in range(n))

    async with Running(engine, app):
        task = await engine.tasks.create(tool="crunch", arguments={"n": 300_000}, dispatch=True)
        await finished(engine, task.task_id)
    stored = await engine.tasks.get(task.task_id)
    assert stored is not None
    usage: dict[str, Any] = stored.usage or {}
    assert set(usage) == {"wait_ms", "run_ms", "attempts", "cpu_ms"}
    assert usage["attempts"] == 1
    assert usage["cpu_ms"] > 0
    assert usage["run_ms"] >= 0 <= usage["wait_ms"]


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda app: app.tool(retry=Retry(attempts=0)), "attempts must be a whole number >= 1"),
        (lambda app: app.tool(retry=Retry(attempts=-2)), "attempts must be a whole number >= 1"),
        (lambda app: app.tool(retry=Retry(backoff_s=-1)), "backoff_s must be a number of seconds >= 0"),
        (lambda app: app.tool(retry=Retry(on=(str,))), "must list exception classes"),  # type: ignore[arg-type]
        (lambda app: app.tool(timeout_s=0), "timeout_s must be a number of seconds > 0"),
        (lambda app: app.tool(priority="urgent"), "Unknown priority 'urgent'"),  # type: ignore[arg-type]
    ],
)
def test_bad_policy_values_are_refused_where_they_are_declared(declare: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        declare(ToolRegistry("bad"))


def test_a_call_may_lower_its_priority_and_raise_it_only_within_the_servers_bound() -> None:
    app = ToolRegistry("calls")

    @app.tool
    async def plain() -> None: ...

    @app.tool(priority="high")
    async def urgent() -> None: ...

    limits, key = TaskLimits(call_priority_max="normal"), "dev.mcp-tasks-redis/priority"
    assert admit(app.get("plain"), limits, None).priority == 1  # type: ignore[arg-type]
    assert admit(app.get("plain"), limits, {key: "low"}).priority == 2  # type: ignore[arg-type]
    assert admit(app.get("plain"), limits, {key: "high"}).priority == 1  # type: ignore[arg-type]
    assert admit(app.get("urgent"), limits, {key: "high"}).priority == 0  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="Unknown priority 'asap'"):
        admit(app.get("plain"), limits, {key: "asap"})  # type: ignore[arg-type]


async def test_a_failed_task_can_be_run_again_as_a_new_task(engine: TaskEngine) -> None:
    """The dead letter's re-run: a new task with the same call; the failed one stays failed."""
    app, runs = flaky(failures=3)
    async with Running(engine, app):
        task = await engine.tasks.create(tool="fetch", session="s1", dispatch=True, meta={"attempts": 3})
        assert (await finished(engine, task.task_id)).status is TaskStatus.FAILED
        again = await engine.tasks.rerun(task.task_id)
        done = await finished(engine, again.task_id)
    assert (done.status, done.session, done.meta["rerun_of"]) == (TaskStatus.COMPLETED, "s1", task.task_id)
    assert (await engine.tasks.get(task.task_id)).status is TaskStatus.FAILED  # type: ignore[union-attr]
    assert runs() == 4


async def test_a_worker_with_fewer_slots_than_shards_serves_every_shard(
    redis: aioredis.Redis, namespace: str
) -> None:
    """Readers block holding no slot: two slots and six shards still run every task at once."""
    engine = TaskEngine(
        redis, namespace=namespace, shards=6, limits=TaskLimits(lease_ms=3_000, recheck_ms=200)
    )
    app, peak, running = ToolRegistry("sharded"), [0], [0]

    @app.tool
    async def step() -> str:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.05)
        running[0] -= 1
        return "ok"

    try:
        tasks = [await engine.tasks.create(tool="step", dispatch=True) for _ in range(14)]
        assert len({engine.keys.shard_of(t.task_id).index for t in tasks}) > 2
        started = time.monotonic()
        async with Running(engine, app, concurrency=2):
            for task in tasks:
                assert (await finished(engine, task.task_id, timeout=10)).status is TaskStatus.COMPLETED
        elapsed = time.monotonic() - started
    finally:
        await engine.close()
    assert peak[0] <= 2
    assert elapsed < 4, f"14 tasks of 50 ms on 2 slots took {elapsed:.1f} s"
