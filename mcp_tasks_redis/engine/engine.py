"""`TaskEngine`: one object that gathers the engine's parts over one Redis connection.

Server replicas, workers and the admin commands each hold one engine per namespace. It also owns
the one wait primitive everything else uses: pub/sub raced against a bounded re-read of the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from mcp_tasks_redis.engine.connection import RedisConnection, TaskLimits, connect
from mcp_tasks_redis.engine.events import EventHub
from mcp_tasks_redis.engine.inputs import Inbox, Inputs
from mcp_tasks_redis.engine.keys import KeySpace
from mcp_tasks_redis.engine.leases import Leases
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.tasks import Tasks


class TaskEngine:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        namespace: str = "mcp-tasks",
        limits: TaskLimits | None = None,
        owns_client: bool = False,
    ) -> None:
        self.conn = RedisConnection(redis, KeySpace(namespace), limits or TaskLimits())
        self.tasks = Tasks(self.conn)
        self.leases = Leases(self.conn)
        self.inputs = Inputs(self.conn)
        self.inbox = Inbox(self.conn)
        self.events = EventHub(redis)
        self._owns_client = owns_client

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = "mcp-tasks", limits: TaskLimits | None = None, **options: Any
    ) -> TaskEngine:
        return cls(connect(url, **options), namespace=namespace, limits=limits, owns_client=True)

    @classmethod
    def adopt(
        cls, redis: aioredis.Redis | TaskEngine, *, namespace: str, limits: TaskLimits | None
    ) -> tuple[TaskEngine, bool]:
        """An engine for a client, or the given engine itself; True when the caller made it (and
        so must close it), False for a shared engine, which belongs to its creator."""
        if isinstance(redis, TaskEngine):
            return redis, False
        return cls(redis, namespace=namespace, limits=limits), True

    @property
    def redis(self) -> aioredis.Redis:
        return self.conn.redis

    @property
    def keys(self) -> KeySpace:
        return self.conn.keys

    @property
    def limits(self) -> TaskLimits:
        return self.conn.limits

    async def wait_until(
        self,
        task_id: str,
        done: Callable[[TaskRecord | None], bool],
        *,
        timeout: float | None = None,
        poll_s: float | None = None,
    ) -> TaskRecord | None:
        """Wait until ``done(record)`` holds; return that record (None if the task is gone).

        Subscribes first, then reads, so no change can slip between the read and the wait; a
        lost pub/sub message delays the waiter by at most one poll interval.
        """
        poll = poll_s if poll_s is not None else self.limits.poll_interval_ms / 1000
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self.events.watch(self.keys.channel(task_id)) as watch:
            while True:
                record = await self.tasks.get(task_id)
                if done(record):
                    return record
                wait = poll if deadline is None else min(poll, deadline - loop.time())
                if wait <= 0:
                    raise TimeoutError(f"Task {task_id} did not reach the awaited state in time")
                await watch.next(wait)
                watch.drain()

    async def close(self) -> None:
        await self.events.close()
        if self._owns_client:
            await self.conn.redis.aclose()  # type: ignore[attr-defined]
