"""What every request handler of one server shares: the engine, the registry, the relay, the
limits, and the per-session wiring (the input-reply router) done on a session's first request.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from mcp.types import INVALID_PARAMS, ErrorData, RequestId

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import TaskError
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.mcp_v1.identity import current_owner, may_access
from mcp_tasks_redis.mcp_v1.inbox import parse_input_request_id
from mcp_tasks_redis.mcp_v1.relay import NotificationRelay

log = logging.getLogger("mcp_tasks_redis.server")


class InputReplyRouter:
    """Routes a client's reply to a worker's input request into the task's reply slot in Redis.

    The SDK calls routers synchronously from its receive loop, so the write is scheduled; the
    worker waiting on the slot wakes on its pub/sub event (or its next poll).
    """

    def __init__(self, engine: TaskEngine) -> None:
        self.engine = engine
        self._pending: set[asyncio.Task[Any]] = set()

    def route_response(self, request_id: RequestId, response: dict[str, Any]) -> bool:
        return self._route(request_id, {"result": response})

    def route_error(self, request_id: RequestId, error: ErrorData) -> bool:
        return self._route(request_id, {"error": error.model_dump(mode="json", exclude_none=True)})

    def _route(self, request_id: RequestId, reply: dict[str, Any]) -> bool:
        parsed = parse_input_request_id(request_id)
        if parsed is None:
            return False
        task_id, key = parsed
        write = asyncio.get_running_loop().create_task(self._answer(task_id, key, reply))
        self._pending.add(write)
        write.add_done_callback(self._pending.discard)
        return True

    async def _answer(self, task_id: str, key: str, reply: dict[str, Any]) -> None:
        try:
            if not await self.engine.inputs.answer(task_id, key, reply):
                log.info("reply to %s/%s ignored: no such request outstanding", task_id, key)
        except TaskError as e:
            log.warning("reply to %s/%s dropped: %s", task_id, key, e)


@dataclass
class ServerState:
    engine: TaskEngine
    registry: ToolRegistry
    server: Server[Any, Any]
    max_argument_bytes: int = 1_000_000
    progress_min_interval: float = 0.1
    relay: NotificationRelay = field(init=False)
    router: InputReplyRouter = field(init=False)
    _wired: weakref.WeakSet[ServerSession] = field(default_factory=weakref.WeakSet, init=False)

    def __post_init__(self) -> None:
        self.relay = NotificationRelay(self.engine)
        self.router = InputReplyRouter(self.engine)

    def session(self) -> ServerSession:
        session = self.server.request_context.session
        if session not in self._wired:
            session.add_response_router(self.router)
            self._wired.add(session)
        return session

    async def task_for_caller(self, task_id: str) -> TaskRecord:
        """The task, if it exists and the caller may see it; else the one -32602 for both."""
        record = await self.engine.tasks.get(task_id)
        if record is None or not may_access(record, current_owner()):
            raise McpError(ErrorData(code=INVALID_PARAMS, message=f"Task not found: {task_id}"))
        return record
