"""`Worker`: one worker process's loop, top to bottom.

1. Each shard's reader waits for a free slot, then blocks on ``XREADGROUP`` until Redis hands it
   jobs (Redis wakes one blocked worker per job); each job runs in its own slot.
2. A running task listens to its own events: a cancel, or its delivery to another worker after
   this one stalled, stops the tool at once.
3. Every third of the lease, one call per shard renews the leases of all the worker's running
   tasks; entries it no longer holds (a cancel it did not hear of, a take-over) stop their tools.
4. Every reap interval, jobs whose worker died (idle past the lease) are delivered again, and
   jobs nobody picked up before their TTL ran out fail.
5. Finished jobs are acknowledged in batches.

On stop (SIGTERM) the worker stops reading, stops its tools and hands their tasks back to the
queue, so another worker starts them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.events import CallbackListener, Event
from mcp_tasks_redis.engine.keys import Shard
from mcp_tasks_redis.engine.outcome import INTERNAL_ERROR, Outcome
from mcp_tasks_redis.engine.quotas import owner_key
from mcp_tasks_redis.engine.runtime.backend import RedisTaskBackend
from mcp_tasks_redis.engine.runtime.execution import (
    RetryLater,
    RunningTask,
    RunResult,
    ToolRunner,
    write_outcome,
)
from mcp_tasks_redis.engine.runtime.health import HealthReport
from mcp_tasks_redis.engine.runtime.observed import RunReport, observed_run
from mcp_tasks_redis.engine.runtime.picking import Picker, Slots
from mcp_tasks_redis.engine.streams import Delivery, StreamDispatch
from mcp_tasks_redis.engine.tasks import now_ms

log = logging.getLogger("mcp_tasks_redis.worker")


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Worker:
    def __init__(
        self,
        engine: TaskEngine,
        runner: ToolRunner,
        *,
        concurrency: int = 10,
        worker_id: str | None = None,
        block_ms: int = 5_000,
        ack_delay_s: float = 0.05,
        health_interval_s: float = 5.0,
        burst: bool = False,
    ) -> None:
        """``burst``: stop once no job is waiting and no task runs (for scripts and tests)."""
        self.engine = engine
        self.runner = runner
        self.worker_id = worker_id or new_worker_id()
        self.dispatch = StreamDispatch(engine.conn, self.worker_id)
        self.slots = Slots(concurrency)
        self.block_ms = block_ms
        self.ack_delay_s = ack_delay_s
        self.health_interval_s = health_interval_s
        self.burst = burst
        self.lease_interval_s = engine.limits.lease_ms / 3000
        self.started_at = time.time()
        self.completed = 0
        self.requeued = 0
        self._running: dict[str, RunningTask] = {}
        self._pickers = {
            shard: Picker(self.dispatch, shard, None if burst else block_ms)
            for shard in engine.keys.all_shards
        }
        self._acks: dict[str, list[str]] = {}
        self._acks_waiting = asyncio.Event()
        self._stopping = asyncio.Event()
        self._health = HealthReport(self, health_interval_s)
        self.metrics = engine.metrics
        self.metrics.declare_tools(runner.registry.names(), "worker")
        self.metrics.track_worker(lambda: len(self._running), concurrency)

    @property
    def running(self) -> dict[str, RunningTask]:
        """The tasks running now, by task id."""
        return self._running

    def stop(self) -> None:
        """Stop reading; running tasks are handed back and `run` returns."""
        self._stopping.set()

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        await self.dispatch.ensure_groups()
        await self.engine.events.ready()
        self.engine.events.on_reconnect(self._renew_leases)
        log.info("worker %s started: %d slots", self.worker_id, self.slots.size)
        try:
            async with anyio.create_task_group() as tasks:
                async with anyio.create_task_group() as service:
                    service.start_soon(self._keep_leases)
                    service.start_soon(self._reap_forever)
                    service.start_soon(self._ack_forever)
                    service.start_soon(self._health.report_forever)
                    for shard in self.engine.keys.all_shards:
                        service.start_soon(self._read_forever, shard, tasks)
                    await self._stopping.wait()
                    service.cancel_scope.cancel()
                await self._hand_back_all()
        finally:
            with contextlib.suppress(RedisUnavailable):
                await self._flush_acks()
            await self._health.withdraw()
            log.info("worker %s stopped", self.worker_id)

    async def _read_forever(self, shard: Shard, tasks: TaskGroup) -> None:
        # One shard: its reader takes every free slot and asks for that many jobs. Several: each
        # reader blocks on its shard holding no slot (else a few idle shards could hold them all),
        # and a job that finds no slot free when it arrives is kept, already this worker's, for
        # the next one.
        single = len(self.engine.keys.all_shards) == 1
        picker = self._pickers[shard]
        backoff = 0.05
        while True:
            if single:
                taken = await self.slots.take(self.slots.size)
            else:
                await self.slots.until_free()
                taken = 0
            try:
                deliveries = await picker.take(taken or 1)
            except RedisUnavailable as e:
                self.slots.give(taken)
                # Said once per outage: a failover makes every shard's reader fail for seconds.
                level = logging.WARNING if backoff == 0.05 else logging.DEBUG
                log.log(level, "worker %s: queue unreachable (%s); retrying", self.worker_id, e)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except BaseException:
                self.slots.give(taken)
                raise
            backoff = 0.05
            if single:
                self.slots.give(taken - len(deliveries))
            else:
                taken = self.slots.take_now(len(deliveries))
                picker.kept += deliveries[taken:]
                deliveries = deliveries[:taken]
            if self.burst and not deliveries and not picker.kept:
                await self._drained()
                continue
            for delivery in deliveries:
                running = self._start(delivery)
                tasks.start_soon(self._run, running, name=f"task {delivery.task_id}")
            # Let the tasks just delivered start before the next XREADGROUP is sent: reading again
            # first puts a socket write (and the reply's wake-up) ahead of every tool's start.
            await anyio.lowlevel.checkpoint()

    async def _drained(self) -> None:
        """Burst mode: stop when nothing runs; else read again once a running task ends."""
        self.slots.forget_changes()
        if not self._running:
            self.stop()
            await anyio.sleep_forever()
        await self.slots.changed()

    def _start(self, d: Delivery) -> RunningTask:
        # Registered before anything awaits, so no event about the task can slip past.
        limits = self.engine.limits
        running = RunningTask(d, expires_ms=d.deadline_ms + limits.grace_ms)
        self._running[d.task_id] = running
        return running

    async def _run(self, running: RunningTask) -> None:
        d = running.delivery
        extra = {"task_id": d.task_id, "tool": d.tool, "worker": self.worker_id, "attempt": d.attempt}
        listener = CallbackListener(d.task_id, lambda _, event: self._on_event(running, event))
        report: RunReport | None = None
        interrupted = release_quota = False
        try:
            with (
                self.engine.events.listen(d.task_id, listener),
                observed_run(self.metrics, running) as report,
            ):
                log.info("task %s started: %s (attempt %d)", d.task_id, d.tool, d.attempt, extra=extra)
                backend = RedisTaskBackend(self.engine, d)
                outcome: RunResult | None = None
                with running.scope:
                    outcome = await self.runner(running, backend)
                report.ran()
                if isinstance(outcome, RetryLater) and running.stop_reason is None:
                    await self._retry_later(running, outcome, report)
                elif isinstance(outcome, Outcome) and running.stop_reason is None:
                    written = await write_outcome(self.engine, running, outcome)
                    report.written(outcome, written)
                    release_quota = True
                    if written == "ok":
                        self.completed += 1
                        log.info("task %s finished", d.task_id, extra=extra)
                    else:
                        log.info("task %s finished; outcome dropped (%s)", d.task_id, written, extra=extra)
                elif running.stop_reason is not None:
                    report.stopped(running.stop_reason)
                    log.info("task %s finished: stopped (%s)", d.task_id, running.stop_reason, extra=extra)
        except anyio.get_cancelled_exc_class():
            # Cancelled from outside the run's own scope: the entry stays pending, so the task is
            # delivered again after its lease rather than acknowledged unfinished.
            interrupted = running.stop_reason is None
            raise
        except Exception:
            log.exception("task %s: the worker failed to run it", d.task_id, extra=extra)
            if running.stop_reason is None:
                with contextlib.suppress(Exception):
                    failure = Outcome.of_error(INTERNAL_ERROR, "The worker failed to run the task")
                    written = await write_outcome(self.engine, running, failure)
                    if report is not None:
                        report.written(failure, written)
        finally:
            if self._running.get(d.task_id) is running:
                del self._running[d.task_id]
            if not interrupted and running.stop_reason not in ("handed back", "retrying"):
                self._ack(d)
            self.slots.give()
        if release_quota:  # after the slot is free: the next job need not wait for it
            await self._release_quota(d)

    async def _release_quota(self, d: Delivery) -> None:
        """The task's owner may start its next queued task (engine/quotas.py)."""
        with contextlib.suppress(RedisUnavailable):  # its place stops counting at its expiry
            await self.engine.tasks.quotas.release(d.shard, d.task_id, owner_key(d.owner, d.session))

    async def _retry_later(self, running: RunningTask, retry: RetryLater, report: RunReport) -> None:
        d = running.delivery
        due = now_ms() + int(retry.delay_s * 1000)
        with report.retrying(retry):
            outcome = await self.dispatch.requeue(
                d, "retry", due_ms=due, waiting_message=retry.message, max_attempts=retry.attempts
            )
        if outcome == "failed":
            report.retry_failed()
        running.stop_reason = "retrying"  # the requeue took its entry: nothing to acknowledge
        log.info("task %s %s (%s)", d.task_id, retry.message, outcome, extra={"task_id": d.task_id})

    def _on_event(self, running: RunningTask, event: Event) -> None:
        kind = event.get("k")
        if kind == "status" and event.get("st") in ("completed", "failed", "cancelled"):
            running.stop(f"task {event['st']}")
        elif kind == "requeued" and int(event.get("r") or 0) > running.delivery.run:
            running.stop("lease lost: the task was delivered again")

    # -- leases --------------------------------------------------------------------------------
    async def _keep_leases(self) -> None:
        while True:
            await anyio.sleep(self.lease_interval_s)
            await self._renew_leases()

    async def _renew_leases(self) -> None:
        """One call per stream renews the leases of every job the worker holds (running, or kept
        for its next free slot); lost ones stop their tools, or are forgotten."""
        held: dict[str, list[Delivery]] = {}
        for running in list(self._running.values()):
            held.setdefault(running.delivery.stream, []).append(running.delivery)
        for picker in self._pickers.values():
            for kept in picker.kept:
                held.setdefault(kept.stream, []).append(kept)
        for stream, deliveries in held.items():
            try:
                lost = await self.dispatch.renew(stream, [d.entry_id for d in deliveries])
                await self._extend_expiry(
                    deliveries[0].shard,
                    [self._running[d.task_id] for d in deliveries if d.task_id in self._running],
                )
            except RedisUnavailable as e:
                # The lease outlives short outages; the next renewal tries again.
                log.warning("worker %s: leases not renewed (%s)", self.worker_id, e)
                continue
            for d in deliveries:
                running = self._running.get(d.task_id)
                if d.entry_id in lost and running is not None and running.delivery.entry_id == d.entry_id:
                    running.stop("lease lost: the task was cancelled or taken over")
            self._pickers[deliveries[0].shard].forget(lost)

    async def _extend_expiry(self, shard: Shard, runs: list[RunningTask]) -> None:
        """A task is never deleted while it runs: keys close to expiring are given more time."""
        limits, now = self.engine.limits, now_ms()
        soon = now + 2 * self.engine.limits.lease_ms
        due = [r for r in runs if r.expires_ms < soon]
        if not due:
            return
        extend = max(limits.min_ttl_ms, 4 * limits.lease_ms) + limits.grace_ms
        await self.engine.conn.pipeline(*[("pexpire", shard.task(r.delivery.task_id), extend) for r in due])
        for running in due:
            running.expires_ms = now + extend

    # -- recovery ------------------------------------------------------------------------------
    async def _reap_forever(self) -> None:
        while True:
            # Jittered, so that workers started together do not reap in lockstep.
            await anyio.sleep(self.lease_interval_s * random.uniform(0.5, 1.5))
            for shard in self.engine.keys.all_shards:
                try:
                    await self._reap(shard)
                except RedisUnavailable as e:
                    log.warning("reaper: %s", e)

    async def _reap(self, shard: Shard) -> None:
        limits = self.engine.limits
        for d in await self.dispatch.reclaim(shard, limits.lease_ms):
            mine = self._running.get(d.task_id)
            if mine is not None and mine.delivery.entry_id == d.entry_id:
                continue  # this worker stalled past its own lease; it still runs the task
            outcome = await self.dispatch.requeue(d, "dead")
            self.requeued += outcome == "requeued"
            if outcome == "failed":
                self.metrics.task_failed(d.tool)
                await self._release_quota(d)
            if outcome in ("requeued", "failed"):
                self.metrics.lease_expired(d.tool, rerun=outcome == "requeued")
                log.warning(
                    "reaper: task %s %s (its worker was lost)",
                    d.task_id,
                    outcome,
                    extra={"task_id": d.task_id},
                )
        if self.engine.limits.quotas:
            await self.engine.tasks.quotas.admit_waiting(shard)
        released = await self.dispatch.release_due(shard, now_ms())
        if released:
            log.info("reaper: %d task(s) dispatched again after their retry backoff", released)
        for d in await self.dispatch.overdue(shard, now_ms()):
            if await self.dispatch.expire(d, "Task expired before a worker could run it"):
                self.metrics.task_failed(d.tool)
                await self._release_quota(d)
                log.warning(
                    "reaper: task %s expired before a worker took it", d.task_id, extra={"task_id": d.task_id}
                )

    # -- acknowledgements ----------------------------------------------------------------------
    def _ack(self, d: Delivery) -> None:
        self._acks.setdefault(d.stream, []).append(d.entry_id)
        self._acks_waiting.set()

    async def _ack_forever(self) -> None:
        while True:
            await self._acks_waiting.wait()
            # A short delay gathers the jobs that finish together into one round trip.
            await anyio.sleep(self.ack_delay_s)
            try:
                await self._flush_acks()
            except RedisUnavailable as e:
                log.warning("worker %s: acknowledgements delayed (%s)", self.worker_id, e)
                await anyio.sleep(0.5)

    async def _flush_acks(self) -> None:
        self._acks_waiting.clear()
        batches, self._acks = self._acks, {}
        for stream, entry_ids in batches.items():
            try:
                await self.dispatch.ack(stream, entry_ids)
            except RedisUnavailable:
                self._acks.setdefault(stream, []).extend(entry_ids)
                self._acks_waiting.set()
                raise

    # -- shutdown ------------------------------------------------------------------------------
    async def _hand_back_all(self) -> None:
        running = list(self._running.values())
        for task in running:
            task.stop("handed back")
        for task in running:
            try:
                outcome = await self.dispatch.requeue(task.delivery, "back")
            except RedisUnavailable as e:
                # The lease will lapse and another worker will take the task: nothing is lost.
                log.warning(
                    "task %s not handed back (%s); it is re-run after its lease", task.delivery.task_id, e
                )
                continue
            log.info(
                "task %s handed back on shutdown (%s)",
                task.delivery.task_id,
                outcome,
                extra={"task_id": task.delivery.task_id},
            )
