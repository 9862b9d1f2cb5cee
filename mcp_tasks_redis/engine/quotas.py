"""Per-owner quotas: how many tasks of one caller run at once, wait, and start per minute.

An owner is the authenticated principal, or the session without authentication. With a running
limit, a task starts at once only while its owner runs fewer than the limit; otherwise it waits,
``working``, in its owner's queue (FIFO), and starts when one of the owner's tasks ends. So an
owner with a thousand queued tasks holds at most its limit of the workers' slots, and another
owner's task waits for no more than one task's run per slot. Past the queue limit, or the
creation rate, a call is refused with `QuotaExceeded`.

The create script decides (engine/scripts/create.lua); ending a task gives its place up
(`release`), and the queue's head is then dispatched (`admit`). A process that dies between the
two leaves nothing stuck: a running entry stops counting at its task's expiry, and every worker's
reaper admits the queues' heads (`admit_waiting`).
"""

from __future__ import annotations

from typing import Any

from mcp_tasks_redis.engine.connection import RedisConnection
from mcp_tasks_redis.engine.keys import Shard
from mcp_tasks_redis.engine.replies import as_text as _text


def owner_key(owner: str | None, session: str | None) -> str | None:
    """Whose quota a task counts against: the principal, else the session, else nobody's."""
    if owner is not None:
        return f"o:{owner}"
    return f"s:{session}" if session is not None else None


class Quotas:
    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn

    @property
    def enabled(self) -> bool:
        return self.conn.limits.quotas

    def keys(self, shard: Shard, owner: str | None) -> list[str]:
        """The create script's quota keys (declared even when unused: every key in KEYS)."""
        key = owner or ""
        return [shard.owner_running(key), shard.owner_queue(key), shard.owner_rate(key), shard.queued_owners]

    def spec(self, owner: str | None) -> str:
        """The create script's quota argument: '' when no quota applies to this task."""
        limits = self.conn.limits
        if not self.enabled or owner is None:
            return ""
        running = limits.owner_max_running or 2**31
        return (
            f"{running},{limits.owner_max_queued},{limits.owner_rate},{limits.owner_rate_window_ms},{owner}"
        )

    async def release(self, shard: Shard, task_id: str, owner: str | None) -> None:
        """Give up the task's place (running or queued), and start the owner's next task."""
        if not self.enabled or owner is None:
            return
        head = await self.conn.run(
            self.conn.scripts.release,
            [shard.owner_running(owner), shard.owner_queue(owner), shard.queued_owners],
            [task_id, owner],
        )
        await self.admit(shard, owner, head)

    async def admit(self, shard: Shard, owner: str, head: Any) -> int:
        """Dispatch queued tasks of ``owner`` from ``head`` on while it runs fewer than its limit."""
        limits, admitted = self.conn.limits, 0
        running = limits.owner_max_running or 2**31
        while head:
            task_id = _text(head)
            outcome, head = await self.conn.run(
                self.conn.scripts.admit,
                [
                    shard.task(task_id),
                    *shard.streams,
                    shard.owner_running(owner),
                    shard.owner_queue(owner),
                    shard.queued_owners,
                ],
                [task_id, running, owner, shard.channel, limits.max_ttl_ms + limits.grace_ms],
                task_id=task_id,
            )
            if _text(outcome) == "admitted":
                admitted += 1
            elif _text(outcome) == "full":
                break
        return admitted

    async def admit_waiting(self, shard: Shard, count: int = 100) -> int:
        """Start what every queued owner of the shard may start now (the reapers' safety net)."""
        owners: list[Any] = await self.conn.call("zrange", shard.queued_owners, 0, count - 1)
        admitted = 0
        for raw in owners:
            owner = _text(raw)
            head = await self.conn.call("lindex", shard.owner_queue(owner), 0)
            if head is None:
                await self.conn.call("zrem", shard.queued_owners, owner)
                continue
            admitted += await self.admit(shard, owner, head)
        return admitted
