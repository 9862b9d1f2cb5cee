"""`TaskWorker`: an arq worker that runs tasks, woken by pub/sub, with leases and a reaper.

arq delivers jobs (one per task, job id = task id); everything about the task itself (lease,
attempts, cancel, outcome) is the engine's. The loop, top to bottom:

1. wait for a wake-up (a job was enqueued, a slot freed) or at most arq's poll delay;
2. let arq pick up queued jobs into free slots (``Worker._poll_iteration``);
3. every reap interval, re-queue tasks whose worker died and fail tasks that outlived their TTL.

Each job claims its task (counting an attempt, taking the lease), runs it under a guard that
renews the lease and stops the tool on cancel, and hands it back unfinished on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from typing import Any, cast

from arq.connections import ArqRedis
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcp_tasks_redis.engine import dispatch
from mcp_tasks_redis.engine.context import CancellationToken
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.events import Watch
from mcp_tasks_redis.engine.runtime.backend import InputRequestBuilder, RedisTaskBackend
from mcp_tasks_redis.engine.runtime.execution import RunningTask, TaskRunner, execute

log = logging.getLogger("mcp_tasks_redis.worker")

# What a call to Redis raises while it is out of reach (arq's calls are not wrapped by the engine).
REDIS_DOWN = (RedisUnavailable, RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class TaskWorker(Worker):
    def __init__(
        self,
        engine: TaskEngine,
        runner: TaskRunner,
        *,
        concurrency: int = 10,
        input_request: InputRequestBuilder | None = None,
        poll_delay_s: float = 0.5,
        reap_interval_s: float = 1.0,
        health_interval_s: float = 5.0,
        worker_id: str | None = None,
        handle_signals: bool = True,
        burst: bool = False,
    ) -> None:
        self.engine = engine
        self.runner = runner
        self.worker_id = worker_id or new_worker_id()
        self.input_request = input_request
        self.reap_interval_s = reap_interval_s
        self.health_interval_s = health_interval_s
        self.started_at = time.time()
        self.completed = 0
        self.requeued = 0
        self._wake: Watch | None = None
        pool = ArqRedis(
            cast(Any, engine.redis.connection_pool),
            job_serializer=dispatch.serialize,
            job_deserializer=dispatch.deserialize,
            default_queue_name=engine.keys.queue,
        )
        super().__init__(
            # arq's timeout would kill long tools and its in-progress lock would delay crash
            # recovery until it expired; the engine's lease and reaper do both jobs instead.
            [
                func(
                    self._run_job,
                    name=dispatch.JOB_FUNCTION,
                    max_tries=1_000_000,
                    timeout=engine.limits.max_ttl_ms / 1000,
                )
            ],
            queue_name=engine.keys.queue,
            redis_pool=pool,
            max_jobs=concurrency,
            keep_result=0,
            poll_delay=poll_delay_s,
            handle_signals=handle_signals,
            burst=burst,
            job_serializer=dispatch.serialize,
            job_deserializer=dispatch.deserialize,
            health_check_interval=3600,
            log_results=False,
        )

    # -- the loop ------------------------------------------------------------------------------
    async def main(self) -> None:
        self.ctx["redis"] = self.pool
        log.info("worker %s started: %d slots, queue %s", self.worker_id, self.max_jobs, self.queue_name)
        async with self.engine.events.watch(self.engine.keys.wake_channel) as wake:
            self._wake = wake
            last_reap = last_health = 0.0
            while True:
                await self._poll_iteration()
                now = time.monotonic()
                if now - last_reap >= self.reap_interval_s:
                    last_reap = now
                    await self._reap()
                if now - last_health >= self.health_interval_s:
                    last_health = now
                    await self._report_health()
                if self.burst and not self.tasks and await self.pool.zcard(self.queue_name) == 0:
                    return
                await wake.next(self.poll_delay_s)
                wake.drain()

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_DOWN as e:
            log.warning("worker %s: queue unreachable (%s); retrying", self.worker_id, e)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        try:
            await super().start_jobs(job_ids)
        except REDIS_DOWN:
            # arq takes a slot (job counter and semaphore) before it locks the job in Redis, and
            # gives it back only when the job ends. Redis dropped before the job started, so the
            # slot is given back here, or each outage would leak one until the worker took none.
            # (Had the lock been written, the reaper delivers the job again after a lease.)
            self.job_counter -= 1
            self.sem.release()
            raise

    async def _reap(self) -> None:
        try:
            outcomes = await self.engine.leases.reap_due()
        except RedisUnavailable as e:
            log.warning("reaper: %s", e)
            return
        for task_id, outcome in outcomes.items():
            if outcome in ("requeued", "redelivered", "failed", "expired"):
                self.requeued += outcome in ("requeued", "redelivered")
                log.warning("reaper: task %s %s", task_id, outcome, extra={"task_id": task_id})

    async def _report_health(self) -> None:
        keys = self.engine.keys
        ttl_ms = int(self.health_interval_s * 3000)
        report = {
            "worker": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "running": len(self.tasks),
            "slots": self.max_jobs,
            "completed": self.completed,
            "requeued": self.requeued,
            "at": time.time(),
        }
        with contextlib.suppress(*REDIS_DOWN):
            pipe = self.engine.redis.pipeline(transaction=False)
            pipe.set(keys.worker(self.worker_id), json.dumps(report), px=ttl_ms)
            pipe.zadd(keys.workers, {self.worker_id: int(time.time() * 1000)})
            pipe.zremrangebyscore(keys.workers, "-inf", int(time.time() * 1000) - ttl_ms)
            pipe.pexpire(keys.workers, ttl_ms)
            await pipe.execute()

    # -- one job -------------------------------------------------------------------------------
    async def _run_job(self, ctx: dict[str, Any], task_id: str) -> None:
        await self.run_task(task_id)

    def _release_sem_dec_counter_on_complete(self) -> None:
        # arq frees the slot (job counter, semaphore) only here, when its job task is done, which
        # is after `_run_job` returned and arq finished the job. Wake the loop now: waking it any
        # earlier finds the slot still taken, and a queued task would wait out the poll delay.
        super()._release_sem_dec_counter_on_complete()
        if self._wake is not None:
            self._wake.push({"type": "slot-free"})

    async def run_task(self, task_id: str) -> None:
        claim = await self.engine.leases.claim(task_id, self.worker_id)
        if claim.outcome != "run" or claim.record is None:
            log.info("task %s not run: %s", task_id, claim.outcome, extra={"task_id": task_id})
            return
        record = claim.record
        extra = {"task_id": task_id, "tool": record.tool, "worker": self.worker_id, "attempt": record.attempt}
        log.info("task %s started: %s (attempt %d)", task_id, record.tool, record.attempt, extra=extra)
        backend = RedisTaskBackend(
            self.engine, task_id, worker_id=self.worker_id, input_request=self.input_request
        )
        running = RunningTask(record, self.engine, self.worker_id, CancellationToken(), backend)
        try:
            await execute(running, self.runner)
        except asyncio.CancelledError:
            # Shutdown: hand the task back so another worker starts it at once.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.engine.leases.release(task_id, self.worker_id))
            log.info("task %s handed back on shutdown", task_id, extra=extra)
            raise
        self.completed += 1
        log.info("task %s finished", task_id, extra=extra)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.engine.redis.delete(self.engine.keys.worker(self.worker_id))
        await super().close()
