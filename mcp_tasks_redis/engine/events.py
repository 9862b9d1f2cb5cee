"""Task events over Redis pub/sub: one subscriber per process, shared by every waiter in it.

Every script that changes a task publishes one event on its shard's channel, as
``"<task id> <json>"``. Each process subscribes once, to the channel of every shard, when it
first needs events, and hands each event to the listeners registered in the process for that
task id: a waiting ``tasks/result``, a session's notification relay, a worker's cancel guard, an
input wait. Registering a listener is a dictionary insert, so following a task costs Redis
nothing, and an event whose task nobody here follows is dropped without decoding its JSON.

Pub/sub is an accelerator, not the source of truth: it loses messages while the subscriber is
disconnected. After every reconnect the hub hands each listener a ``RECONNECTED`` event, and
waiters also re-read the stored task at a bounded interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcp_tasks_redis.engine.cancelling import cancel_and_wait, unless_cancelled
from mcp_tasks_redis.engine.replies import as_text as _text

log = logging.getLogger("mcp_tasks_redis.events")

Event = dict[str, Any]
RECONNECTED: Event = {"k": "reconnected"}


def encode_event(task_id: str, event: Event) -> str:
    """The wire form of an event (what the Lua scripts publish, built here for Python publishers)."""
    return f"{task_id} {json.dumps(event, separators=(',', ':'))}"


class Listener:
    """The events of one task as one waiter sees them, buffered until read."""

    def __init__(self, task_id: str, capacity: int = 1000) -> None:
        self.task_id = task_id
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


class CallbackListener(Listener):
    """A listener that hands each event to a function at once (a relay serving many tasks)."""

    def __init__(self, task_id: str, callback: Callable[[str, Event], None]) -> None:
        super().__init__(task_id, capacity=1)
        self._callback = callback

    def push(self, event: Event) -> None:
        self._callback(self.task_id, event)


class EventHub:
    """A process-wide pub/sub subscriber to every shard's channel."""

    def __init__(
        self,
        make_client: Callable[[], aioredis.Redis],
        channels: list[str],
        on_outage: Callable[[], None] | None = None,
    ) -> None:
        """``on_outage``: called each time the subscriber loses Redis or fails to reach it."""
        self._make_client = make_client
        self._channels = channels
        self._on_outage = on_outage
        self._listeners: dict[str, set[Listener]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed: asyncio.Event | None = None
        self._reconnect_hooks: list[Callable[[], Awaitable[None] | None]] = []
        # Set while the subscriber is failing to (re)connect: waiting for it would only add latency
        # to every request during an outage; the bounded re-reads cover the gap.
        self._down = False

    # -- following a task ---------------------------------------------------------------------
    @contextlib.contextmanager
    def listen(self, task_id: str, listener: Listener | None = None) -> Generator[Listener]:
        """Register a listener for ``task_id`` for the duration of the block.

        Registration is synchronous and the block's ``finally`` removes it: no cancellation can
        leave a listener behind. Call `ready` first so that events published after the caller's
        next read of the task cannot be missed.
        """
        listener = self.add(task_id, listener or Listener(task_id))
        try:
            yield listener
        finally:
            self.remove(task_id, listener)

    def add(self, task_id: str, listener: Listener) -> Listener:
        """Register a listener until `remove` (for followers that outlive one block of code)."""
        self._ensure_reader()
        self._listeners.setdefault(task_id, set()).add(listener)
        return listener

    def remove(self, task_id: str, listener: Listener) -> None:
        listeners = self._listeners.get(task_id)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[task_id]

    def follows(self, task_id: str) -> bool:
        return task_id in self._listeners

    def on_reconnect(self, hook: Callable[[], Awaitable[None] | None]) -> None:
        """Run ``hook`` after every reconnect (e.g. a worker re-checks its leases at once)."""
        self._reconnect_hooks.append(hook)

    async def ready(self, timeout: float = 2.0) -> bool:
        """Start the subscriber if needed and wait until Redis confirmed the subscription.

        Returns False when Redis did not confirm in time (unreachable): callers go on, and their
        bounded re-reads cover the gap until the subscriber connects.
        """
        subscribed = self._ensure_reader()
        if subscribed.is_set():
            return True
        if self._down:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await subscribed.wait()
        return subscribed.is_set()

    # -- the reader ---------------------------------------------------------------------------
    def _ensure_reader(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._reader is None or self._reader.done() or self._loop is not loop:
            self._loop = loop
            self._subscribed = asyncio.Event()
            self._reader = loop.create_task(self._read_forever(), name="mcp-tasks-redis event hub")
        assert self._subscribed is not None
        return self._subscribed

    async def _read_forever(self) -> None:
        assert self._subscribed is not None
        backoff, first = 0.05, True
        while True:
            client: Any = None  # redis-py's pub/sub API is loosely typed
            pubsub: Any = None
            try:
                client = self._make_client()
                pubsub = client.pubsub()
                await pubsub.subscribe(*self._channels)
                pending = set(self._channels)
                while True:
                    message = await unless_cancelled(await pubsub.get_message(timeout=5.0))
                    if message is None:
                        continue
                    kind = message.get("type")
                    if kind == "message":
                        self._dispatch(message["data"])
                    elif kind == "subscribe" and pending:
                        pending.discard(_text(message["channel"]))
                        if not pending:
                            self._down = False
                            self._subscribed.set()
                            backoff = 0.05
                            if not first:
                                log.info("event subscription restored")
                                await self._after_reconnect()
                            first = False
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                if self._on_outage is not None:
                    self._on_outage()
                if self._subscribed.is_set():
                    log.warning("event subscription lost (%s); reconnecting", e)
            except Exception:
                # Anything else (a NOPERM under ACLs, a protocol error) must not end the reader
                # silently: every waiter would fall back to polling with no sign of why.
                log.exception("event subscriber failed; retrying")
            finally:
                self._subscribed.clear()
                self._down = True
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            first = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _after_reconnect(self) -> None:
        for listeners in list(self._listeners.values()):
            for listener in list(listeners):
                listener.push(dict(RECONNECTED))
        for hook in self._reconnect_hooks:
            outcome = hook()
            if outcome is not None:
                await outcome

    def _dispatch(self, data: bytes | str) -> None:
        raw = data.decode() if isinstance(data, bytes) else data
        task_id, _, body = raw.partition(" ")
        listeners = self._listeners.get(task_id)
        if not listeners:
            return
        try:
            event: Event = json.loads(body)
        except ValueError:
            log.warning("ignored a malformed event for task %s", task_id)
            return
        event["id"] = task_id
        for listener in list(listeners):
            listener.push(event)

    async def close(self) -> None:
        if self._reader is not None:
            await cancel_and_wait(self._reader)
            self._reader = None
