"""``notifications/tasks`` on ``subscriptions/listen``: task changes pushed from Redis events.

The 2.3 SDK's listen handler carries a closed set of events (list changes, resource updates)
and no extension hook adds one; this server middleware serves a listen request that asks for
``notifications.taskIds`` itself, and passes every other listen request on to the SDK. It:

1. requires the request to declare the extension (-32021), and keeps the ids the caller may see
   (an unknown or another owner's id is left out of the acknowledgement, not reported);
2. follows those tasks' events through the process's event hub (no Redis command per task),
   before reading them, so no change can slip in between;
3. acknowledges (``notifications/subscriptions/acknowledged`` with the kept ``taskIds``, plus
   the SDK's own kinds when the server's `SubscriptionBus` is given), then sends each task's
   full ``DetailedTask`` at once and again on every change, as ``tasks/get`` would answer it;
4. re-reads followed tasks at a bounded interval (pub/sub can lose events), stops following a
   task once it is terminal, and ends the stream gracefully when nothing is left to deliver.

Notifications go out through the session's public ``send_notification``, whose type names the
SDK's closed notification union; a ``notifications/tasks`` model is passed through it as is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal, cast

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import require_client_extension
from mcp.server.subscriptions import SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    SUBSCRIPTION_ID_META_KEY,
    ServerEvent,
    event_matches,
    event_to_notification,
)
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    Notification,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.events import CallbackListener, Event
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.mcp_v2.convert import detailed_task, input_kinds
from mcp_tasks_redis.mcp_v2.identity import current_owner, may_access
from mcp_tasks_redis.mcp_v2.protocol import EXTENSION_ID
from mcp_tasks_redis.mcp_v2.state import TasksState

MAX_TASKS_PER_STREAM = 256
# Followed tasks are re-read this many event-hub recheck intervals apart.
RECHECK_FACTOR = 5


class TaskNotification(Notification[dict[str, Any], Literal["notifications/tasks"]]):
    method: Literal["notifications/tasks"] = "notifications/tasks"


class TaskSubscriptions:
    """A server middleware serving ``subscriptions/listen`` requests that name ``taskIds``."""

    def __init__(self, state: TasksState, bus: SubscriptionBus | None = None) -> None:
        self.state = state
        self.bus = bus

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "subscriptions/listen" or ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return await call_next(ctx)
        wanted: Any = (ctx.params or {}).get("notifications")
        if not isinstance(wanted, dict) or "taskIds" not in wanted:
            return await call_next(ctx)
        params = SubscriptionsListenRequestParams.model_validate(ctx.params or {}, by_name=False)
        task_ids: Any = cast(dict[str, Any], wanted)["taskIds"]
        if not isinstance(task_ids, list) or not all(isinstance(t, str) for t in cast(list[Any], task_ids)):
            raise MCPError(code=INVALID_PARAMS, message="notifications.taskIds must be a list of task ids")
        require_client_extension(ctx, EXTENSION_ID)
        if ctx.request_id is None:
            raise MCPError(code=INVALID_REQUEST, message="subscriptions/listen requires a request id")
        stream = _Stream(self.state, ctx, params.notifications, self.bus)
        return await stream.serve(list(dict.fromkeys(cast(list[str], task_ids)))[:MAX_TASKS_PER_STREAM])


class _Stream:
    """One listen stream: its followed tasks, its bus subscription, its outgoing notifications."""

    def __init__(
        self,
        state: TasksState,
        ctx: ServerRequestContext[Any, Any],
        requested: SubscriptionFilter,
        bus: SubscriptionBus | None,
    ) -> None:
        self.state = state
        self.ctx = ctx
        self.bus = bus
        self.kinds = input_kinds(ctx.session.client_capabilities)
        self.meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: ctx.request_id}
        self.queue: asyncio.Queue[tuple[str, Event] | ServerEvent] = asyncio.Queue()
        self.listeners: dict[str, CallbackListener] = {}
        self.records: dict[str, TaskRecord] = {}
        self.sent: dict[str, dict[str, Any]] = {}
        # The SDK's own kinds are honored only when its bus is at hand to deliver them.
        self.honored = SubscriptionFilter(
            tools_list_changed=True if bus is not None and requested.tools_list_changed else None,
            prompts_list_changed=True if bus is not None and requested.prompts_list_changed else None,
            resources_list_changed=True if bus is not None and requested.resources_list_changed else None,
            resource_subscriptions=list(requested.resource_subscriptions)
            if bus is not None and requested.resource_subscriptions
            else None,
        )

    @property
    def has_sdk_kinds(self) -> bool:
        h = self.honored
        return bool(
            h.tools_list_changed
            or h.prompts_list_changed
            or h.resources_list_changed
            or h.resource_subscriptions
        )

    async def serve(self, task_ids: list[str]) -> SubscriptionsListenResult:
        engine = self.state.engine
        unsubscribe: Callable[[], None] | None = None
        try:
            await engine.events.ready()
            for task_id in task_ids:
                self._follow(task_id)
            owner = current_owner()
            for task_id in task_ids:
                record = await engine.tasks.get(task_id)
                if record is None or not may_access(record, owner):
                    self._unfollow(task_id)
                else:
                    self.records[task_id] = record
            if self.bus is not None and self.has_sdk_kinds:
                unsubscribe = self.bus.subscribe(self._on_bus_event)
            await self._acknowledge()
            for record in list(self.records.values()):
                await self._send(record)
            await self._deliver()
        finally:
            for task_id in list(self.listeners):
                self._unfollow(task_id)
            if unsubscribe is not None:
                unsubscribe()
        return SubscriptionsListenResult(_meta=self.meta)

    # -- following -----------------------------------------------------------------------------
    def _follow(self, task_id: str) -> None:
        listener = CallbackListener(task_id, lambda tid, event: self.queue.put_nowait((tid, event)))
        self.listeners[task_id] = listener
        self.state.engine.events.add(task_id, listener)

    def _unfollow(self, task_id: str) -> None:
        listener = self.listeners.pop(task_id, None)
        if listener is not None:
            self.state.engine.events.remove(task_id, listener)
        self.records.pop(task_id, None)

    def _on_bus_event(self, event: ServerEvent) -> None:
        uris = frozenset(self.honored.resource_subscriptions or ())
        if event_matches(self.honored, uris, event):
            self.queue.put_nowait(event)

    # -- delivering ----------------------------------------------------------------------------
    async def _acknowledge(self) -> None:
        notifications = self.honored.model_copy(update={"taskIds": list(self.records)})
        ack = SubscriptionsAcknowledgedNotification(
            params=SubscriptionsAcknowledgedNotificationParams(notifications=notifications, _meta=self.meta)
        )
        await self.ctx.session.send_notification(ack, related_request_id=self.ctx.request_id)

    async def _deliver(self) -> None:
        recheck = self.state.engine.limits.recheck_ms * RECHECK_FACTOR / 1000
        while self.listeners or self.has_sdk_kinds:
            try:
                async with asyncio.timeout(recheck):
                    item = await self.queue.get()
            except TimeoutError:
                for task_id in list(self.listeners):
                    await self._refresh(task_id, None)
                continue
            if isinstance(item, tuple):
                await self._refresh(*item)
            else:
                notification = event_to_notification(item, self.meta)
                await self.ctx.session.send_notification(notification, related_request_id=self.ctx.request_id)

    async def _refresh(self, task_id: str, event: Event | None) -> None:
        cached = self.records.get(task_id)
        if cached is None:
            return
        record = cached.with_event(event) if event is not None and event.get("k") != "reconnected" else None
        if record is None:
            try:
                record = await self.state.engine.tasks.get(task_id)
            except RedisUnavailable:
                return  # the next recheck or the reconnect event tries again
            if record is None:  # expired: nothing more will ever be said about it
                self._unfollow(task_id)
                return
        self.records[task_id] = record
        if await self._send(record):
            self.state.engine.metrics.notification_sent("task", record.last_updated_ms)

    async def _send(self, record: TaskRecord) -> bool:
        """Send the task if it changed since it was last sent; True if it was."""
        task = detailed_task(record, self.state.poll_interval_ms, self.kinds)
        changed = self.sent.get(record.task_id) != task
        if changed:
            self.sent[record.task_id] = task
            notification = TaskNotification(params={**task, "_meta": self.meta})
            await self.ctx.session.send_notification(
                cast(Any, notification), related_request_id=self.ctx.request_id
            )
        if record.is_terminal:
            self._unfollow(record.task_id)
        return changed
