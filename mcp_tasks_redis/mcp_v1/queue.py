"""`RedisTaskMessageQueue` and reply routing: the SDK's task message queue, shared across processes.

Messages for the client (elicitation, sampling, notifications) wait in a per-task FIFO in Redis
until some replica's tasks/result handler delivers them. The SDK resolves a queued request with
an in-process `Resolver`, which cannot cross processes; here the request is stored on the task
under its JSON-RPC id (the engine's input slot), the client's reply is written to the task's
reply slot by whichever process receives it (`RedisResponseRouter`), and a small waiter in the
process that queued the request hands it to the `Resolver`.

Request ids of task input requests have the form ``task-{task_id}-{key}`` (the SDK's
ServerTaskContext builds ``task-{task_id}-{id(params)}``; our worker uses
`mcp_v1.inbox.input_request_id`); the key holds no ``-``, so task id and key (the task's input
slot) can be read back from the id alone, by any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import warnings
from datetime import datetime
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from mcp.server.experimental.task_result_handler import TaskResultHandler
from mcp.server.experimental.task_support import TaskSupport
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.message_queue import QueuedMessage, TaskMessageQueue
from mcp.shared.experimental.tasks.resolver import Resolver
from mcp.shared.experimental.tasks.store import TaskStore
from mcp.types import INTERNAL_ERROR, ErrorData, JSONRPCNotification, JSONRPCRequest, RequestId
from pydantic import ValidationError

from mcp_tasks_redis.engine.connection import TaskLimits
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable, TaskError
from mcp_tasks_redis.mcp_v1.inbox import parse_input_request_id

__all__ = [
    "INBOX_NOTIFY_EVENT",
    "RedisResponseRouter",
    "RedisTaskMessageQueue",
    "RedisTaskResultHandler",
    "input_key",
    "install_response_router",
    "message_from_json",
    "message_to_json",
]

log = logging.getLogger("mcp_tasks_redis.mcp_v1.queue")

# Published by notify_message_available: wakes every wait_for_message on the task.
INBOX_NOTIFY_EVENT = "inbox_notify"

ReplyEnvelope = dict[str, Any]
"""What a reply slot holds: ``{"result": {...}}`` or ``{"error": {code, message, data?}}``."""


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
    (then a reply reaching any process finds it), else the id itself (in-process routing only)."""
    parsed = parse_input_request_id(request_id)
    if parsed is not None and parsed[0] == task_id:
        return parsed[1]
    return str(request_id)


def _deliver(resolver: Resolver[dict[str, Any]], reply: ReplyEnvelope) -> None:
    if resolver.done():
        return
    if "error" in reply:
        try:
            error = ErrorData.model_validate(reply["error"])
        except ValidationError:
            error = ErrorData(code=INTERNAL_ERROR, message=f"Malformed error reply: {reply['error']!r:.200}")
        resolver.set_exception(McpError(error))
    else:
        resolver.set_result(reply.get("result") or {})


