"""Job delivery through Redis Streams: one stream per shard, one consumer group of workers.

- The create script appends a task's job to its shard's stream together with the record.
- ``XREADGROUP ... BLOCK`` delivers a job and claims it in one round trip; Redis wakes one
  blocked worker per job, never all of them.
- The pending entry is the lease: its worker resets the idle time of all its entries in one call
  per shard (`renew`); an entry left idle longer than the lease belongs to a worker that died or
  stalled, and any worker takes it (``XAUTOCLAIM``) and delivers the task again from a new entry
  (`requeue`), which bumps the task's run number and so fences the old run out.
- A finished job is acknowledged and deleted in batches (`ack`), off the task's critical path.

Jobs are JSON in stream fields, never pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import ResponseError

from mcp_tasks_redis.engine.connection import RedisConnection
from mcp_tasks_redis.engine.keys import GROUP, Shard
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.lua import Arg
from mcp_tasks_redis.engine.outcome import INTERNAL_ERROR
from mcp_tasks_redis.engine.record import Job
from mcp_tasks_redis.engine.replies import as_text as _text
from mcp_tasks_redis.engine.tasks import now_ms

RequeueMode = Literal["dead", "back", "retry"]
RequeueOutcome = Literal["requeued", "delayed", "failed", "terminal", "stale", "gone"]


@dataclass(frozen=True)
class Delivery:
    """One job as a worker received it: which task, which run of it, and what to run."""

    task_id: str
    entry_id: str
    shard: Shard
    stream: str
    run: int
    attempt: int
    created_ms: int
    ttl_ms: int
    tool: str | None
    owner: str | None
    session: str | None
    job: Job

    @property
    def deadline_ms(self) -> int:
        return self.created_ms + self.ttl_ms

    @property
    def level(self) -> int:
        """The priority level it was dispatched at (engine/policy.py: 0 high, 1 normal, 2 low)."""
        return self.shard.level_of(self.stream)

    @property
    def attempts_allowed(self) -> int | None:
        """The runs the task's policy allows in all, when the server wrote it in the job."""
        allowed = self.job.meta.get("attempts")
        return allowed if isinstance(allowed, int) else None

    @classmethod
    def parse(
        cls, shard: Shard, stream: bytes | str, entry_id: bytes | str, fields: dict[bytes, bytes]
    ) -> Delivery:
        eid = _text(entry_id)
        f = {_text(k): _text(v) for k, v in fields.items()}
        return cls(
            task_id=f["id"],
            entry_id=eid,
            shard=shard,
            stream=_text(stream),
            run=int(f.get("r") or 1),
            attempt=int(f.get("a") or 1),
            # The first entry's id is the task's creation time; later entries carry it.
            created_ms=int(f.get("c") or eid.partition("-")[0]),
            ttl_ms=int(f.get("ttl") or 0),
            tool=f.get("tool"),
            owner=f.get("own"),
            session=f.get("ses"),
            job=Job.from_json(f.get("job")),
        )


