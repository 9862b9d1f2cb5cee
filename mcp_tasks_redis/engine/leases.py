"""Worker liveness: a running task holds a lease its worker renews; a stale lease is re-queued.

arq's own in-progress lock is never renewed and lasts the longest job timeout plus 10 s. The
lease here is the authority instead: a worker renews it every third of its length, and any
worker's reaper re-queues a task whose lease ran out (up to the task's attempt limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mcp_tasks_redis.engine.connection import RedisConnection
from mcp_tasks_redis.engine.dispatch import (
    ARQ_IN_PROGRESS_PREFIX,
    ARQ_JOB_PREFIX,
    in_progress_lock_ms,
    job_payload,
)
from mcp_tasks_redis.engine.record import TaskRecord

ClaimOutcome = Literal["run", "terminal", "missing", "held", "exhausted"]
ReapOutcome = Literal[
    "gone", "terminal", "alive", "failed", "requeued", "redelivered", "picked", "expired", "waiting"
]


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    record: TaskRecord | None = None
    holder: str | None = None


class Leases:
    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn

    def _keys(self, task_id: str) -> list[str]:
        return [*self.conn.keys.task_keys(task_id), self.conn.keys.active]

    async def claim(self, task_id: str, worker_id: str) -> Claim:
        """Take the task for ``worker_id``: one attempt counted, lease taken."""
        limits = self.conn.limits
        reply: list[Any] = await self.conn.run(
            self.conn.scripts.claim,
            [*self._keys(task_id), self.conn.keys.queue],
            [
                worker_id,
                limits.lease_ms,
                limits.grace_ms,
                self.conn.keys.channel(task_id),
                limits.event_stream_len,
            ],
            task_id=task_id,
        )
        outcome = _text(reply[0])
        if outcome == "held":
            return Claim("held", holder=_text(reply[1]))
        record = TaskRecord.from_redis(reply[1]) if len(reply) > 1 else None
        return Claim(outcome, record)  # type: ignore[arg-type]

    async def heartbeat(self, task_id: str, worker_id: str) -> str:
        """Renew the lease; returns the task's status, or 'lost' / 'missing'."""
        limits = self.conn.limits
        status = await self.conn.run(
            self.conn.scripts.heartbeat,
            self._keys(task_id),
            [worker_id, limits.lease_ms, limits.grace_ms],
            task_id=task_id,
        )
        return _text(status)

    async def release(self, task_id: str, worker_id: str) -> bool:
        """Hand a task back (worker stopping): the attempt is not counted."""
        keys = self.conn.keys
        released = await self.conn.run(
            self.conn.scripts.release,
            [*self._keys(task_id), keys.queue, ARQ_JOB_PREFIX + task_id],
            [worker_id, keys.wake_channel, job_payload(task_id)],
        )
        return bool(released)

    async def due(self, limit: int = 100) -> list[str]:
        """Unfinished tasks whose lease or deadline has passed, by the Redis server's clock."""
        seconds, micros = await self.conn.call("time")
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        ids: list[bytes] = await self.conn.call(
            "zrangebyscore", self.conn.keys.active, "-inf", now_ms, 0, limit
        )
        return [i.decode() for i in ids]

    async def reap(self, task_id: str) -> ReapOutcome:
        keys, limits = self.conn.keys, self.conn.limits
        outcome = await self.conn.run(
            self.conn.scripts.reap,
            [*self._keys(task_id), keys.queue, ARQ_IN_PROGRESS_PREFIX + task_id, ARQ_JOB_PREFIX + task_id],
            [
                task_id,
                limits.grace_ms,
                keys.channel(task_id),
                limits.event_stream_len,
                keys.wake_channel,
                job_payload(task_id),
                limits.lease_ms,
                in_progress_lock_ms(limits.max_ttl_ms),
            ],
            task_id=task_id,
        )
        return _text(outcome)  # type: ignore[return-value]

    async def reap_due(self, limit: int = 100) -> dict[str, ReapOutcome]:
        return {task_id: await self.reap(task_id) for task_id in await self.due(limit)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
