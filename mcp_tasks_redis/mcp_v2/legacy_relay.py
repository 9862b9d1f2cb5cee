"""What a 2.x server pushes to a handshake-era (2025-11-25) client about its tasks.

The 1.x adapter's session relay (``mcp_v1/relay.py``), for the legacy wire of a 2.x server. A
connection follows the tasks it created and the ones it asked about; each followed task's events
reach its relay through the process's event hub (no Redis command per task), and the relay sends,
on the connection's standalone stream:

- ``notifications/tasks/status`` on every change of status or statusMessage (progress messages
  included, throttled by the worker's reporter), for clients that show only status (FastMCP 3);
- ``notifications/progress`` when the creating call sent a progressToken, tagged with the
  related-task ``_meta`` and never going backwards (a re-run starts again from 0);
- the task's input requests, as the server's own requests, for clients that poll ``tasks/get``
  and call ``tasks/result`` only once the task has ended (the 2025-11-25 spec lets a server
  deliver them on any stream). Each goes to a connection once, whichever of the relay and
  ``tasks/result`` sends it first; the client's answer is stored in Redis for the worker.

The 2.x SDK gives a request handler no public handle on its connection's lifetime, so a relay
lives as long as it follows a running task: it starts with the first task it follows and ends
once all have ended. It is keyed by the connection's ``client_params`` (one object per
connection, set by ``initialize``; the relay holds the connection while it runs, so the key
cannot be reused meanwhile). Sending on a connection that went away is dropped by the SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import anyio
import anyio.abc
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    Notification,
    ProgressNotification,
    ProgressNotificationParams,
    RequestId,
)
from pydantic import ValidationError

from mcp_tasks_redis.engine.errors import RedisUnavailable, TaskError
from mcp_tasks_redis.engine.events import CallbackListener, Event
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.mcp_v2.convert import INPUT_KINDS, input_kinds

if TYPE_CHECKING:
    from mcp_tasks_redis.mcp_v2.state import TasksState

log = logging.getLogger("mcp_tasks_redis.legacy_relay")

RELATED_TASK = "io.modelcontextprotocol/related-task"
# Followed tasks are re-read this many event-hub recheck intervals apart.
RECHECK_FACTOR = 5
# How long an answer keeps being retried while Redis is out of reach (the worker waits for it).
ANSWER_RETRY_S = 60.0

Ask = Callable[[ServerSession, dict[str, Any], str, "RequestId | None"], Awaitable[dict[str, Any]]]


class TaskStatusNotification(Notification[dict[str, Any], Literal["notifications/tasks/status"]]):
    """The 2025-11-25 ``notifications/tasks/status`` (its params: the task's fields)."""

    method: Literal["notifications/tasks/status"] = "notifications/tasks/status"


async def store_answer(state: TasksState, task_id: str, key: str, reply: dict[str, Any]) -> bool:
    """Hand the client's reply to the task's input request to the waiting worker, through Redis;
    retried while Redis is out of reach. False when no such request is outstanding."""
    loop = asyncio.get_running_loop()
    give_up, delay = loop.time() + ANSWER_RETRY_S, 0.1
    while True:
        try:
            return key in await state.engine.tasks.answer(task_id, {key: reply})
        except RedisUnavailable as e:
            if loop.time() >= give_up:
                log.error("dropped the reply to %s of task %s: %s", key, task_id, e)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        except (TaskError, ValueError) as e:  # unknown task, reply not JSON
            log.warning("could not deliver the reply to %s of task %s: %s", key, task_id, e)
            return False


async def ask_and_store(
    state: TasksState,
    ask: Ask,
    session: ServerSession,
    record_id: str,
    key: str,
    request: dict[str, Any],
    related_request_id: RequestId | None,
) -> None:
    """Send one input request to the client and store its reply (or error) for the worker."""
    try:
        reply: dict[str, Any] = {"result": await ask(session, request, record_id, related_request_id)}
    except MCPError as e:
        reply = {"error": e.error.model_dump(mode="json", exclude_none=True)}
    except ValidationError as e:
        reply = {"error": {"code": INVALID_PARAMS, "message": f"Malformed input request: {e}"}}
    await store_answer(state, record_id, key, reply)


def legacy_status(record: TaskRecord) -> str:
    """The 2025-11-25 status: a tool error is ``failed`` there."""
    if record.status is TaskStatus.COMPLETED and record.is_error_result:
        return TaskStatus.FAILED.value
    return record.status.value


@dataclass
class _Followed:
    record: TaskRecord
    listener: CallbackListener
    floor: float | None  # notifications/progress must increase: only values above this go out
    last_status: tuple[str, str | None]
    deliveries: list[anyio.CancelScope] = field(default_factory=list[anyio.CancelScope])


class LegacyRelay:
    """The relay of one handshake-era connection (see the module docstring)."""

    def __init__(
        self,
        state: TasksState,
        session: ServerSession,
        ask: Ask,
        task_fields: Callable[[TaskRecord], dict[str, Any]],
        on_close: Callable[[LegacyRelay], None],
    ) -> None:
        self.state = state
        self.session = session
        self._ask = ask
        self._task_fields = task_fields
        self._on_close = on_close
        self.delivered: set[tuple[str, str]] = set()
        self.closed = False
        self._followed: dict[str, _Followed] = {}
        self._early: dict[str, CallbackListener] = {}
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    # -- following -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def reading(self, task_id: str) -> Generator[None]:
        """Hear the task's events from before the read in the block, so that `follow` after the
        read misses nothing; not followed by the end of the block: dropped."""
        if self.closed or task_id in self._followed or task_id in self._early:
            yield
            return
        listener = self._listener(task_id)
        self._early[task_id] = listener
        self._start()
        try:
            yield
        finally:
            if self._early.pop(task_id, None) is listener and task_id not in self._followed:
                self.state.engine.events.remove(task_id, listener)
                self._queue.put_nowait((task_id, {"k": "idle"}))

    def follow(self, record: TaskRecord, *, from_start: bool) -> None:
        """Relay this task's events to the connection until the task ends."""
        if self.closed or record.is_terminal or record.task_id in self._followed:
            return
        listener = self._early.pop(record.task_id, None) or self._listener(record.task_id)
        floor = None if from_start or record.progress is None else record.progress.progress
        status = (legacy_status(record), record.status_message)
        self._followed[record.task_id] = _Followed(record, listener, floor, status)
        self._start()
        if record.input_requests:
            self._queue.put_nowait((record.task_id, {"k": "inputs"}))

    def claim_input(self, task_id: str, key: str) -> bool:
        """True the first time an input request is claimed for this connection."""
        if (task_id, key) in self.delivered:
            return False
        self.delivered.add((task_id, key))
        return True

    def _listener(self, task_id: str) -> CallbackListener:
        listener = CallbackListener(task_id, lambda tid, event: self._queue.put_nowait((tid, event)))
        self.state.engine.events.add(task_id, listener)
        return listener

    def _unfollow(self, task_id: str) -> None:
        followed = self._followed.pop(task_id, None)
        if followed is not None:
            self.state.engine.events.remove(task_id, followed.listener)
            for scope in followed.deliveries:
                scope.cancel()

    # -- running -------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        recheck = self.state.engine.limits.recheck_ms * RECHECK_FACTOR / 1000
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                while self._followed or self._early:
                    try:
                        async with asyncio.timeout(recheck):
                            task_id, event = await self._queue.get()
                    except TimeoutError:
                        await self._recheck()
                        continue
                    followed = self._followed.get(task_id)
                    if followed is not None:
                        try:
                            await self._handle(followed, event)
                        except Exception:
                            log.exception("relay of task %s", task_id)
                # Closed before the next await: a request that looks the relay up from now on
                # gets a new one instead of following a task nobody relays.
                self.close()
                tg.cancel_scope.cancel()
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task_id in list(self._followed):
            self._unfollow(task_id)
        for task_id, listener in list(self._early.items()):
            self.state.engine.events.remove(task_id, listener)
        self._early.clear()
        self._on_close(self)

    async def _recheck(self) -> None:
        for task_id, followed in list(self._followed.items()):
            try:
                record = await self.state.engine.tasks.get(task_id)
            except RedisUnavailable:
                return
            await self._apply(followed, record)

    async def _handle(self, followed: _Followed, event: Event) -> None:
        kind = event.get("k")
        if kind == "progress":
            updated = followed.record.with_event(event)
            assert updated is not None
            followed.record = updated
            await self._send_progress(followed)
        record = followed.record.with_event(event) if kind != "progress" else followed.record
        if record is None or kind == "reconnected":
            try:
                record = await self.state.engine.tasks.get(followed.record.task_id)
            except RedisUnavailable as e:
                log.warning("relay of task %s: %s", followed.record.task_id, e)
                return
        await self._apply(followed, record)

    async def _apply(self, followed: _Followed, record: TaskRecord | None) -> None:
        task_id = followed.record.task_id
        if record is None:
            self._unfollow(task_id)
            return
        followed.record = record
        status = (legacy_status(record), record.status_message)
        if status != followed.last_status:
            followed.last_status = status
            await self._send_status(record)
        if record.status is TaskStatus.INPUT_REQUIRED:
            self._deliver_inputs(followed)
        if record.is_terminal:
            self._unfollow(task_id)

    # -- sending -------------------------------------------------------------------------------
    def _deliver_inputs(self, followed: _Followed) -> None:
        """Send the task's outstanding input requests this connection has not been sent yet, of
        the kinds its client declared, each from a task of its own (the answer may take long)."""
        record, tg = followed.record, self._tg
        if tg is None:
            return
        kinds = input_kinds(self.session.client_capabilities)
        for key, request in record.input_requests.items():
            if INPUT_KINDS.get(str(request.get("method")), "") not in kinds:
                continue
            if not self.claim_input(record.task_id, key):
                continue
            scope = anyio.CancelScope()
            followed.deliveries.append(scope)
            tg.start_soon(self._deliver, scope, record.task_id, key, request)

    async def _deliver(
        self, scope: anyio.CancelScope, task_id: str, key: str, request: dict[str, Any]
    ) -> None:
        with scope:
            try:
                await ask_and_store(self.state, self._ask, self.session, task_id, key, request, None)
            except Exception as e:  # the connection went away: the input request times out
                log.warning("could not send input request %s of task %s: %s", key, task_id, e)

    async def _send_progress(self, followed: _Followed) -> None:
        record, progress = followed.record, followed.record.progress
        token = record.progress_token
        if token is None or progress is None or progress.progress is None:
            return
        if followed.floor is not None and progress.progress <= followed.floor:
            return
        followed.floor = progress.progress
        params = ProgressNotificationParams.model_validate(
            {
                "progressToken": token,
                "progress": progress.progress,
                "total": progress.total,
                "message": progress.message,
                "_meta": {RELATED_TASK: {"taskId": record.task_id}},
            },
            by_name=False,
        )
        await self.session.send_notification(ProgressNotification(params=params))

    async def _send_status(self, record: TaskRecord) -> None:
        notification = TaskStatusNotification(params=self._task_fields(record))
        await self.session.send_notification(cast(Any, notification))


class LegacyRelays:
    """The relays of one server, one per handshake-era connection that follows a running task."""

    def __init__(
        self, state: TasksState, ask: Ask, task_fields: Callable[[TaskRecord], dict[str, Any]]
    ) -> None:
        self.state = state
        self._ask = ask
        self._task_fields = task_fields
        self._relays: dict[int, LegacyRelay] = {}

    def of(self, ctx: ServerRequestContext[Any, Any]) -> LegacyRelay | None:
        """The relay of the request's connection (None when the connection has no handshake)."""
        params = ctx.session.client_params
        if params is None:
            return None
        key = id(params)
        relay = self._relays.get(key)
        if relay is None or relay.closed:
            relay = LegacyRelay(self.state, ctx.session, self._ask, self._task_fields, self._closed)
            self._relays[key] = relay
        return relay

    def _closed(self, relay: LegacyRelay) -> None:
        for key, known in list(self._relays.items()):
            if known is relay:
                del self._relays[key]

    def __len__(self) -> int:
        return len(self._relays)
