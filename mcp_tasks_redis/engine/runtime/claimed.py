"""One run of a task delivered by a keyed dispatcher (engine/keyed.py): claim, run, write.

A keyed dispatcher (arq) hands its worker a task id and nothing more: no pending entry holds the
lease. The run is claimed on the record (``claim.lua``): the first claim takes run 1, a later one
(the job was delivered again after its worker died, stopped, or asked for a retry) bumps the run
number and so fences out whatever the earlier run still writes, and its `requeued` event stops
the earlier run's tool if that worker is still alive. From the claim on, the run is the streams
worker's: the same `ToolRunner`, `RedisTaskBackend` and `write_outcome`, and the same metrics.

The dispatcher decides when a job runs again; this module decides whether a delivered job may
run (the task is unfinished, within its TTL and its attempts) and ends the task when not.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import anyio

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.events import CallbackListener, Event
from mcp_tasks_redis.engine.outcome import INTERNAL_ERROR, REQUEST_TIMEOUT, Outcome
from mcp_tasks_redis.engine.record import Job
from mcp_tasks_redis.engine.replies import as_text as _text
from mcp_tasks_redis.engine.runtime.backend import RedisTaskBackend
from mcp_tasks_redis.engine.runtime.execution import RetryLater, RunningTask, ToolRunner, write_outcome
from mcp_tasks_redis.engine.runtime.observed import observed_run
from mcp_tasks_redis.engine.streams import Delivery
from mcp_tasks_redis.engine.tasks import now_ms

log = logging.getLogger("mcp_tasks_redis.worker")


@dataclass
class _Watch:
    """The task's events, followed from before the claim: a cancel published between the claim
    and the start of the tool is not missed."""

    task_id: str
    running: RunningTask | None = None
    pending: str | None = None

    def on_event(self, _: str, event: Event) -> None:
        reason: str | None = None
        if event.get("k") == "status" and event.get("st") in ("completed", "failed", "cancelled"):
            reason = f"task {event['st']}"
        elif (
            event.get("k") == "requeued"
            and self.running is not None
            and int(event.get("r") or 0) > self.running.delivery.run
        ):
            reason = "lease lost: the task was delivered again"
        if reason is None:
            return
        if self.running is not None:
            self.running.stop(reason)
        else:
            self.pending = reason


async def claim(engine: TaskEngine, task_id: str, worker_id: str, keep_ms: int) -> Delivery | str:
    """Claim the task's next run: its delivery, or why it must not run ('gone', or the terminal
    status it has). ``keep_ms``: the record, and the dispatcher's job, are kept at least that long
    (the run's longest)."""
    shard = engine.keys.shard_of(task_id)
    job = [engine.dispatcher.job_key(task_id)] if engine.dispatcher is not None else []
    reply: Any = await engine.conn.run(
        engine.conn.scripts.claim,
        [shard.task(task_id), *job],
        ["claim", task_id, worker_id, "", shard.channel, keep_ms],
        task_id=task_id,
    )
    if not reply:
        return "gone"
    fields = [_text(v) for v in reply]
    if len(fields) == 1:
        return fields[0]
    _, run, attempt, created, ttl, tool, owner, session, job, level = fields
    return Delivery(
        task_id=task_id,
        # No stream entry: the entry id stands for the creation time, as a first entry's does.
        entry_id=f"{created}-0",
        shard=shard,
        stream=shard.streams[int(level)],
        run=int(run),
        attempt=int(attempt),
        created_ms=int(created),
        ttl_ms=int(ttl),
        tool=tool or None,
        owner=owner or None,
        session=session or None,
        job=Job.from_json(job),
    )


async def hand_back(engine: TaskEngine, d: Delivery) -> bool:
    """A stopping worker gives its run up: the dispatcher's next delivery is not counted as an
    attempt. False when the run was no longer current (finished, or already delivered again)."""
    handed = await engine.conn.run(
        engine.conn.scripts.claim,
        [d.shard.task(d.task_id)],
        ["back", d.task_id, "", d.run, d.shard.channel, 0],
        task_id=d.task_id,
    )
    return bool(handed)


async def run_claimed(
    engine: TaskEngine,
    runner: ToolRunner,
    task_id: str,
    *,
    worker_id: str,
    time_limit_s: float | None,
) -> RetryLater | str:
    """Claim the task and run its tool; returns how it ended ('ok', 'lost', 'gone', a status
    that won, 'stopped', 'not run: ...'), or the `RetryLater` the dispatcher must schedule.

    ``time_limit_s``: the dispatcher's own limit on a job (less a margin); past it the task fails
    here, before the dispatcher cancels the job, so that the task never stays `working`.
    """
    limits = engine.limits
    await engine.events.ready()
    watch = _Watch(task_id)
    keep_ms = int((time_limit_s or limits.lease_ms / 1000) * 1000) + limits.grace_ms
    with engine.events.listen(task_id, CallbackListener(task_id, watch.on_event)):
        claimed = await claim(engine, task_id, worker_id, keep_ms)
        if isinstance(claimed, str):
            return f"not run: {claimed}"
        d = claimed
        running = RunningTask(d, expires_ms=max(d.deadline_ms, now_ms() + keep_ms - limits.grace_ms))
        watch.running = running
        if watch.pending is not None:
            running.stop(watch.pending)
        refusal = _refusal(d, limits.max_attempts)
        if refusal is not None:
            return await write_outcome(engine, running, Outcome.of_error(INTERNAL_ERROR, refusal))
        extra = {"task_id": d.task_id, "tool": d.tool, "worker": worker_id, "attempt": d.attempt}
        with observed_run(engine.metrics, running) as report:
            log.info("task %s started: %s (attempt %d)", d.task_id, d.tool, d.attempt, extra=extra)
            outcome: Outcome | RetryLater | None = None
            limit = math.inf if time_limit_s is None else time_limit_s
            try:
                with running.scope, anyio.move_on_after(limit) as timer:
                    outcome = await runner(running, RedisTaskBackend(engine, d))
            except anyio.get_cancelled_exc_class():
                # Not a stop of ours (that ends inside the scope): the dispatcher cancelled the
                # job, as arq does to its jobs on SIGTERM. It delivers the job again; that next
                # run is not counted as an attempt.
                running.stop_reason = "handed back"
                report.stopped("handed back")
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    handed = await hand_back(engine, d)
                    log.info("task %s handed back on shutdown (%s)", d.task_id, handed, extra=extra)
                raise
            except Exception:
                # Said on the task, as a streams worker says it: the dispatcher would only log it
                # (arq ends a job that raised for good), and the task would stay working.
                log.exception("task %s: the worker failed to run it", d.task_id, extra=extra)
                failure = Outcome.of_error(INTERNAL_ERROR, "The worker failed to run the task")
                written = await write_outcome(engine, running, failure)
                report.written(failure, written)
                return written
            if timer.cancelled_caught:
                outcome = Outcome.of_error(
                    REQUEST_TIMEOUT, f"Task ran past its dispatcher's job timeout ({limit:g} s)"
                )
            report.ran()
            if running.stop_reason is not None or outcome is None:
                reason = running.stop_reason or "stopped"
                report.stopped(reason)
                log.info("task %s finished: stopped (%s)", d.task_id, reason, extra=extra)
                return "stopped"
            if isinstance(outcome, RetryLater):
                with report.retrying(outcome), contextlib.suppress(Exception):
                    await engine.tasks.update(d.task_id, message=outcome.message, fence=d.run)
                return outcome
            written = await write_outcome(engine, running, outcome)
            report.written(outcome, written)
            if written == "ok":
                log.info("task %s finished", d.task_id, extra=extra)
            else:
                log.info("task %s finished; outcome dropped (%s)", d.task_id, written, extra=extra)
            return written


def _refusal(d: Delivery, max_attempts: int) -> str | None:
    """Why a claimed run must not start: the task's TTL or its attempts ran out."""
    if now_ms() > d.deadline_ms:
        return "Task expired before a worker could run it"
    allowed = d.attempts_allowed or max_attempts
    if d.attempt > allowed:
        return f"Task abandoned: its worker was lost {d.attempt - 1} time(s)"
    return None
