"""The notification relay of one MCP session: task events from Redis, as MCP notifications.

A session follows the tasks it created and the ones it asked about. Each followed task's events
reach the relay through the process's event hub (no Redis command per task), and the relay sends
them in order, as long as the session lives:

- progress, as `notifications/progress` when the creating call sent a progressToken (tagged with
  the related-task `_meta`, never going backwards, even after a re-run), and its message as a
  `notifications/tasks/status` (throttled by the worker's reporter), for clients that show
  only status;
- status changes as `notifications/tasks/status`;
- input requests, as the server's requests to the client, on any stream (the 2025-11-25 spec:
  "clients SHOULD expect messages to be delivered on any SSE stream"), for clients that poll
  `tasks/get` rather than wait on `tasks/result`. Each request goes to a session once, whichever
  of the relay and `tasks/result` sends it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass, field

import anyio
from mcp.server.session import ServerSession
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp.types import (
    JSONRPCMessage,
    ProgressNotification,
    ProgressNotificationParams,
    RequestId,
    ServerNotification,
    TaskStatusNotification,
    TaskStatusNotificationParams,
)

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.events import CallbackListener, Event
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.mcp_v1.convert import related_task_meta, task_fields, wire_status
from mcp_tasks_redis.mcp_v1.input_requests import INPUT_KINDS, input_capabilities, jsonrpc_request

log = logging.getLogger("mcp_tasks_redis.relay")

# Followed tasks are re-read this often in case an event was lost without a reconnect.
RECHECK_FACTOR = 5


@dataclass
class _Followed:
    record: TaskRecord
    listener: CallbackListener
    floor: float | None  # notifications/progress must increase: only values above this go out
    last_status: tuple[str, str | None] = ("", None)


@dataclass
class SessionRelay:
    engine: TaskEngine
    poll_interval_ms: int
    # Bound on the session's first request: the low-level server enters its lifespan (where
    # the relay is made) before it creates the session.
    session: ServerSession | None = None
    delivered_inputs: set[tuple[str, str]] = field(default_factory=set[tuple[str, str]])
    _followed: dict[str, _Followed] = field(default_factory=dict[str, _Followed])
    _queue: asyncio.Queue[tuple[str, Event]] = field(default_factory=asyncio.Queue[tuple[str, Event]])
    _early: dict[str, CallbackListener] = field(default_factory=dict[str, CallbackListener])
    _closed: bool = False

    @contextlib.contextmanager
    def reading(self, task_id: str) -> Generator[None]:
        """Hear the task's events from before the read in the block, so that `follow` after the
        read misses nothing: an event that lands between the read and `follow` is queued, and
        applied once the task is followed. Not followed by the end of the block: dropped."""
        if self._closed or task_id in self._followed or task_id in self._early:
            yield
            return
        listener = self._listener(task_id)
        self._early[task_id] = listener
        try:
            yield
        finally:
            if self._early.pop(task_id, None) is listener and task_id not in self._followed:
                self.engine.events.remove(task_id, listener)

    def _listener(self, task_id: str) -> CallbackListener:
        listener = CallbackListener(task_id, lambda task_id, event: self._queue.put_nowait((task_id, event)))
        self.engine.events.add(task_id, listener)
        return listener

    def follow(self, record: TaskRecord, *, from_start: bool) -> None:
        """Relay this task's events to the session until the task ends or the session does."""
        if self._closed or record.is_terminal or record.task_id in self._followed:
            return
        listener = self._early.pop(record.task_id, None) or self._listener(record.task_id)
        floor = None if from_start or record.progress is None else record.progress.progress
        self._followed[record.task_id] = _Followed(
            record, listener, floor, (wire_status(record), record.status_message)
        )
        if record.input_requests:
            self._queue.put_nowait((record.task_id, {"k": "inputs"}))

    async def run(self) -> None:
        """Send the followed tasks' notifications until cancelled (the session ended)."""
        recheck = self.engine.limits.recheck_ms * RECHECK_FACTOR / 1000
        try:
            while True:
                try:
                    async with asyncio.timeout(recheck):
                        task_id, event = await self._queue.get()
                except TimeoutError:
                    await self._recheck()
                    continue
                followed = self._followed.get(task_id)
                if followed is not None:
                    await self._handle(followed, event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            pass  # the session went away; its tasks go on
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        for task_id in list(self._followed):
            self._unfollow(task_id)

    def _unfollow(self, task_id: str) -> None:
        followed = self._followed.pop(task_id, None)
        if followed is not None:
            self.engine.events.remove(task_id, followed.listener)

    async def _recheck(self) -> None:
        for task_id, followed in list(self._followed.items()):
            try:
                record = await self.engine.tasks.get(task_id)
            except RedisUnavailable:
                return
            await self._apply(followed, record, None)

    async def _handle(self, followed: _Followed, event: Event) -> None:
        kind = event.get("k")
        if kind == "progress":
            updated = followed.record.with_event(event)
            assert updated is not None
            followed.record = updated
            if await self._send_progress(followed):
                progress = followed.record.progress
                self.engine.metrics.notification_sent("progress", progress.at_ms if progress else None)
        record = followed.record.with_event(event) if kind != "progress" else followed.record
        if record is None or kind == "reconnected":
            try:
                record = await self.engine.tasks.get(followed.record.task_id)
            except RedisUnavailable as e:
                log.warning("relay for task %s: %s", followed.record.task_id, e)
                return
        await self._apply(followed, record, event)

    async def _apply(self, followed: _Followed, record: TaskRecord | None, event: Event | None) -> None:
        task_id = followed.record.task_id
        if record is None:
            self._unfollow(task_id)
            return
        followed.record = record
        status = (wire_status(record), record.status_message)
        if status != followed.last_status:
            followed.last_status = status
            await self._send_status(record)
            self.engine.metrics.notification_sent("status", record.last_updated_ms)
        if record.status is TaskStatus.INPUT_REQUIRED:
            await self.deliver_inputs(record)
        if record.is_terminal:
            self._unfollow(task_id)

    async def deliver_inputs(self, record: TaskRecord, related_request_id: RequestId | None = None) -> None:
        """Send the task's outstanding input requests this session has not been sent yet, of the
        kinds its client declared (another session of the user may answer the others)."""
        session = self._bound()
        client = session.client_params
        can_answer = set(input_capabilities(client.capabilities if client else None))
        for key, request in record.input_requests.items():
            if (record.task_id, key) in self.delivered_inputs:
                continue
            if INPUT_KINDS.get(str(request.get("method")), "") not in can_answer:
                continue
            self.delivered_inputs.add((record.task_id, key))
            message = JSONRPCMessage.model_validate(jsonrpc_request(record.task_id, key, request))
            metadata = (
                ServerMessageMetadata(related_request_id=related_request_id) if related_request_id else None
            )
            await session.send_message(SessionMessage(message=message, metadata=metadata))

    def _bound(self) -> ServerSession:
        assert self.session is not None, "follow() is only called from a request of the session"
        return self.session

    async def _send_progress(self, followed: _Followed) -> bool:
        record, progress = followed.record, followed.record.progress
        token = record.progress_token
        if token is None or progress is None or progress.progress is None:
            return False
        if followed.floor is not None and progress.progress <= followed.floor:
            return False
        followed.floor = progress.progress
        params = ProgressNotificationParams.model_validate(
            {
                "progressToken": token,
                "progress": progress.progress,
                "total": progress.total,
                "message": progress.message,
                "_meta": related_task_meta(record.task_id),
            }
        )
        await self._bound().send_notification(
            ServerNotification(ProgressNotification(method="notifications/progress", params=params))
        )
        return True

    async def _send_status(self, record: TaskRecord) -> None:
        params = TaskStatusNotificationParams(**task_fields(record, self.poll_interval_ms))
        await self._bound().send_notification(
            ServerNotification(TaskStatusNotification(method="notifications/tasks/status", params=params))
        )


@contextlib.asynccontextmanager
async def session_relay(engine: TaskEngine, poll_interval_ms: int) -> AsyncGenerator[SessionRelay]:
    """A relay that runs while the block does (one session's lifespan)."""
    relay = SessionRelay(engine, poll_interval_ms)
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        try:
            yield relay
        finally:
            relay.close()
            tg.cancel_scope.cancel()
