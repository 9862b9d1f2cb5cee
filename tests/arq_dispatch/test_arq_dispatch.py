"""The arq dispatcher in one process: the job written with the task, JSON only; runs through arq's
own Worker (burst mode) to completed; cancel before and during a run; the record lease that
fences a run arq started again, counts attempts, and does not count a hand-back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

pytest.importorskip("arq", reason='the arq dispatcher needs the [arq] extra: pip install ".[arq]"')

import redis.asyncio as aioredis
from arq.jobs import deserialize_job

from mcp_tasks_redis.arq_dispatch import FUNCTION_NAME, ArqDispatch, json_deserializer, queue_name_for
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.outcome import Outcome
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.engine.runtime.claimed import claim, run_claimed
from mcp_tasks_redis.engine.runtime.execution import RunningTask, write_outcome
from mcp_tasks_redis.engine.streams import Delivery
from mcp_tasks_redis.ops.processes import engine_from
from mcp_tasks_redis.settings import Settings
from tests.arq_dispatch.arq_app import CALLS, STOPPED
from tests.arq_dispatch.helpers import (
    arq_keys_left,
    arq_tasks,
    burst_worker,
    drop_arq_keys,
    run_burst,
)
from tests.arq_dispatch.limits import LIMITS


async def finished(engine: TaskEngine, task_id: str, timeout: float = 10) -> TaskRecord:
    record = await engine.wait_until(task_id, lambda r: r is None or r.is_terminal, timeout=timeout)
    assert record is not None
    return record


async def test_create_writes_the_arq_job_with_the_task_as_json(
    engine: TaskEngine, redis: aioredis.Redis
) -> None:
    task = await engine.tasks.create(tool="echo", arguments={"text": "hi"}, dispatch=True)
    try:
        raw = await redis.get(f"arq:job:{task.task_id}")
        assert raw is not None
        # JSON, never pickle; in arq's own job format, which arq's deserializer reads back.
        assert json.loads(raw)["a"] == [task.task_id]
        job = deserialize_job(raw, deserializer=json_deserializer)
        assert (job.function, job.args, job.kwargs, job.job_try) == (FUNCTION_NAME, [task.task_id], {}, None)
        queue = queue_name_for(engine.keys.namespace)
        assert await redis.zscore(queue, task.task_id) == task.created_at_ms
        # The job lives as long as the record, and no stream entry was written.
        record_ttl = await redis.pttl(engine.keys.task(task.task_id))
        assert 0 < record_ttl - 1_000 <= await redis.pttl(f"arq:job:{task.task_id}") <= record_ttl
        shard = engine.keys.shard_of(task.task_id)
        assert [await redis.exists(stream) for stream in shard.streams] == [0, 0, 0]
        assert task.entry_id is None
    finally:
        await drop_arq_keys(redis, [task.task_id])


async def test_a_task_runs_to_completed_through_arq(
    engine: TaskEngine, redis: aioredis.Redis, redis_url: str
) -> None:
    task = await engine.tasks.create(tool="echo", arguments={"text": "hi"}, dispatch=True)
    worker = await run_burst(arq_tasks(engine, redis_url))
    done = await finished(engine, task.task_id)
    assert (done.status, done.result) == (
        TaskStatus.COMPLETED,
        {"content": [{"type": "text", "text": "echo: hi"}]},
    )
    assert (done.run, done.attempt, worker.jobs_complete) == (1, 1, 1)
    # arq cleaned up after the job, and kept no result of its own (the outcome is the task's).
    assert await arq_keys_left(redis, [task.task_id]) == {}
    assert await redis.exists(queue_name_for(engine.keys.namespace)) == 0


async def test_a_task_cancelled_before_pickup_never_runs_its_tool(
    engine: TaskEngine, redis: aioredis.Redis, redis_url: str
) -> None:
    task = await engine.tasks.create(tool="echo", arguments={"text": "never"}, dispatch=True)
    await engine.tasks.cancel(task.task_id)
    calls = len(CALLS)
    await run_burst(arq_tasks(engine, redis_url))
    record = await engine.tasks.get(task.task_id)
    assert record is not None
    assert record.status is TaskStatus.CANCELLED
    assert len(CALLS) == calls
    assert await arq_keys_left(redis, [task.task_id]) == {}


async def test_a_cancel_stops_the_running_tool(
    engine: TaskEngine, redis: aioredis.Redis, redis_url: str
) -> None:
    task = await engine.tasks.create(tool="hold", dispatch=True)
    running = asyncio.create_task(run_burst(arq_tasks(engine, redis_url)))
    await engine.wait_until(
        task.task_id, lambda r: r is not None and r.status_message == "started on attempt 1", timeout=10
    )
    await engine.tasks.cancel(task.task_id)
    await asyncio.wait_for(running, 10)  # the burst worker ends once the stopped job has ended
    record = await engine.tasks.get(task.task_id)
    assert record is not None
    assert record.status is TaskStatus.CANCELLED
    assert task.task_id in STOPPED
    assert await arq_keys_left(redis, [task.task_id]) == {}


async def test_a_retry_is_a_later_arq_run_counted_as_an_attempt(
    engine: TaskEngine, redis: aioredis.Redis, redis_url: str
) -> None:
    task = await engine.tasks.create(tool="flaky", dispatch=True)
    await run_burst(arq_tasks(engine, redis_url))
    done = await finished(engine, task.task_id)
    assert (done.status, done.attempt, done.run) == (TaskStatus.COMPLETED, 2, 2)
    assert done.result == {"content": [{"type": "text", "text": "ok on attempt 2"}]}
    assert await arq_keys_left(redis, [task.task_id]) == {}


async def _claimed(engine: TaskEngine, task_id: str, worker: str) -> Delivery:
    claimed = await claim(engine, task_id, worker, 60_000)
    assert isinstance(claimed, Delivery), claimed
    return claimed


async def test_a_run_arq_starts_again_fences_the_earlier_one_out(
    engine: TaskEngine, redis: aioredis.Redis
) -> None:
    task = await engine.tasks.create(tool="echo", arguments={"text": "x"}, dispatch=True)
    try:
        first = await _claimed(engine, task.task_id, "a")
        # arq's in-progress key expired (worker a stalled or died): another worker runs the job.
        second = await _claimed(engine, task.task_id, "b")
        assert (first.run, first.attempt, second.run, second.attempt) == (1, 1, 2, 2)
        outcome = Outcome(result={"content": [{"type": "text", "text": "late"}]})
        stale = RunningTask(first, expires_ms=first.deadline_ms + LIMITS.grace_ms)
        assert await write_outcome(engine, stale, outcome) == "lost"
        current = RunningTask(second, expires_ms=second.deadline_ms + LIMITS.grace_ms)
        assert await write_outcome(engine, current, outcome) == "ok"
    finally:
        await drop_arq_keys(redis, [task.task_id])


async def test_the_later_run_stops_the_tool_of_the_earlier_one(
    engine: TaskEngine, redis: aioredis.Redis, redis_url: str
) -> None:
    task = await engine.tasks.create(tool="hold", dispatch=True)
    try:
        runner = arq_tasks(engine, redis_url)
        worker = burst_worker(runner)  # only for its runner: this test calls run_claimed itself
        await runner.on_startup(worker.ctx)
        host = worker.ctx["mcp_tasks_redis"]
        earlier = asyncio.create_task(
            run_claimed(host.engine, host.runner, task.task_id, worker_id="a", time_limit_s=30)
        )
        await engine.wait_until(
            task.task_id, lambda r: r is not None and r.status_message == "started on attempt 1", timeout=10
        )
        await _claimed(engine, task.task_id, "b")
        assert await asyncio.wait_for(earlier, 10) == "stopped"
        assert task.task_id in STOPPED
        await runner.on_shutdown(worker.ctx)
    finally:
        await drop_arq_keys(redis, [task.task_id])


async def test_when_runs_run_out_a_delivered_job_fails_its_task(
    engine: TaskEngine, redis: aioredis.Redis, redis_url: str
) -> None:
    task = await engine.tasks.create(tool="echo", arguments={"text": "x"}, dispatch=True)
    for worker in ("a", "b", "c"):  # three runs lost: arq delivers the job a fourth time
        await _claimed(engine, task.task_id, worker)
    calls = len(CALLS)
    await run_burst(arq_tasks(engine, redis_url))
    done = await finished(engine, task.task_id)
    assert done.status is TaskStatus.FAILED
    assert done.error == {"code": -32603, "message": "Task abandoned: its worker was lost 3 time(s)"}
    assert len(CALLS) == calls
    assert await arq_keys_left(redis, [task.task_id]) == {}


async def test_a_run_handed_back_on_shutdown_is_not_counted(
    engine: TaskEngine, redis: aioredis.Redis, redis_url: str
) -> None:
    task = await engine.tasks.create(tool="hold", dispatch=True)
    try:
        runner = arq_tasks(engine, redis_url)
        worker = burst_worker(runner)
        await runner.on_startup(worker.ctx)
        host = worker.ctx["mcp_tasks_redis"]
        run = asyncio.create_task(
            run_claimed(host.engine, host.runner, task.task_id, worker_id="a", time_limit_s=30)
        )
        await engine.wait_until(
            task.task_id, lambda r: r is not None and r.status_message == "started on attempt 1", timeout=10
        )
        run.cancel()  # what arq does to its running jobs on SIGTERM
        with pytest.raises(asyncio.CancelledError):
            await run
        again = await _claimed(engine, task.task_id, "b")
        assert (again.run, again.attempt) == (2, 1)
        await runner.on_shutdown(worker.ctx)
    finally:
        await drop_arq_keys(redis, [task.task_id])


async def test_settings_choose_the_arq_dispatcher_for_every_process(namespace: str, redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, namespace=namespace, dispatcher="arq")
    engine = engine_from(settings)
    try:
        assert isinstance(engine.dispatcher, ArqDispatch)
        assert engine.dispatcher.queue_name == f"{namespace}:arq:queue"
    finally:
        await engine.close()
    streams = engine_from(Settings(redis_url=redis_url, namespace=namespace))
    assert streams.dispatcher is None
    await streams.close()


async def test_per_owner_quotas_need_the_streams_dispatcher(redis: aioredis.Redis, namespace: str) -> None:
    with pytest.raises(ValueError, match="quotas need the streams dispatcher"):
        TaskEngine(
            redis,
            namespace=namespace,
            limits=TaskLimits(owner_max_running=2),
            dispatcher=ArqDispatch.for_namespace(namespace),
        )


async def test_a_claim_keeps_the_job_for_as_long_as_the_run_may_take(
    engine: TaskEngine, redis: aioredis.Redis
) -> None:
    task = await engine.tasks.create(tool="echo", arguments={"text": "x"}, dispatch=True)
    try:
        job_key = f"arq:job:{task.task_id}"
        assert await redis.pttl(job_key) <= task.ttl_ms + LIMITS.grace_ms
        keep_ms = task.ttl_ms + LIMITS.grace_ms + 600_000
        await claim(engine, task.task_id, "a", keep_ms)
        # A job arq delivers again after the task's TTL still reaches a worker, which then fails
        # the task visibly rather than arq dropping a job it can no longer read.
        assert await redis.pttl(job_key) > task.ttl_ms + LIMITS.grace_ms
        assert await redis.pttl(engine.keys.task(task.task_id)) > task.ttl_ms + LIMITS.grace_ms
    finally:
        await drop_arq_keys(redis, [task.task_id])


async def test_a_job_delivered_after_its_task_expired_fails_the_task(
    redis: aioredis.Redis, namespace: str, redis_url: str
) -> None:
    limits = dataclasses.replace(LIMITS, min_ttl_ms=1)
    engine = TaskEngine(
        redis, namespace=namespace, limits=limits, dispatcher=ArqDispatch.for_namespace(namespace)
    )
    try:
        task = await engine.tasks.create(tool="echo", arguments={"text": "late"}, ttl_ms=1, dispatch=True)
        calls = len(CALLS)
        await run_burst(arq_tasks(engine, redis_url))
        done = await finished(engine, task.task_id)
        assert done.status is TaskStatus.FAILED
        assert done.error == {"code": -32603, "message": "Task expired before a worker could run it"}
        assert len(CALLS) == calls
        assert await arq_keys_left(redis, [task.task_id]) == {}
    finally:
        await engine.close()


async def test_a_run_that_breaks_the_worker_fails_its_task_rather_than_leave_it_working(
    engine: TaskEngine, redis: aioredis.Redis
) -> None:
    task = await engine.tasks.create(tool="echo", arguments={"text": "x"}, dispatch=True)

    async def broken(running: RunningTask, backend: object) -> Outcome:
        raise RuntimeError("the runner itself failed")

    try:
        ended = await run_claimed(engine, broken, task.task_id, worker_id="a", time_limit_s=5)  # type: ignore[arg-type]
        assert ended == "ok"
        done = await finished(engine, task.task_id)
        assert done.status is TaskStatus.FAILED
        assert done.error == {"code": -32603, "message": "The worker failed to run the task"}
    finally:
        await drop_arq_keys(redis, [task.task_id])
