"""`TaskEngine`: one object that gathers the engine's parts over one Redis connection.

Server replicas, workers and the admin commands each hold one engine per namespace. It also owns
the one wait primitive everything else uses: the task's events raced against a bounded re-read,
and the process's metrics (`metrics`, rendered by the servers' and workers' ``/metrics``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from mcp_tasks_redis.engine.connection import RedisConnection, connect, pubsub_client
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.events import EventHub
from mcp_tasks_redis.engine.inbox import Inbox
from mcp_tasks_redis.engine.keyed import KeyedDispatch
from mcp_tasks_redis.engine.keys import KeySpace
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.tasks import Tasks
from mcp_tasks_redis.engine.telemetry.metrics import Metrics
from mcp_tasks_redis.engine.telemetry.queues import QueueDepth
from mcp_tasks_redis.engine.urls import RedisClient


class TaskEngine:
    def __init__(
        self,
        redis: RedisClient,
        *,
        namespace: str = "mcp-tasks",
        shards: int = 1,
        limits: TaskLimits | None = None,
        owns_client: bool = False,
        metrics: Metrics | None = None,
        dispatcher: KeyedDispatch | None = None,
    ) -> None:
        """``metrics``: where the engine counts (default: a registry of its own). ``dispatcher``:
        where new tasks' jobs go when not the shards' streams (engine/keyed.py; e.g. arq)."""
        keys = KeySpace(namespace, shards)
        limits = limits or TaskLimits()
        if dispatcher is not None and limits.quotas:
            # A task held back by its owner's quota is dispatched later by `admit`, into a stream.
            raise ValueError(f"Per-owner quotas need the streams dispatcher, not {dispatcher.name}")
        self.metrics = metrics or Metrics()
        self.conn = RedisConnection(redis, keys, limits, metrics=self.metrics)
        self.dispatcher = dispatcher
        self.tasks = Tasks(self.conn, dispatcher)
        self.inbox = Inbox(self.conn)
        self.events = EventHub(
            lambda: pubsub_client(redis),
            [s.channel for s in keys.all_shards],
            on_outage=lambda: self.metrics.redis_unavailable("subscribe"),
        )
        QueueDepth(self.conn, self.metrics)
        self._owns_client = owns_client

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "mcp-tasks",
        shards: int = 1,
        limits: TaskLimits | None = None,
        dispatcher: KeyedDispatch | None = None,
        **options: Any,
    ) -> TaskEngine:
        return cls(
            connect(url, **options),
            namespace=namespace,
            shards=shards,
            limits=limits,
            owns_client=True,
            dispatcher=dispatcher,
        )

    @classmethod
    def adopt(
        cls, redis: RedisClient | TaskEngine, *, namespace: str, limits: TaskLimits | None
    ) -> tuple[TaskEngine, bool]:
        """An engine for a client, or the given engine itself; True when the caller made it (and
        so must close it), False for a shared engine, which belongs to its creator."""
        if isinstance(redis, TaskEngine):
            return redis, False
        return cls(redis, namespace=namespace, limits=limits), True

    @property
    def redis(self) -> RedisClient:
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
        outage_tolerance: float | None = None,
        on_record: Callable[[TaskRecord | None], Awaitable[None]] | None = None,
    ) -> TaskRecord | None:
        """Wait until ``done(record)`` holds; return that record (None if the task is gone).

        Follows the task's events from before the first read, so no change can slip between the
        read and the wait; events update the cached record without a re-read, and the record is
        read again after a reconnect or at most every ``limits.recheck_ms``. While Redis is out
        of reach the wait goes on for up to ``outage_tolerance`` seconds (None: forever), then
        raises RedisUnavailable. ``on_record`` sees every state of the record along the way.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        recheck = self.limits.recheck_ms / 1000
        await self.events.ready()
        with self.events.listen(task_id) as listener:
            record: TaskRecord | None = None
            stale, down_since = True, None
            while True:
                if stale:
                    try:
                        record = await self.tasks.get(task_id)
                        down_since = None
                    except RedisUnavailable:
                        down_since = down_since if down_since is not None else loop.time()
                        if outage_tolerance is not None and loop.time() - down_since >= outage_tolerance:
                            raise
                    else:
                        stale = False
                        if on_record is not None:
                            await on_record(record)
                if not stale and done(record):
                    return record
                if record is None and not stale:
                    return None
                wait = recheck if deadline is None else min(recheck, deadline - loop.time())
                if wait <= 0:
                    raise TimeoutError(f"Task {task_id} did not reach the awaited state in time")
                event = await listener.next(wait)
                if event is None or record is None:
                    stale = True
                    continue
                updated = record.with_event(event)
                if updated is None:
                    stale = True
                elif updated != record:
                    record = updated
                    if on_record is not None:
                        await on_record(record)

    async def close(self) -> None:
        await self.events.close()
        if self._owns_client:
            await self.conn.redis.aclose()
