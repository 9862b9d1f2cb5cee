"""Routing a client's reply to a task's input request to the task, whichever process asked.

The SDK hands every JSON-RPC response a session receives to its response routers first. A reply
whose id is a task input id (``task-{task_id}-{key}``) is written to that task's input slot in
Redis; the worker (or the process holding the SDK's resolver) waiting on the task picks it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from typing import Any

from mcp.server.experimental.task_result_handler import TaskResultHandler
from mcp.server.experimental.task_support import TaskSupport
from mcp.shared.experimental.tasks.message_queue import TaskMessageQueue
from mcp.shared.experimental.tasks.resolver import Resolver
from mcp.shared.experimental.tasks.store import TaskStore
from mcp.types import ErrorData, RequestId

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable, TaskError
from mcp_tasks_redis.mcp_v1.input_requests import parse_input_request_id
from mcp_tasks_redis.mcp_v1.queue import Answer, RedisTaskMessageQueue, deliver

__all__ = ["RedisResponseRouter", "RedisTaskResultHandler", "install_response_router"]

log = logging.getLogger("mcp_tasks_redis.mcp_v1.router")

# How long a reply keeps being retried while Redis is out of reach: a reply dropped on a passing
# outage would leave the worker waiting for an answer the client already gave.
REPLY_RETRY_S = 300.0


class RedisResponseRouter:
    """An SDK `ResponseRouter` that writes replies to task input requests into Redis.

    It claims every response whose id is a task input id and writes it to that task from a
    background task on the running loop (the SDK's router interface is synchronous).
    """

    def __init__(self, engine: TaskEngine) -> None:
        self.engine = engine
        self._pending: set[asyncio.Task[bool]] = set()

    def route_response(self, request_id: RequestId, response: dict[str, Any]) -> bool:
        return self.route(request_id, {"result": response})

    def route_error(self, request_id: RequestId, error: ErrorData) -> bool:
        return self.route(request_id, {"error": error.model_dump(mode="json", exclude_none=True)})

    def route(
        self, request_id: RequestId, answer: Answer, local: Resolver[dict[str, Any]] | None = None
    ) -> bool:
        """Take the reply if ``request_id`` is a task input id; ``local`` is the in-process
        resolver, if any, used only when Redis holds no such request (e.g. an in-memory store)."""
        parsed = parse_input_request_id(request_id)
        if parsed is None:
            return False
        task_id, key = parsed
        writer = asyncio.get_running_loop().create_task(self._answer(task_id, key, answer, local))
        self._pending.add(writer)
        writer.add_done_callback(self._pending.discard)
        return True

    async def _answer(
        self, task_id: str, key: str, answer: Answer, local: Resolver[dict[str, Any]] | None
    ) -> bool:
        loop = asyncio.get_running_loop()
        give_up, delay = loop.time() + REPLY_RETRY_S, 0.1
        while True:
            try:
                accepted = key in await self.engine.tasks.answer(task_id, {key: answer})
                break
            except RedisUnavailable as e:
                if loop.time() >= give_up:
                    log.error("dropped the reply to %s after %.0f s: %s", key, REPLY_RETRY_S, e)
                    return False
                log.warning("reply to %s not stored yet (%s); retrying", key, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except (TaskError, ValueError) as e:  # unknown task, reply not JSON
                log.warning("could not deliver the reply to %s: %s", key, e)
                accepted = False
                break
        if not accepted:
            if local is not None:
                deliver(local, answer)
            else:
                log.warning("dropped a reply to %s: no such input request is outstanding", key)
        return accepted

    async def drain(self) -> None:
        """Wait until every reply taken so far has been written (for orderly shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        for writer in list(self._pending):
            writer.cancel()
        for writer in list(self._pending):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer


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
