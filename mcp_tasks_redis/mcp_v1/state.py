"""What the request handlers of one server share, and what each MCP session has of its own.

`ServerState` is built once per server: engine, registry, limits. `SessionState` is built per
session by the server's lifespan (the low-level `Server` runs its lifespan once per session): the
session's notification relay, which lives exactly as long as the session, and the set of input
requests already delivered to it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from mcp.types import INVALID_PARAMS, ErrorData

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.mcp_v1.identity import current_owner, may_access
from mcp_tasks_redis.mcp_v1.relay import SessionRelay
from mcp_tasks_redis.mcp_v1.router import RedisResponseRouter


@dataclass
class ServerState:
    engine: TaskEngine
    registry: ToolRegistry
    server: Server[Any, Any]
    max_argument_bytes: int = 1_000_000
    progress_min_interval: float = 0.1
    router: RedisResponseRouter = field(init=False)
    _wired: weakref.WeakSet[ServerSession] = field(
        default_factory=lambda: weakref.WeakSet[ServerSession](), init=False
    )

    def __post_init__(self) -> None:
        self.router = RedisResponseRouter(self.engine)
        self.engine.metrics.declare_tools(self.registry.names(), "server")
        _states[self.server] = self

    async def aclose(self, drain_timeout: float = 5.0) -> None:
        """At shutdown: let the replies already received reach Redis (briefly), then stop."""
        with anyio.move_on_after(drain_timeout):
            await self.router.drain()
        await self.router.aclose()

    @property
    def poll_interval_ms(self) -> int:
        return self.engine.limits.poll_interval_ms

    def session(self) -> ServerSession:
        """The calling session, with the Redis reply router installed on its first request."""
        session = self.server.request_context.session
        if session not in self._wired:
            session.add_response_router(self.router)
            self._wired.add(session)
        return session

    def session_state(self) -> SessionState:
        context: Any = self.server.request_context.lifespan_context
        assert isinstance(context, SessionState), "build_server's lifespan provides the session state"
        return context

    @property
    def relay(self) -> SessionRelay:
        relay = self.session_state().relay
        if relay.session is None:
            relay.session = self.session()
        return relay

    async def task_for_caller(self, task_id: str) -> TaskRecord:
        """The task, if it exists and the caller may see it; else the one -32602 for both.

        Subscribed to events first, so that a relay following the task from this read misses
        nothing that happens after it."""
        await self.engine.events.ready()
        record = await self.engine.tasks.get(task_id)
        return self.check_access(task_id, record)

    def check_access(self, task_id: str, record: TaskRecord | None) -> TaskRecord:
        if record is None or not may_access(record, current_owner()):
            raise McpError(ErrorData(code=INVALID_PARAMS, message=f"Task not found: {task_id}"))
        return record


@dataclass
class SessionState:
    relay: SessionRelay


_states: weakref.WeakKeyDictionary[Server[Any, Any], ServerState] = weakref.WeakKeyDictionary()


def server_state(server: Server[Any, Any]) -> ServerState:
    """The state `build_server` made for ``server`` (hosts close it at shutdown)."""
    return _states[server]
