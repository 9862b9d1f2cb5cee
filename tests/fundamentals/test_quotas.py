"""Per-owner quotas: a cap on one caller's running tasks (the rest wait in its queue, in order),
a queue limit and a creation rate past which a call is refused, and fairness across callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import QuotaExceeded
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.ops.processes import build_worker

LIMITS = TaskLimits(owner_max_running=2, owner_max_queued=3, lease_ms=3_000, recheck_ms=200)


@pytest.fixture
async def engine(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    engine = TaskEngine(redis, namespace=namespace, limits=LIMITS)
    yield engine
    await engine.close()


async def done(engine: TaskEngine, task_id: str) -> TaskRecord:
    record = await engine.wait_until(task_id, lambda r: r is None or r.is_terminal, timeout=10)
    assert record is not None
    return record


async def test_an_owner_over_its_limit_waits_while_another_owner_runs(engine: TaskEngine) -> None:
    app, running, peak, gate = (
        ToolRegistry("quota"),
        {"alice": 0, "bob": 0},
        {"alice": 0, "bob": 0},
        asyncio.Event(),
    )
    order: list[str] = []
    bob_started = asyncio.Event()

    @app.tool
    async def work(owner: str, n: int) -> str:
        running[owner] += 1
        peak[owner] = max(peak[owner], running[owner])
        order.append(f"{owner}-{n}")
        if owner == "bob":
            bob_started.set()
        await gate.wait()
        running[owner] -= 1
        return "done"

    worker = build_worker(engine, app, concurrency=10)
    runner = asyncio.create_task(worker.run())
    try:
        alice = [
            await engine.tasks.create(
                tool="work", arguments={"owner": "alice", "n": n}, owner="alice", dispatch=True
            )
            for n in range(5)
        ]
        queued = await engine.tasks.get(alice[-1].task_id)
        assert queued is not None
        assert (queued.status, queued.entry_id) == (TaskStatus.WORKING, None)
        assert "2 earlier task(s) of this caller wait" in (queued.status_message or "")
        bob = await engine.tasks.create(
            tool="work", arguments={"owner": "bob", "n": 0}, owner="bob", dispatch=True
        )
        # Bob's task starts at once, though Alice has five waiting or running before it.
        await asyncio.wait_for(bob_started.wait(), 5)
        assert order[:2] == ["alice-0", "alice-1"]
        gate.set()
        for task in [*alice, bob]:
            assert (await done(engine, task.task_id)).status is TaskStatus.COMPLETED
    finally:
        worker.stop()
        await runner
    assert peak == {"alice": 2, "bob": 1}
    assert [name for name in order if name.startswith("alice")] == [f"alice-{n}" for n in range(5)]


async def test_past_the_queue_limit_a_call_is_refused_and_nothing_is_written(
    engine: TaskEngine, redis: aioredis.Redis
) -> None:
    for _ in range(LIMITS.owner_max_running + LIMITS.owner_max_queued):
        await engine.tasks.create(tool="t", owner="carol", dispatch=True)
    keys_before = sorted(await redis.keys(f"{engine.keys.namespace}:*"))
    with pytest.raises(QuotaExceeded, match=r"Too many tasks of this caller wait to run \(3\)") as refused:
        await engine.tasks.create(tool="t", owner="carol", dispatch=True)
    assert refused.value.code == -32029
    assert sorted(await redis.keys(f"{engine.keys.namespace}:*")) == keys_before
    await engine.tasks.create(tool="t", owner="dave", dispatch=True)  # others are not affected


async def test_cancelling_a_queued_task_takes_it_out_of_the_queue(
    engine: TaskEngine, redis: aioredis.Redis
) -> None:
    first = [await engine.tasks.create(tool="t", owner="erin", dispatch=True) for _ in range(3)]
    waiting = first[-1]
    await engine.tasks.cancel(waiting.task_id)
    shard = engine.keys.shard_of(waiting.task_id)
    assert await redis.lrange(shard.owner_queue("o:erin"), 0, -1) == []
    # Ending a running one starts nothing (the queue is empty) and frees a place.
    await engine.tasks.cancel(first[0].task_id)
    assert await redis.zcard(shard.owner_running("o:erin")) == 1


async def test_the_creation_rate_is_limited_per_owner(redis: aioredis.Redis, namespace: str) -> None:
    engine = TaskEngine(
        redis, namespace=namespace, limits=TaskLimits(owner_rate=3, owner_rate_window_ms=60_000)
    )
    try:
        for _ in range(3):
            await engine.tasks.create(tool="t", owner="frank", dispatch=True)
        with pytest.raises(QuotaExceeded, match="Too many tasks created") as refused:
            await engine.tasks.create(tool="t", owner="frank", dispatch=True)
        assert refused.value.retry_after_ms is not None
        assert 0 < refused.value.retry_after_ms <= 60_000
        await engine.tasks.create(tool="t", owner="grace", dispatch=True)
    finally:
        await engine.close()
