"""Job delivery over Redis Streams: one delivery per job, the pending entry as the lease, crash
recovery by taking over idle entries, and the run number that fences a stale worker out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.outcome import Outcome
from mcp_tasks_redis.engine.record import TaskStatus
from mcp_tasks_redis.engine.runtime.execution import RunningTask, write_outcome
from mcp_tasks_redis.engine.streams import Delivery, StreamDispatch

LIMITS = TaskLimits(max_attempts=2, min_ttl_ms=1)


@pytest.fixture
async def engine(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    engine = TaskEngine(redis, namespace=namespace, limits=LIMITS)
    for worker in ("a", "b"):
        await StreamDispatch(engine.conn, worker).ensure_groups()
    yield engine
    await engine.close()


def worker(engine: TaskEngine, name: str) -> StreamDispatch:
    return StreamDispatch(engine.conn, name)


async def take_one(dispatch: StreamDispatch) -> Delivery:
    [delivery] = await dispatch.read(dispatch.conn.keys.all_shards[0], 1, None)
    return delivery


async def finish(engine: TaskEngine, delivery: Delivery, text: str = "ok") -> str:
    running = RunningTask(delivery, expires_ms=delivery.deadline_ms + LIMITS.grace_ms)
    outcome = Outcome(result={"content": [{"type": "text", "text": text}]})
    return await write_outcome(engine, running, outcome)


async def test_a_job_carries_what_the_worker_needs_without_reading_the_task(engine: TaskEngine) -> None:
    task = await engine.tasks.create(
        tool="greet", arguments={"name": "Ann"}, progress_token="p1", owner="o", dispatch=True
    )
    delivery = await take_one(worker(engine, "a"))
    assert (delivery.task_id, delivery.tool, delivery.owner) == (task.task_id, "greet", "o")
    assert (delivery.job.arguments, delivery.job.progress_token) == ({"name": "Ann"}, "p1")
    assert (delivery.run, delivery.attempt, delivery.created_ms) == (1, 1, task.created_at_ms)


async def test_a_job_is_delivered_to_one_worker_only(engine: TaskEngine) -> None:
    await engine.tasks.create(tool="t", dispatch=True)
    await take_one(worker(engine, "a"))
    shard = engine.keys.all_shards[0]
    assert await worker(engine, "b").read(shard, 10, None) == []


async def test_a_cancelled_queued_task_is_never_delivered(engine: TaskEngine) -> None:
    task = await engine.tasks.create(tool="t", dispatch=True)
    await engine.tasks.cancel(task.task_id)
    assert await worker(engine, "a").read(engine.keys.all_shards[0], 10, None) == []


async def test_renewing_keeps_the_lease_and_a_cancel_takes_it_away(engine: TaskEngine) -> None:
    task = await engine.tasks.create(tool="t", dispatch=True)
    a = worker(engine, "a")
    delivery = await take_one(a)
    assert await a.renew(delivery.stream, [delivery.entry_id]) == set()
    await engine.tasks.cancel(task.task_id)
    assert await a.renew(delivery.stream, [delivery.entry_id]) == {delivery.entry_id}


async def test_a_job_left_idle_past_the_lease_is_delivered_again_with_a_new_run(engine: TaskEngine) -> None:
    task = await engine.tasks.create(tool="t", dispatch=True)
    first = await take_one(worker(engine, "a"))  # worker a dies here, never renewing
    b = worker(engine, "b")
    [taken] = await b.reclaim(first.shard, min_idle_ms=0)
    assert taken.entry_id == first.entry_id
    assert await b.requeue(taken, "dead") == "requeued"
    second = await take_one(b)
    assert (second.task_id, second.run, second.attempt) == (task.task_id, 2, 2)
    # The first run's worker wakes up: its outcome is refused, the second run's lands.
    assert await finish(engine, first, "stale") == "lost"
    assert await finish(engine, second, "fresh") == "ok"
    done = await engine.tasks.get(task.task_id)
    assert done is not None
    assert (done.status, done.result) == (
        TaskStatus.COMPLETED,
        {"content": [{"type": "text", "text": "fresh"}]},
    )


async def test_a_task_delivered_again_drops_the_lost_runs_unanswered_input_request(
    engine: TaskEngine,
) -> None:
    task = await engine.tasks.create(tool="t", dispatch=True)
    first = await take_one(worker(engine, "a"))
    ask = {"method": "elicitation/create", "params": {"message": "?"}}
    await engine.tasks.request_input(task.task_id, "answered", ask, fence=first.run)
    await engine.tasks.answer(task.task_id, {"answered": {"action": "accept", "content": {}}})
    await engine.tasks.request_input(task.task_id, "open", ask, fence=first.run)
    b = worker(engine, "b")  # worker a dies while it waits for the answer
    [taken] = await b.reclaim(first.shard, min_idle_ms=0)
    assert await b.requeue(taken, "dead") == "requeued"
    again = await engine.tasks.get(task.task_id)
    assert again is not None
    assert again.status is TaskStatus.WORKING
    assert again.input_requests == {}  # nobody is waiting for "open" any more
    assert set(again.answers) == {"answered"}


async def test_a_task_whose_workers_keep_dying_ends_failed_with_the_reason(engine: TaskEngine) -> None:
    task = await engine.tasks.create(tool="t", dispatch=True)
    b = worker(engine, "b")
    for _ in range(LIMITS.max_attempts):
        await take_one(worker(engine, "a"))
        [taken] = await b.reclaim(engine.keys.all_shards[0], min_idle_ms=0)
        last = await b.requeue(taken, "dead")
    assert last == "failed"
    failed = await engine.tasks.get(task.task_id)
    assert failed is not None
    assert failed.status is TaskStatus.FAILED
    assert "worker was lost 2 time(s)" in (failed.status_message or "")
    assert failed.error is not None
    assert failed.error["code"] == -32603


async def test_a_task_handed_back_does_not_use_up_an_attempt(engine: TaskEngine) -> None:
    task = await engine.tasks.create(tool="t", dispatch=True)
    a = worker(engine, "a")
    delivery = await take_one(a)
    assert await a.requeue(delivery, "back") == "requeued"
    again = await take_one(worker(engine, "b"))
    assert (again.task_id, again.run, again.attempt) == (task.task_id, 2, 1)


async def test_a_finished_job_is_not_delivered_again(engine: TaskEngine) -> None:
    await engine.tasks.create(tool="t", dispatch=True)
    a = worker(engine, "a")
    delivery = await take_one(a)
    assert await finish(engine, delivery) == "ok"
    [taken] = await worker(engine, "b").reclaim(delivery.shard, min_idle_ms=0)
    assert await worker(engine, "b").requeue(taken, "dead") == "terminal"
    assert await a.read(delivery.shard, 10, None) == []


async def test_the_stream_holds_only_jobs_not_yet_finished(engine: TaskEngine, redis: aioredis.Redis) -> None:
    for _ in range(3):
        await engine.tasks.create(tool="t", dispatch=True)
    a = worker(engine, "a")
    shard = engine.keys.all_shards[0]
    done = await a.read(shard, 2, None)
    for delivery in done:
        await finish(engine, delivery)
    await a.ack(shard.stream, [d.entry_id for d in done])
    assert await redis.xlen(shard.stream) == 1
    assert (await redis.xpending(shard.stream, "workers"))["pending"] == 0


async def test_a_job_nobody_took_before_its_ttl_fails_the_task(engine: TaskEngine) -> None:
    task = await engine.tasks.create(tool="t", ttl_ms=1, dispatch=True)
    a = worker(engine, "a")
    shard = engine.keys.all_shards[0]
    [overdue] = await a.overdue(shard, now=task.created_at_ms + 5)
    assert await a.expire(overdue, "Task expired before a worker could run it")
    failed = await engine.tasks.get(task.task_id)
    assert failed is not None
    assert (failed.status, failed.status_message) == (
        TaskStatus.FAILED,
        "Task expired before a worker could run it",
    )
    assert await a.read(shard, 10, None) == []


async def test_tasks_spread_over_shards_and_each_script_stays_in_one_slot(
    redis: aioredis.Redis, namespace: str
) -> None:
    from redis.crc import key_slot

    engine = TaskEngine(redis, namespace=namespace, shards=4, limits=LIMITS)
    try:
        used = {
            engine.keys.shard_of((await engine.tasks.create(tool="t", dispatch=True)).task_id).index
            for _ in range(40)
        }
        assert used == {0, 1, 2, 3}
        for shard in engine.keys.all_shards:
            slots = {
                key_slot(k.encode())
                for k in (shard.stream, shard.task("x"), shard.session_index("s"), shard.delayed)
            }
            assert len(slots) == 1
        assert len({key_slot(s.stream.encode()) for s in engine.keys.all_shards}) == 4
    finally:
        await engine.close()
