"""Task events over Redis pub/sub, shared by every waiter of one process.

One pub/sub connection per process subscribes to the channels of the tasks someone in the
process is watching, and fans each message out to those watchers. Pub/sub is only an
accelerator: it drops messages while reconnecting, so every watcher also re-reads the stored task
at a bounded interval (`Watch.next` returns None on timeout, and a reconnect wakes everyone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("mcp_tasks_redis.events")

Event = dict[str, Any]
RECONNECTED: Event = {"type": "reconnected"}


class Watch:
    """The events of one channel as one watcher sees them, buffered until read."""

    def __init__(self, channel: str, capacity: int = 1000) -> None:
        self.channel = channel
        self._events: deque[Event] = deque(maxlen=capacity)
        self._ready = asyncio.Event()

    def push(self, event: Event) -> None:
        self._events.append(event)
        self._ready.set()

    async def next(self, timeout: float | None) -> Event | None:
        """The next event, or None if none came within ``timeout`` seconds."""
        if not self._events:
            self._ready.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that lands as the wait ends, and a cancelled waiter would then run on forever.
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return None
        return self._events.popleft() if self._events else None

    def drain(self) -> list[Event]:
        items = list(self._events)
        self._events.clear()
        return items


class EventHub:
    """A process-wide pub/sub subscriber with per-channel reference counts."""

    def __init__(self, redis: aioredis.Redis) -> None:
        # A dedicated client: the pub/sub connection must not run health-check PINGs that would
        # read from the socket concurrently with the reader task.
        pool: Any = redis.connection_pool
        kwargs: dict[str, Any] = {**pool.connection_kwargs, "health_check_interval": 0}
        # redis-py's pub/sub API is loosely typed; it is kept behind this class as Any.
        self._client: Any = aioredis.Redis(
            connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )
        self._pubsub: Any = self._client.pubsub()
        self._watches: dict[str, set[Watch]] = {}
        # Set when Redis confirms a channel's subscription: `watch` returns only then, so that
        # nothing published after it returns can be missed.
        self._confirmed: dict[str, asyncio.Event] = {}
        self._reader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._connected = False

    @contextlib.asynccontextmanager
    async def watch(self, channel: str) -> AsyncGenerator[Watch]:
        """Subscribe (if nobody in this process already is) and yield a Watch of the channel."""
        watch = Watch(channel)
        await self._add(watch)
        try:
            yield watch
        finally:
            await self._remove(watch)

    async def _add(self, watch: Watch, confirm_timeout: float = 1.0) -> None:
        self._ensure_reader()
        async with self._lock:
            watchers = self._watches.setdefault(watch.channel, set())
            watchers.add(watch)
            confirmed = self._confirmed.setdefault(watch.channel, asyncio.Event())
            if len(watchers) == 1 and self._connected:
                with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                    await self._pubsub.subscribe(watch.channel)
        # Redis down: go on unconfirmed; the watcher's bounded re-reads cover the gap.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(confirm_timeout):
                await confirmed.wait()

    async def _remove(self, watch: Watch) -> None:
        async with self._lock:
            watchers = self._watches.get(watch.channel)
            if watchers is None:
                return
            watchers.discard(watch)
            if not watchers:
                del self._watches[watch.channel]
                self._confirmed.pop(watch.channel, None)
                if self._connected:
                    with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                        await self._pubsub.unsubscribe(watch.channel)

    def _ensure_reader(self) -> None:
        loop = asyncio.get_running_loop()
        if self._reader is not None and not self._reader.done() and self._loop is loop:
            return
        self._loop = loop
        self._lock = asyncio.Lock()
        self._connected = False
        self._confirmed = {channel: asyncio.Event() for channel in self._watches}
        self._reader = loop.create_task(self._read_forever(), name="mcp-tasks-redis event hub")

    async def _connect(self) -> None:
        # Always subscribe something, so that get_message has a connection to read from.
        channels = [b"__mcp_tasks_redis_hub__", *self._watches]
        await self._pubsub.subscribe(*channels)
        self._connected = True

    async def _read_forever(self) -> None:
        backoff = 0.05
        while True:
            try:
                if not self._connected:
                    async with self._lock:
                        await self._connect()
                    self._broadcast(RECONNECTED)
                    backoff = 0.05
                message = await self._pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message.get("type") == "message":
                    self._dispatch(message)
                elif message.get("type") == "subscribe":
                    confirmed = self._confirmed.get(_text(message["channel"]))
                    if confirmed is not None:
                        confirmed.set()
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                if self._connected:
                    log.warning("event subscription lost (%s); reconnecting", e)
                self._connected = False
                for confirmed in self._confirmed.values():
                    confirmed.clear()
                with contextlib.suppress(Exception):
                    await self._pubsub.reset()
                self._pubsub = self._client.pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    def _dispatch(self, message: dict[str, Any]) -> None:
        watchers = self._watches.get(_text(message["channel"]))
        if not watchers:
            return
        data = message["data"]
        try:
            event: Event = json.loads(data)
        except (TypeError, ValueError):
            event = {"type": "raw", "data": data.decode() if isinstance(data, bytes) else str(data)}
        for watch in list(watchers):
            watch.push(event)

    def _broadcast(self, event: Event) -> None:
        for watchers in self._watches.values():
            for watch in watchers:
                watch.push(dict(event))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            await self._client.aclose()  # type: ignore[attr-defined]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