class RedisTaskMessageQueue(TaskMessageQueue):
    """Per-task FIFO in Redis, for ``server.experimental.enable_tasks(queue=...)``.

    The task must exist: its inbox shares the task's expiry (TaskNotFound otherwise).
    """

    def __init__(
        self,
        redis: aioredis.Redis | TaskEngine,
        *,
        namespace: str = "mcp-tasks",
        limits: TaskLimits | None = None,
        poll_s: float | None = None,
    ) -> None:
        self.engine, self._owns_engine = TaskEngine.adopt(redis, namespace=namespace, limits=limits)
        self._poll_s = poll_s
        self._waiters: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "mcp-tasks", **limits: Any) -> RedisTaskMessageQueue:
        engine = TaskEngine.from_url(url, namespace=namespace, limits=TaskLimits(**limits))
        queue = cls(engine)
        queue._owns_engine = True
        return queue

    @property
    def poll_s(self) -> float:
        return self._poll_s if self._poll_s is not None else self.engine.limits.poll_interval_ms / 1000

    async def aclose(self) -> None:
        """Stop the reply waiters of this process and close the engine if this queue made it."""
        for waiter in list(self._waiters):
            waiter.cancel()
        for waiter in list(self._waiters):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await waiter
        if self._owns_engine:
            await self.engine.close()

    async def enqueue(self, task_id: str, message: QueuedMessage) -> None:
        """Append to the task's FIFO; a request with a resolver also opens the task's input slot.

        That request is stored under its key (`input_key`) and the task moves to input_required
        in the same script (idempotent: the SDK's elicit has already set that status).
        """
        data = message_to_json(message)
        resolver, request_id = message.resolver, message.original_request_id
        if message.type == "request" and resolver is not None and request_id is not None:
            key = input_key(task_id, request_id)
            await self.engine.inputs.request(task_id, key, data["message"], inbox_message=data)
            self._start_reply_waiter(task_id, key, resolver)
        else:
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

        Any event on the task's channel triggers a re-check of the FIFO's length, and so does a
        timer every ``poll_s`` seconds, in case pub/sub dropped the message.
        """
        async with self.engine.events.watch(self.engine.keys.channel(task_id)) as watch:
            while await self.engine.inbox.length(task_id) == 0:
                event = await watch.next(self.poll_s)
                if event is not None and event.get("type") == INBOX_NOTIFY_EVENT:
                    return
                watch.drain()

    async def notify_message_available(self, task_id: str) -> None:
        payload = json.dumps({"type": INBOX_NOTIFY_EVENT, "task_id": task_id})
        await self.engine.conn.call("publish", self.engine.keys.channel(task_id), payload)

    # -- the process-local end of a cross-process reply ---------------------------------------

    def _start_reply_waiter(self, task_id: str, key: str, resolver: Resolver[dict[str, Any]]) -> None:
        waiter = asyncio.get_running_loop().create_task(
            self._await_reply(task_id, key, resolver), name=f"mcp-tasks-redis reply {key}"
        )
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)

    async def _await_reply(self, task_id: str, key: str, resolver: Resolver[dict[str, Any]]) -> None:
        """Hand the reply in the task's reply slot to ``resolver``, whichever process wrote it.

        Gives up when the resolver was settled in-process (the SDK's own handler routed the reply
        here) or the task finished or vanished: like the SDK, the requester is then left waiting,
        since failing it would make the SDK's run_task fail an already finished task.
        """
        async with self.engine.events.watch(self.engine.keys.channel(task_id)) as watch:
            while not resolver.done():
                try:
                    reply = await self.engine.inputs.take_reply(task_id, key)
                    if reply is not None:
                        _deliver(resolver, reply)
                        return
                    record = await self.engine.tasks.get(task_id)
                    if record is None or record.is_terminal:
                        return
                except RedisUnavailable as e:  # Redis may come back: keep waiting
                    log.warning("waiting for the reply to %s: %s", key, e)
                await watch.next(self.poll_s)
                watch.drain()


class RedisResponseRouter:
    """An SDK `ResponseRouter` that writes replies to task input requests into Redis.

    It claims every response whose id is a task input id (see `parse_input_request_id`) and
    writes it to that task's reply slot from a background task on the running loop; the waiter
    in the process that queued the request (any replica or worker) picks it up from there.
    """

    def __init__(self, engine: TaskEngine) -> None:
        self.engine = engine
        self._pending: set[asyncio.Task[bool]] = set()

    def route_response(self, request_id: RequestId, response: dict[str, Any]) -> bool:
        return self.route(request_id, {"result": response})

    def route_error(self, request_id: RequestId, error: ErrorData) -> bool:
        return self.route(request_id, {"error": error.model_dump(mode="json", exclude_none=True)})

    def route(
        self, request_id: RequestId, reply: ReplyEnvelope, local: Resolver[dict[str, Any]] | None = None
    ) -> bool:
        """Take the reply if ``request_id`` is a task input id; ``local`` is the in-process
        resolver, if any, used only when Redis holds no such request (e.g. an in-memory queue)."""
        parsed = parse_input_request_id(request_id)
        if parsed is None:
            return False
        task_id, key = parsed
        answer = asyncio.get_running_loop().create_task(self._answer(task_id, key, reply, local))
        self._pending.add(answer)
        answer.add_done_callback(self._pending.discard)
        return True

    async def _answer(
        self, task_id: str, key: str, reply: ReplyEnvelope, local: Resolver[dict[str, Any]] | None
    ) -> bool:
        try:
            answered = await self.engine.inputs.answer(task_id, key, reply)
        except (TaskError, ValueError) as e:  # unknown task, Redis down, reply not JSON
            log.warning("could not deliver the reply to %s: %s", key, e)
            answered = False
        if not answered:
            if local is not None:
                _deliver(local, reply)
            else:
                log.warning("dropped a reply to %s: no such input request is outstanding", key)
        return answered

    async def drain(self) -> None:
        """Wait until every reply taken so far has been written (for orderly shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


class RedisTaskResultHandler(TaskResultHandler):
    """The SDK's tasks/result handler with replies to task input requests routed via Redis.

    Replies to other requests fall through to the SDK's in-process routing.
    """

    def __init__(self, store: TaskStore, queue: TaskMessageQueue, router: RedisResponseRouter) -> None:
        super().__init__(store, queue)
        self.router = router

    def route_response(self, request_id: RequestId, response: dict[str, Any]) -> bool:
        if parse_input_request_id(request_id) is None:
            return super().route_response(request_id, response)
        local = self._pending_requests.pop(request_id, None)
        return self.router.route(request_id, {"result": response}, local)

    def route_error(self, request_id: RequestId, error: ErrorData) -> bool:
        if parse_input_request_id(request_id) is None:
            return super().route_error(request_id, error)
        local = self._pending_requests.pop(request_id, None)
        return self.router.route(
            request_id, {"error": error.model_dump(mode="json", exclude_none=True)}, local
        )


def install_response_router(target: Any, *, engine: TaskEngine | None = None) -> RedisTaskResultHandler:
    """Make the SDK's sessions route task input replies through Redis.

    ``target`` is a low-level ``Server`` (or ``FastMCP``) after ``experimental.enable_tasks(...)``,
    or its ``TaskSupport``. Call it before the server runs: each new session registers
    ``support.handler`` as its response router. ``engine`` defaults to the queue's or store's.
    """
    support = _task_support(target)
    if engine is None:
        owner: Any = support.queue if isinstance(support.queue, RedisTaskMessageQueue) else support.store
        found = getattr(owner, "engine", None)
        if not isinstance(found, TaskEngine):
            raise TypeError("Pass engine=: neither the task queue nor the store is Redis-backed")
        engine = found
    handler = RedisTaskResultHandler(support.store, support.queue, RedisResponseRouter(engine))
    support.handler = handler
    return handler


def _task_support(target: Any) -> TaskSupport:
    if isinstance(target, TaskSupport):
        return target
    server: Any = getattr(target, "_mcp_server", target)  # FastMCP wraps a low-level Server
    with warnings.catch_warnings():
        # `Server.experimental` is deprecated in mcp 1.x; the 2025 wire needs it all the same.
        warnings.simplefilter("ignore", DeprecationWarning)
        support = server.experimental.task_support
    if not isinstance(support, TaskSupport):
        raise RuntimeError("Call server.experimental.enable_tasks(...) before install_response_router")
    return support
