"""`RedisTaskMessageQueue`: the SDK's task message queue, shared by every process of a deployment.

Messages for the client (elicitation, sampling, notifications) wait in a per-task FIFO in Redis
until some replica's `tasks/result` handler delivers them. The SDK resolves a queued request with
an in-process `Resolver`, which cannot cross processes: here such a request is also stored on its
task as an input request, so that the client's reply, reaching any replica, is routed to the
task (`router.RedisResponseRouter`), and a small waiter in the process that queued the request
hands the answer to its `Resolver`.

The queue accepts messages for any task id, as the SDK's contract says: for a task the store does
not hold, a request is routed in-process only, as with the SDK's in-memory queue.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.message_queue import QueuedMessage, TaskMessageQueue
from mcp.shared.experimental.tasks.resolver import Resolver
from mcp.types import INTERNAL_ERROR, ErrorData, JSONRPCNotification, JSONRPCRequest, RequestId
from pydantic import ValidationError

from mcp_tasks_redis.engine.cancelling import cancel_and_wait
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable, TaskNotFound
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.mcp_v1.input_requests import parse_input_request_id

__all__ = ["NUDGE", "RedisTaskMessageQueue", "input_key", "message_from_json", "message_to_json"]

log = logging.getLogger("mcp_tasks_redis.mcp_v1.queue")

NUDGE = "nudge"
"""The event `notify_message_available` publishes: it wakes every `wait_for_message` on the task."""

Answer = dict[str, Any]
"""An input answer as stored: ``{"result": {...}}`` or ``{"error": {code, message, data?}}``."""


def message_to_json(message: QueuedMessage) -> dict[str, Any]:
    """A queued message as stored in Redis (the resolver stays behind: it is process-local)."""
    return {
        "type": message.type,
        "message": message.message.model_dump(mode="json", by_alias=True, exclude_none=True),
        "timestamp": message.timestamp.isoformat(),
        "original_request_id": message.original_request_id,
    }


def message_from_json(data: dict[str, Any]) -> QueuedMessage:
    raw: dict[str, Any] = data["message"]
    message = JSONRPCRequest.model_validate(raw) if "id" in raw else JSONRPCNotification.model_validate(raw)
    kind = cast(Literal["request", "notification"], data["type"])
    return QueuedMessage(
        type=kind,
        message=message,
        timestamp=datetime.fromisoformat(data["timestamp"]),
        original_request_id=data.get("original_request_id"),
    )


def input_key(task_id: str, request_id: RequestId) -> str:
    """The input slot of a queued request: the key inside its id when the id names this task
    (then a reply reaching any process finds it), else the id itself."""
    parsed = parse_input_request_id(request_id)
    if parsed is not None and parsed[0] == task_id:
        return parsed[1]
    return str(request_id)


def deliver(resolver: Resolver[dict[str, Any]], answer: Answer) -> None:
    """Settle an in-process resolver with an answer (a result, or the client's error)."""
    if resolver.done():
        return
    if "error" in answer:
        try:
            error = ErrorData.model_validate(answer["error"])
        except ValidationError:
            error = ErrorData(code=INTERNAL_ERROR, message=f"Malformed error reply: {answer['error']!r:.200}")
        resolver.set_exception(McpError(error))
    else:
        resolver.set_result(answer.get("result") or {})


class RedisTaskMessageQueue(TaskMessageQueue):
    """Per-task FIFO in Redis, for ``server.experimental.enable_tasks(queue=...)``."""

    def __init__(
        self,
        redis: aioredis.Redis | TaskEngine,
        *,
        namespace: str = "mcp-tasks",
        limits: TaskLimits | None = None,
    ) -> None:
        self.engine, self._owns_engine = TaskEngine.adopt(redis, namespace=namespace, limits=limits)
        self._waiters: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "mcp-tasks", **limits: Any) -> RedisTaskMessageQueue:
        queue = cls(TaskEngine.from_url(url, namespace=namespace, limits=TaskLimits(**limits)))
        queue._owns_engine = True
        return queue

    async def aclose(self) -> None:
        """Stop the reply waiters of this process and close the engine if this queue made it."""
        for waiter in list(self._waiters):
            await cancel_and_wait(waiter)
        if self._owns_engine:
            await self.engine.close()

    async def enqueue(self, task_id: str, message: QueuedMessage) -> None:
        """Append to the task's FIFO. A request with a resolver, for a task the store holds, is
        also stored on the task as an input request, so that its reply may reach any process."""
        data = message_to_json(message)
        resolver, request_id = message.resolver, message.original_request_id
        if message.type == "request" and resolver is not None and request_id is not None:
            key = input_key(task_id, request_id)
            sent: dict[str, Any] = data["message"]
            request: dict[str, Any] = {"method": sent["method"], "params": sent.get("params") or {}}
            try:
                await self.engine.tasks.request_input(task_id, key, request)
            except TaskNotFound:
                pass  # not a task of the store: the SDK's in-process routing answers it
            else:
                self._start_reply_waiter(task_id, key, resolver)
        await self.engine.inbox.push(task_id, data)

    async def dequeue(self, task_id: str) -> QueuedMessage | None:
        data = await self.engine.inbox.pop(task_id)
        return None if data is None else message_from_json(data)

    async def peek(self, task_id: str) -> QueuedMessage | None:
        data = await self.engine.inbox.peek(task_id)
        return None if data is None else message_from_json(data)

    async def is_empty(self, task_id: str) -> bool:
        return await self.engine.inbox.length(task_id) == 0

    async def clear(self, task_id: str) -> list[QueuedMessage]:
        return [message_from_json(m) for m in await self.engine.inbox.clear(task_id)]

    async def wait_for_message(self, task_id: str) -> None:
        """Block until the task's FIFO is non-empty or `notify_message_available` is called.

        A message pushed by any process wakes it at once; the FIFO's length is also re-checked at
        a bounded interval, in case an event was lost.
        """
        engine = self.engine
        await engine.events.ready()
        with engine.events.listen(task_id) as listener:
            while await engine.inbox.length(task_id) == 0:
                event = await listener.next(engine.limits.recheck_ms / 1000)
                if event is not None and event.get("k") == NUDGE:
                    return

    async def notify_message_available(self, task_id: str) -> None:
        await self.engine.inbox.notify(task_id, NUDGE)

    # -- the process-local end of a cross-process reply ---------------------------------------
    def _start_reply_waiter(self, task_id: str, key: str, resolver: Resolver[dict[str, Any]]) -> None:
        waiter = asyncio.get_running_loop().create_task(
            self._await_reply(task_id, key, resolver), name=f"mcp-tasks-redis reply {key}"
        )
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)

    async def _await_reply(self, task_id: str, key: str, resolver: Resolver[dict[str, Any]]) -> None:
        """Hand the answer stored on the task to ``resolver``, whichever process stored it.

        Gives up when the task finished or vanished: like the SDK, the requester is then left
        waiting, since failing it would make the SDK's run_task fail an already finished task.
        """
        try:
            record = await self.engine.wait_until(
                task_id, lambda r: r is None or r.is_terminal or key in r.answers or resolver.done()
            )
        except RedisUnavailable as e:  # pragma: no cover - wait_until rides out outages
            log.warning("waiting for the reply to %s: %s", key, e)
            return
        if record is not None and key in record.answers:
            deliver(resolver, record.answers[key])
