"""The notification relay: task events from Redis to the MCP sessions that follow the task.

A worker's progress and status changes land in the task's event stream and are published; each
server replica relays them to the sessions that created or asked about the task, in stream order,
as `notifications/progress` (only when the client sent a progressToken, tagged with the
related-task `_meta`) and `notifications/tasks/status`. Pub/sub only wakes the relay; the stream
is read from the last event sent, so nothing is skipped or repeated when a message is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import anyio
from mcp.server.session import ServerSession
from mcp.types import (
    ProgressNotification,
    ProgressNotificationParams,
    ServerNotification,
    TaskStatusNotification,
    TaskStatusNotificationParams,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcp_tasks_redis.engine.connection import describe_url
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.record import TERMINAL_STATUSES, TaskRecord
from mcp_tasks_redis.mcp_v1.convert import related_task_meta, task_fields

log = logging.getLogger("mcp_tasks_redis.relay")

# How long a relay keeps retrying while Redis cannot be reached before it gives up on its task.
RELAY_OUTAGE_TOLERANCE_S = 60.0


class NotificationRelay:
    def __init__(self, engine: TaskEngine) -> None:
        self.engine = engine
        self._relays: dict[tuple[int, str], asyncio.Task[None]] = {}

    def follow(self, session: ServerSession, record: TaskRecord, *, from_start: bool) -> None:
        """Relay this task's events to this session until the task ends or the session goes."""
        if record.is_terminal:
            return
        key = (id(session), record.task_id)
        running = self._relays.get(key)
        if running is not None and not running.done():
            return
        relay = asyncio.get_running_loop().create_task(self._relay(session, record, from_start))
        self._relays[key] = relay
        relay.add_done_callback(lambda _: self._relays.pop(key, None))

    async def _relay(self, session: ServerSession, record: TaskRecord, from_start: bool) -> None:
        engine, task_id = self.engine, record.task_id
        stream = engine.keys.events(task_id)
        poll = max(1.0, engine.limits.poll_interval_ms / 1000)
        try:
            async with engine.events.watch(engine.keys.channel(task_id)) as watch:
                last = "0-0" if from_start else await self._stream_end(stream)
                # notifications/progress MUST increase, but a re-run after a lost worker reports
                # from 0 again: only progress above the highest already relayed goes out.
                floor = None if from_start or record.progress is None else record.progress.progress
                unreachable_since: float | None = None
                while True:
                    try:
                        entries: list[tuple[bytes, dict[bytes, bytes]]] = await engine.redis.xrange(
                            stream, min=f"({last}", max="+"
                        )
                        gone = not entries and await engine.redis.exists(engine.keys.task(task_id)) == 0
                    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
                        # Redis restarting or failing over: the events wait in the stream, and
                        # the relay resumes after the last one sent. A long outage ends it.
                        now = asyncio.get_running_loop().time()
                        if unreachable_since is None:
                            unreachable_since = now
                            log.warning("relay for task %s: Redis unreachable (%s); retrying", task_id, e)
                        if now - unreachable_since >= RELAY_OUTAGE_TOLERANCE_S:
                            raise RedisUnavailable(describe_url(engine.redis), e) from e
                        await asyncio.sleep(poll)
                        continue
                    unreachable_since = None
                    for entry_id, fields in entries:
                        last = entry_id.decode()
                        event: dict[str, Any] = json.loads(fields[b"e"])
                        if event.get("type") == "progress":
                            reported: dict[str, Any] = event.get("progress") or {}
                            value = reported.get("progress")
                            if isinstance(value, int | float):
                                if floor is not None and value <= floor:
                                    continue
                                floor = value
                        await self._send(session, record, event)
                        if event.get("type") == "status" and event.get("status") in TERMINAL_STATUSES:
                            return
                    if gone:
                        return
                    await watch.next(poll)
                    watch.drain()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            return  # the session went away; the task goes on
        except RedisUnavailable as e:
            log.warning("relay for task %s stopped: %s", task_id, e)
        except Exception:
            log.exception("relay for task %s failed", task_id)

    async def _stream_end(self, stream: str) -> str:
        newest: list[tuple[bytes, Any]] = await self.engine.redis.xrevrange(stream, count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def _send(self, session: ServerSession, record: TaskRecord, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "progress" and record.progress_token is not None:
            progress: dict[str, Any] = event.get("progress") or {}
            params = ProgressNotificationParams.model_validate(
                {
                    "progressToken": record.progress_token,
                    "progress": progress.get("progress", 0.0),
                    "total": progress.get("total"),
                    "message": progress.get("message"),
                    "_meta": related_task_meta(record.task_id),
                }
            )
            await session.send_notification(
                ServerNotification(ProgressNotification(method="notifications/progress", params=params))
            )
        elif kind == "status":
            fields = task_fields(record)
            fields["status"] = event["status"]
            fields["statusMessage"] = event.get("message")
            if isinstance(event.get("at"), int):
                fields["lastUpdatedAt"] = datetime.fromtimestamp(event["at"] / 1000, tz=UTC)
            await session.send_notification(
                ServerNotification(
                    TaskStatusNotification(
                        method="notifications/tasks/status", params=TaskStatusNotificationParams(**fields)
                    )
                )
            )

    async def close(self) -> None:
        for relay in list(self._relays.values()):
            relay.cancel()
        for relay in list(self._relays.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
