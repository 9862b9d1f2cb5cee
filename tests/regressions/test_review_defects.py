"""Defects a line-by-line review of 8c401a3 found (issue 9), each pinned by a test of the
guarantee, with the timing forced where the defect was a race.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from mcp.types import CallToolResult, TaskMetadata, TextContent

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import LeaseLost, RedisUnavailable
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.streams import StreamDispatch
from mcp_tasks_redis.mcp_v1.router import RedisResponseRouter
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore
from mcp_tasks_redis.ops.embedded import EmbeddedRedis


@pytest.fixture
async def engine(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    engine = TaskEngine(redis, namespace=namespace, limits=TaskLimits(recheck_ms=100))
    yield engine
    await engine.close()


def listeners(engine: TaskEngine) -> int:
    return sum(len(group) for group in engine.events._listeners.values())  # pyright: ignore[reportPrivateUsage]


async def test_a_waiter_cancelled_at_any_point_leaves_no_listener_behind(engine: TaskEngine) -> None:
    """Item 1: a waiter cancelled while it starts listening (where the old hub awaited SUBSCRIBE
    outside its try) must not stay registered. Each await of the wait is hit by a cancel."""
    task = await engine.tasks.create(tool="t")
    await engine.events.ready()
    for delay_steps in range(12):
        waiter = asyncio.create_task(engine.wait_until(task.task_id, lambda r: r is None or r.is_terminal))
        for _ in range(delay_steps):  # cancel after this many loop turns: every await point in turn
            await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert listeners(engine) == 0, f"a listener leaked when cancelled after {delay_steps} turns"


async def test_a_reply_that_meets_a_passing_outage_still_reaches_the_task(
    engine: TaskEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 6: the router kept a reply only if the first write succeeded; now it retries while
    Redis is away, so the worker gets the answer the client already gave."""
    task = await engine.tasks.create(tool="t")
    await engine.tasks.request_input(task.task_id, "k1", {"method": "elicitation/create", "params": {}})
    real_answer = engine.tasks.answer
    failures = 3

    async def flaky(task_id: str, answers: Any) -> list[str]:
        nonlocal failures
        if failures:
            failures -= 1
            raise RedisUnavailable("redis://test", ConnectionError("connection reset"))
        return await real_answer(task_id, answers)

    monkeypatch.setattr(engine.tasks, "answer", flaky)
    router = RedisResponseRouter(engine)
    assert router.route_response(f"task-{task.task_id}-k1", {"action": "accept", "content": {"answer": "42"}})
    await router.drain()
    record = await engine.tasks.get(task.task_id)
    assert record is not None
    assert record.answers == {"k1": {"result": {"action": "accept", "content": {"answer": "42"}}}}
    assert failures == 0


async def test_the_event_subscriber_survives_a_refusal_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Item 8: an ACL that forbids the channels (NOPERM) made the subscriber die silently; every
    waiter then fell back to polling with no sign why. Now it logs the refusal and keeps trying,
    and subscribes once the permission is granted."""
    with EmbeddedRedis("redis-server") as own:
        admin = aioredis.Redis.from_url(own.url)
        await admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "resetchannels")
        engine = TaskEngine.from_url(own.url.replace("redis://", "redis://app:pw@"), namespace="acl")
        try:
            with caplog.at_level(logging.ERROR, logger="mcp_tasks_redis.events"):
                assert await engine.events.ready(timeout=1.0) is False
                assert any("event subscriber failed" in r.getMessage() for r in caplog.records)
            restored = asyncio.Event()
            engine.events.on_reconnect(restored.set)
            await admin.execute_command("ACL", "SETUSER", "app", "allchannels")
            # While the subscriber fails, ready() answers at once (no latency added to requests
            # during an outage): wait for the subscription to come back instead.
            await asyncio.wait_for(restored.wait(), 10.0)
            assert await engine.events.ready(timeout=1.0) is True
        finally:
            await engine.close()
            await admin.aclose()


async def test_a_write_to_a_demoted_master_is_a_passing_outage() -> None:
    """Item 9: after a failover the old master answers writes with READONLY; that is the same
    passing outage as a lost connection (RedisUnavailable), not a refusal of the request."""
    with EmbeddedRedis("redis-server") as primary, EmbeddedRedis("redis-server") as replica:
        host, port = primary.url.removeprefix("redis://").split("/")[0].split(":")
        client = aioredis.Redis.from_url(replica.url)
        await client.execute_command("REPLICAOF", host, port)
        engine = TaskEngine(client, namespace="ro", owns_client=True)
        try:
            with pytest.raises(RedisUnavailable, match=r"READONLY|read only"):
                await engine.tasks.create(tool="t", dispatch=True)
        finally:
            await engine.close()


async def test_a_stale_workers_store_cannot_complete_or_fail_the_task(engine: TaskEngine) -> None:
    """Item 9: RedisTaskStore.complete and fail now pass the fence the docstring promised: a
    worker whose run was superseded cannot overwrite the run that replaced it."""
    dispatch = StreamDispatch(engine.conn, "w")
    await dispatch.ensure_groups()
    task = await engine.tasks.create(tool="t", dispatch=True)
    [first] = await dispatch.read(engine.keys.all_shards[0], 1, None)
    [taken] = await dispatch.reclaim(first.shard, min_idle_ms=0)
    assert await dispatch.requeue(taken, "dead") == "requeued"
    stale = RedisTaskStore(engine, fence=first.run)
    with pytest.raises(LeaseLost):
        await stale.complete(task.task_id, CallToolResult(content=[TextContent(type="text", text="stale")]))
    with pytest.raises(LeaseLost):
        await stale.fail(task.task_id, "stale")
    record = await engine.tasks.get(task.task_id)
    assert record is not None
    assert (record.status.value, record.run) == ("working", 2)


async def test_deleting_a_task_deletes_its_job(engine: TaskEngine, redis: aioredis.Redis) -> None:
    """Item 9: delete.lua left the job behind, and a worker would later run a deleted task."""
    store = RedisTaskStore(engine)
    created = await store.create_task(TaskMetadata(ttl=60_000), dispatch=True)
    shard = engine.keys.shard_of(created.taskId)
    assert await redis.xlen(shard.stream) == 1
    assert await store.delete_task(created.taskId) is True
    assert await redis.xlen(shard.stream) == 0
    assert await redis.exists(shard.task(created.taskId)) == 0
