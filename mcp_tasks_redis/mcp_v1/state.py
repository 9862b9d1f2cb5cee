"""What every request handler of one server shares: the engine, the registry, the relay, the
limits, and the per-session wiring (the Redis reply router) done on a session's first request.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from mcp.types import INVALID_PARAMS, ErrorData

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.mcp_v1.identity import current_owner, may_access
from mcp_tasks_redis.mcp_v1.queue import RedisResponseRouter
from mcp_tasks_redis.mcp_v1.relay import NotificationRelay

log = logging.getLogger("mcp_tasks_redis.server")


@dataclass
class ServerState:
    engine: TaskEngine
    registry: ToolRegistry
    server: Server[Any, Any]
    max_argument_bytes: int = 1_000_000
    progress_min_interval: float = 0.1
    relay: NotificationRelay = field(init=False)
    router: RedisResponseRouter = field(init=False)
    _wired: weakref.WeakSet[ServerSession] = field(
        default_factory=lambda: weakref.WeakSet[ServerSession](), init=False
    )

    def __post_init__(self) -> None:
        self.relay = NotificationRelay(self.engine)
        self.router = RedisResponseRouter(self.engine)

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
