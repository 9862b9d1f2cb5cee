"""TTLs: requested TTLs are clamped and reported; a task's TTL counts from its creation (the
2025-11-25 spec's rule), set once when the task is created; a running task is never deleted; and
nothing of a task outlives it without an expiry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis
from mcp.types import CallToolResult, TaskMetadata, TextContent

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.outcome import Outcome
from mcp_tasks_redis.engine.runtime.execution import RunningTask, write_outcome
from mcp_tasks_redis.engine.streams import StreamDispatch
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

LIMITS = TaskLimits(default_ttl_ms=5_000, min_ttl_ms=1_000, max_ttl_ms=60_000, grace_ms=2_000)


@pytest.fixture
async def store(redis: aioredis.Redis, namespace: str) -> AsyncIterator[RedisTaskStore]:
    store = RedisTaskStore(redis, namespace=namespace, limits=LIMITS)
    yield store
    await store.aclose()


@pytest.mark.parametrize(
    ("requested", "reported"),
    [(None, 5_000), (10, 1_000), (30_000, 30_000), (10**9, 60_000)],
)
async def test_requested_ttl_is_clamped_and_reported(
    store: RedisTaskStore, redis: aioredis.Redis, requested: int | None, reported: int
) -> None:
    task = await store.create_task(TaskMetadata(ttl=requested))
    assert task.ttl == reported
    got = await store.get_task(task.taskId)
    assert got is not None
    assert got.ttl == reported
    # A task lives ttl + grace, so that a reaper's "failed: expired" can still be read.
    pttl = await redis.pttl(store.engine.keys.task(task.taskId))
    assert reported < pttl <= reported + LIMITS.grace_ms


async def test_the_ttl_counts_from_creation_and_is_not_restarted_at_the_end(
    store: RedisTaskStore, redis: aioredis.Redis
) -> None:
    task = await store.create_task(TaskMetadata(ttl=30_000))
    key = store.engine.keys.task(task.taskId)
    at_creation = await redis.pexpiretime(key)
    await store.update_task(task.taskId, status="input_required", status_message="asking")
    await store.complete(task.taskId, CallToolResult(content=[TextContent(type="text", text="ok")]))
    assert await redis.pexpiretime(key) == at_creation


async def test_a_task_that_runs_past_its_ttl_keeps_its_outcome_for_the_grace_period(
    redis: aioredis.Redis, namespace: str
) -> None:
    engine = TaskEngine(redis, namespace=namespace, limits=LIMITS)
    try:
        dispatch = StreamDispatch(engine.conn, "w")
        await dispatch.ensure_groups()
        task = await engine.tasks.create(tool="t", ttl_ms=1_000, dispatch=True)
        [delivery] = await dispatch.read(engine.keys.all_shards[0], 1, None)
        key = engine.keys.task(task.task_id)
        # The worker's record of the expiry says it is about to run out.
        running = RunningTask(delivery, expires_ms=delivery.deadline_ms)
        assert await write_outcome(engine, running, Outcome(result={"content": []})) == "ok"
        assert LIMITS.grace_ms - 500 < await redis.pttl(key) <= LIMITS.grace_ms
    finally:
        await engine.close()


async def test_an_expired_task_leaves_no_key_behind(redis: aioredis.Redis, namespace: str) -> None:
    store = RedisTaskStore(redis, namespace=namespace, limits=TaskLimits(min_ttl_ms=1, grace_ms=0))
    task = await store.create_task(TaskMetadata(ttl=100))
    await store.update_task(task.taskId, status_message="still here")
    with anyio.fail_after(5):
        while await store.get_task(task.taskId) is not None:  # noqa: ASYNC110 (expiry sends no event)
            await anyio.sleep(0.02)
    assert await redis.exists(store.engine.keys.task(task.taskId)) == 0
    await store.aclose()


async def test_listing_indexes_outlive_every_task_they_list(
    store: RedisTaskStore, redis: aioredis.Redis
) -> None:
    task = await store.create_task(TaskMetadata(ttl=60_000), session="s1")
    shard = store.engine.keys.shard_of(task.taskId)
    task_pttl = await redis.pttl(shard.task(task.taskId))
    for index in (shard.all_index, shard.session_index("s1")):
        assert await redis.pttl(index) > LIMITS.max_ttl_ms + LIMITS.grace_ms >= task_pttl
