"""RedisTaskStore and TTLs: clamped and reported, restarted at the terminal status, and one expiry
instant shared by every key of a task (so no key of a finished task outlives it, or dies early).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis
from mcp.types import CallToolResult, TaskMetadata, TextContent

from mcp_tasks_redis.engine.connection import TaskLimits
from mcp_tasks_redis.engine.record import Progress
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

LIMITS = TaskLimits(default_ttl_ms=5_000, min_ttl_ms=1_000, max_ttl_ms=60_000, grace_ms=2_000)


@pytest.fixture
async def store(redis: aioredis.Redis, namespace: str) -> AsyncIterator[RedisTaskStore]:
    store = RedisTaskStore(redis, namespace=namespace, limits=LIMITS)
    yield store
    await store.aclose()


async def pttls(redis: aioredis.Redis, keys: list[str]) -> dict[str, int]:
    """PTTL of each key, read in one transaction so that they are comparable."""
    pipe = redis.pipeline(transaction=True)
    for key in keys:
        pipe.pttl(key)
    return dict(zip(keys, await pipe.execute(), strict=True))


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
    # An unfinished task lives ttl + grace, so that a reaper can still fail it visibly.
    pttl = await redis.pttl(store.engine.keys.task(task.taskId))
    assert reported < pttl <= reported + LIMITS.grace_ms


async def test_ttl_restarts_at_terminal_status_for_every_key(
    store: RedisTaskStore, redis: aioredis.Redis
) -> None:
    task = await store.create_task(TaskMetadata(ttl=30_000))
    engine, task_id = store.engine, task.taskId
    # Give the task every kind of key: events, inbox, inputs and replies.
    await engine.tasks.update(task_id, progress=Progress(progress=10))
    await engine.inbox.push(task_id, {"type": "notification"})
    await engine.inputs.request(task_id, "k1", {"method": "elicitation/create"})
    await engine.inputs.answer(task_id, "k1", {"result": {}})
    await store.complete(task_id, CallToolResult(content=[TextContent(type="text", text="ok")]))

    keys = engine.keys.task_keys(task_id)
    ttl = await pttls(redis, keys)
    assert ttl[engine.keys.inputs(task_id)] == -2, "outstanding input requests are dropped at the end"
    for key in (
        engine.keys.task(task_id),
        engine.keys.events(task_id),
        engine.keys.inbox(task_id),
        engine.keys.replies(task_id),
    ):
        # ttl counts from completion now: no grace added, nothing left from the creation time.
        assert 29_000 < ttl[key] <= 30_000, key


async def test_all_keys_of_a_task_share_one_expiry(store: RedisTaskStore, redis: aioredis.Redis) -> None:
    task = await store.create_task(TaskMetadata(ttl=30_000))
    engine, task_id = store.engine, task.taskId
    await engine.tasks.update(task_id, status="input_required", message="asking")
    await engine.inbox.push(task_id, {"type": "notification"})
    await engine.inputs.request(task_id, "k1", {"method": "elicitation/create"})

    for _ in ("working", "after completion"):
        ttl = await pttls(redis, engine.keys.task_keys(task_id))
        alive = [v for v in ttl.values() if v != -2]
        assert -1 not in alive, f"a key without expiry: {ttl}"
        assert max(alive) - min(alive) <= 2, ttl
        await engine.inputs.answer(task_id, "k1", {"result": {}})
        if (await store.get_task(task_id)).status != "completed":  # type: ignore[union-attr]
            await store.complete(task_id, CallToolResult(content=[]))


async def test_expired_task_leaves_no_key_behind(redis: aioredis.Redis, namespace: str) -> None:
    store = RedisTaskStore(redis, namespace=namespace, limits=TaskLimits(min_ttl_ms=1, grace_ms=0))
    task = await store.create_task(TaskMetadata(ttl=100))
    await store.engine.inbox.push(task.taskId, {"type": "notification"})
    await store.update_task(task.taskId, status_message="progress event")
    with anyio.fail_after(5):
        while await store.get_task(task.taskId) is not None:  # noqa: ASYNC110 (expiry sends no event)
            await anyio.sleep(0.02)
    assert await redis.exists(*store.engine.keys.task_keys(task.taskId)) == 0
    await store.aclose()


async def test_finished_task_stays_listed_for_its_whole_ttl(redis: aioredis.Redis, namespace: str) -> None:
    """The listing index must outlive every task it lists, also when a task finishes late."""
    limits = TaskLimits(min_ttl_ms=1, grace_ms=0)
    store = RedisTaskStore(redis, namespace=namespace, limits=limits)
    task = await store.create_task(TaskMetadata(ttl=1_000))
    await anyio.sleep(0.6)
    await store.update_task(task.taskId, status="completed")  # now expires 1.6 s after creation
    await anyio.sleep(0.6)
    assert await store.get_task(task.taskId) is not None
    listed, _ = await store.list_tasks()
    assert [t.taskId for t in listed] == [task.taskId]
    await store.aclose()