class StreamDispatch:
    """The worker side of dispatch for one consumer (one worker process)."""

    def __init__(self, conn: RedisConnection, consumer: str) -> None:
        self.conn = conn
        self.consumer = consumer
        self._reclaim_cursor: dict[str, str] = {}

    async def ensure_groups(self) -> None:
        """Create the consumer group on every shard's stream (from its start: a job added before
        any worker existed is delivered too)."""
        for shard in self.conn.keys.all_shards:
            await self._ensure_group(shard)

    async def _ensure_group(self, shard: Shard) -> None:
        for stream in shard.streams:
            try:
                await self.conn.call("xgroup_create", stream, GROUP, id="0", mkstream=True)
            except ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    async def read(
        self, shard: Shard, count: int, block_ms: int | None, streams: tuple[str, ...] | None = None
    ) -> list[Delivery]:
        """Up to ``count`` new jobs of each of ``streams`` (by default all levels of ``shard``),
        waiting up to ``block_ms`` for the first one; highest priority first."""
        try:
            reply: Any = await self.conn.call(
                "xreadgroup",
                GROUP,
                self.consumer,
                dict.fromkeys(streams or shard.streams, ">"),
                count=count,
                block=block_ms,
            )
        except ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            # A stream vanished (a Redis restart without persistence): start it again.
            await self._ensure_group(shard)
            return []
        streams_read: list[tuple[Any, list[tuple[Any, dict[bytes, bytes]]]]] = reply or []
        deliveries = [
            Delivery.parse(shard, stream, eid, fields)
            for stream, entries in streams_read
            for eid, fields in entries
        ]
        deliveries.sort(key=lambda d: d.level)
        return deliveries

    async def ack(self, stream: str, entry_ids: list[str]) -> None:
        """Acknowledge and delete finished jobs of one stream (one round trip for the batch)."""
        if entry_ids:
            await self.conn.pipeline(("xack", stream, GROUP, *entry_ids), ("xdel", stream, *entry_ids))

    async def renew(self, stream: str, entry_ids: list[str]) -> set[str]:
        """Renew this consumer's leases on ``entry_ids`` of one stream; returns the ones it no
        longer holds."""
        lost: set[str] = set()
        for start in range(0, len(entry_ids), 1000):  # Lua's unpack has a stack limit
            chunk = entry_ids[start : start + 1000]
            reply: list[Any] = await self.conn.run(
                self.conn.scripts.renew, [stream], [GROUP, self.consumer, *chunk]
            )
            lost.update(_text(eid) for eid in reply)
        return lost

    async def reclaim(self, shard: Shard, min_idle_ms: int, count: int = 100) -> list[Delivery]:
        """Take over jobs whose worker stopped renewing them (XAUTOCLAIM on each level's stream,
        scanning on from where the previous call stopped)."""
        taken: list[Delivery] = []
        for stream in shard.streams:
            cursor = self._reclaim_cursor.get(stream, "0-0")
            reply: Any = await self.conn.call(
                "xautoclaim", stream, GROUP, self.consumer, min_idle_ms, start_id=cursor, count=count
            )
            self._reclaim_cursor[stream] = _text(reply[0])
            taken += [Delivery.parse(shard, stream, eid, fields) for eid, fields in reply[1] if fields]
        return taken

    async def requeue(
        self,
        delivery: Delivery,
        mode: RequeueMode,
        *,
        reason: str = "",
        due_ms: int | None = None,
        waiting_message: str = "",
        max_attempts: int | None = None,
    ) -> RequeueOutcome:
        """Deliver the task again from a new entry (see requeue.lua for the modes)."""
        shard, limits = delivery.shard, self.conn.limits
        message = reason or f"Task abandoned: its worker was lost {delivery.attempt} time(s)"
        allowed = max_attempts or delivery.attempts_allowed or limits.max_attempts
        outcome = await self.conn.run(
            self.conn.scripts.requeue,
            [shard.task(delivery.task_id), delivery.stream, shard.delayed, shard.failed],
            [
                delivery.task_id,
                delivery.entry_id,
                GROUP,
                mode,
                allowed,
                now_ms(),
                shard.channel,
                message,
                json.dumps({"code": INTERNAL_ERROR, "message": message}),
                "" if due_ms is None else due_ms,
                waiting_message,
                failed_index_ttl(limits),
            ],
            task_id=delivery.task_id,
        )
        return _text(outcome)  # type: ignore[return-value]

    async def overdue(self, shard: Shard, now: int, count: int = 100) -> list[Delivery]:
        """Jobs never delivered whose task's TTL has run out (no worker took them in time)."""
        found: list[Delivery] = []
        for stream in shard.streams:
            groups: list[dict[str, Any]] = await self.conn.call("xinfo_groups", stream)
            group = next((g for g in groups if _text(g["name"]) == GROUP), None)
            if group is None:
                continue
            start = "(" + _text(group["last-delivered-id"])
            # Entries are ordered by creation; none younger than the shortest TTL can be overdue.
            end = f"{max(0, now - self.conn.limits.min_ttl_ms)}-0"
            entries: Any = await self.conn.call("xrange", stream, start, end, count)
            deliveries = [Delivery.parse(shard, stream, eid, fields) for eid, fields in entries]
            found += [d for d in deliveries if d.deadline_ms <= now]
        return found

    async def release_due(self, shard: Shard, now: int, count: int = 100) -> int:
        """Dispatch again the tasks whose retry backoff is over; returns how many."""
        due: list[Any] = await self.conn.call("zrangebyscore", shard.delayed, "-inf", now, 0, count)
        if not due:
            return 0
        ids: list[Arg] = [_text(task_id) for task_id in due]
        released = await self.conn.run(
            self.conn.scripts.release_due,
            [shard.delayed, *shard.streams, *(shard.task(str(i)) for i in ids)],
            ids,
        )
        return int(released)

    async def expire(self, delivery: Delivery, reason: str) -> bool:
        """Fail a task whose job nobody picked up before its TTL ran out."""
        shard = delivery.shard
        failed = await self.conn.run(
            self.conn.scripts.expire,
            [shard.task(delivery.task_id), delivery.stream, shard.failed],
            [
                delivery.task_id,
                delivery.entry_id,
                GROUP,
                now_ms(),
                shard.channel,
                reason,
                json.dumps({"code": INTERNAL_ERROR, "message": reason}),
                failed_index_ttl(self.conn.limits),
            ],
            task_id=delivery.task_id,
        )
        return bool(failed)


def failed_index_ttl(limits: TaskLimits) -> int:
    """The failed-task index outlives every task it lists (members are pruned as they expire)."""
    return limits.max_ttl_ms + limits.grace_ms
