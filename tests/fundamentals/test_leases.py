"""Worker liveness: a running task holds a lease; a task whose worker died is re-queued by the
reaper, up to its attempt limit; a task nobody ran before its TTL ends failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from mcp_tasks_redis.engine.connection import TaskLimits
from mcp_tasks_redis.engine.dispatch import ARQ_IN_PROGRESS_PREFIX, ARQ_JOB_PREFIX
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.record import TaskStatus

LIMITS = TaskLimits(grace_ms=1_000, max_attempts=2, min_ttl_ms=1)


async def kill_worker(redis: aioredis.Redis, namespace: str, task_id: str) -> None:
    """What a SIGKILLed worker leaves behind: a lease that has run out and is never renewed."""
    await redis.hset(f"{namespace}:task:{task_id}", "lease_until", 0)


@pytest.fixture
async def engine(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    engine = TaskEngine(redis, namespace=namespace, limits=LIMITS)
    yield engine
    await engine.close()


@pytest.fixture
async def healthy(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    engine = TaskEngine(redis, namespace=namespace, limits=TaskLimits(max_attempts=2))
    yield engine
    await engine.close()


async def test_claiming_counts_an_attempt_and_takes_the_lease(healthy: TaskEngine) -> None:
    task = await healthy.tasks.create()
    claim = await healthy.leases.claim(task.task_id, "worker-a")
    assert claim.outcome == "run"
    assert claim.record is not None
    assert (claim.record.attempt, claim.record.lease_owner) == (1, "worker-a")


async def test_a_live_lease_keeps_other_workers_out(healthy: TaskEngine) -> None:
    task = await healthy.tasks.create()
    await healthy.leases.claim(task.task_id, "worker-a")
    claim = await healthy.leases.claim(task.task_id, "worker-b")
    assert (claim.outcome, claim.holder) == ("held", "worker-a")


async def test_a_finished_task_is_not_run_again(healthy: TaskEngine) -> None:
    task = await healthy.tasks.create()
    await healthy.tasks.update(task.task_id, status="completed")
    assert (await healthy.leases.claim(task.task_id, "worker-a")).outcome == "terminal"


async def test_the_heartbeat_reports_a_cancel(healthy: TaskEngine) -> None:
    task = await healthy.tasks.create()
    await healthy.leases.claim(task.task_id, "worker-a")
    assert await healthy.leases.heartbeat(task.task_id, "worker-a") == "working"
    await healthy.tasks.cancel(task.task_id)
    assert await healthy.leases.heartbeat(task.task_id, "worker-a") == "cancelled"


async def test_a_worker_that_lost_its_lease_cannot_write(healthy: TaskEngine) -> None:
    from mcp_tasks_redis.engine.connection import LeaseLost

    task = await healthy.tasks.create()
    await healthy.leases.claim(task.task_id, "worker-a")
    with pytest.raises(LeaseLost):
        await healthy.tasks.update(task.task_id, status="completed", fence="worker-b")


async def test_a_task_handed_back_does_not_use_up_an_attempt(healthy: TaskEngine) -> None:
    task = await healthy.tasks.create()
    await healthy.leases.claim(task.task_id, "worker-a")
    assert await healthy.leases.release(task.task_id, "worker-a")
    again = await healthy.leases.claim(task.task_id, "worker-b")
    assert again.record is not None
    assert again.record.attempt == 1


async def test_the_reaper_requeues_a_task_whose_worker_died(
    engine: TaskEngine, redis: aioredis.Redis, namespace: str
) -> None:
    task = await engine.tasks.create(dispatch=True)
    await engine.leases.claim(task.task_id, "worker-a")
    await kill_worker(redis, namespace, task.task_id)
    await redis.set(ARQ_IN_PROGRESS_PREFIX + task.task_id, b"1", px=60_000)
    assert await engine.leases.reap(task.task_id) == "requeued"
    # The dead worker's arq lock is released so that another worker picks the job up at once.
    assert await redis.exists(ARQ_IN_PROGRESS_PREFIX + task.task_id) == 0
    assert await redis.zscore(engine.keys.queue, task.task_id) is not None
    await redis.delete(ARQ_JOB_PREFIX + task.task_id)


async def test_a_task_whose_workers_keep_dying_ends_failed(
    engine: TaskEngine, redis: aioredis.Redis, namespace: str
) -> None:
    task = await engine.tasks.create(dispatch=True)
    for worker in ("worker-a", "worker-b"):
        assert (await engine.leases.claim(task.task_id, worker)).outcome == "run"
        await kill_worker(redis, namespace, task.task_id)
        await engine.leases.reap(task.task_id)
    failed = await engine.tasks.get(task.task_id)
    assert failed is not None
    assert failed.status is TaskStatus.FAILED
    assert "worker was lost 2 time(s)" in (failed.status_message or "")
    await redis.delete(ARQ_JOB_PREFIX + task.task_id)


async def test_a_task_nobody_ran_before_its_ttl_ends_failed(
    engine: TaskEngine, redis: aioredis.Redis, namespace: str
) -> None:
    task = await engine.tasks.create(ttl_ms=60_000)
    # As if its TTL had run out while no worker was there to run it.
    await redis.hset(f"{namespace}:task:{task.task_id}", "created", task.created_at_ms - 60_000)
    outcome = await engine.leases.reap(task.task_id)
    expired = await engine.tasks.get(task.task_id)
    assert outcome == "expired"
    assert expired is not None
    assert expired.status is TaskStatus.FAILED
    assert expired.status_message == "Task expired before a worker could finish it"


async def test_a_claimed_job_leaves_the_queue(healthy: TaskEngine, redis: aioredis.Redis) -> None:
    # Otherwise running jobs would crowd the head of the queue that every worker reads.
    task = await healthy.tasks.create(dispatch=True)
    assert await redis.zscore(healthy.keys.queue, task.task_id) is not None
    await healthy.leases.claim(task.task_id, "worker-a")
    assert await redis.zscore(healthy.keys.queue, task.task_id) is None
    await redis.delete(ARQ_JOB_PREFIX + task.task_id)


async def test_a_handed_back_job_goes_to_the_head_of_the_queue(
    healthy: TaskEngine, redis: aioredis.Redis
) -> None:
    task = await healthy.tasks.create(dispatch=True)
    later = await healthy.tasks.create(dispatch=True)
    await healthy.leases.claim(task.task_id, "worker-a")
    async with healthy.events.watch(healthy.keys.wake_channel) as wake:
        assert await healthy.leases.release(task.task_id, "worker-a")
        woken = await wake.next(5.0)
        while woken is not None and woken.get("type") == "reconnected":
            woken = await wake.next(5.0)
    head = await redis.zrange(healthy.keys.queue, 0, 0)
    assert head == [task.task_id.encode()]
    assert woken == {"type": "raw", "data": task.task_id}
    await redis.delete(ARQ_JOB_PREFIX + task.task_id, ARQ_JOB_PREFIX + later.task_id)
