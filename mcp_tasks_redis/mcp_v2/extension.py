"""`TasksExtension`: SEP-2663 tasks for an ``MCPServer``, run by worker processes over Redis.

    tasks = TasksExtension(engine, registry)
    server = MCPServer("my-server", extensions=[tasks], middleware=tasks.middleware)

The extension lists the registry's tools, answers their ``tools/call`` (a task for a client
that declared the extension, an inline run otherwise; calls.py), and serves ``tasks/get``,
``tasks/update`` and ``tasks/cancel`` (task_requests.py). Its `middleware` checks the
``Mcp-Name`` routing header of the tasks methods (headers.py) and serves ``notifications/tasks``
on ``subscriptions/listen`` (listen.py), and serves handshake-era clients the 2025-11-25 task wire
(legacy.py); pass the server's `SubscriptionBus` as ``subscriptions``
for a listen stream to also carry the SDK's own kinds next to task ids. The server's other tools
are left alone. Workers run the registry with ``mcp-tasks-redis worker`` (or `build_worker`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding, ToolBinding
from mcp.server.subscriptions import SubscriptionBus
from mcp_types import CallToolRequestParams

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.mcp_v2 import calls, task_requests
from mcp_tasks_redis.mcp_v2.headers import TaskRoutingHeaders
from mcp_tasks_redis.mcp_v2.legacy import LegacyTasks
from mcp_tasks_redis.mcp_v2.listen import TaskSubscriptions
from mcp_tasks_redis.mcp_v2.listing import tool_binding
from mcp_tasks_redis.mcp_v2.protocol import EXTENSION_ID
from mcp_tasks_redis.mcp_v2.state import TasksState, reporting_redis_outages


class TasksExtension(Extension):
    identifier = EXTENSION_ID

    def __init__(
        self,
        engine: TaskEngine,
        registry: ToolRegistry,
        *,
        max_argument_bytes: int = 1_000_000,
        progress_min_interval: float = 0.1,
        subscriptions: SubscriptionBus | None = None,
    ) -> None:
        self.state = TasksState(
            engine,
            registry,
            max_argument_bytes=max_argument_bytes,
            progress_min_interval=progress_min_interval,
        )
        self._middleware: list[ServerMiddleware[Any]] = [
            TaskRoutingHeaders(),
            TaskSubscriptions(self.state, subscriptions),
            LegacyTasks(self.state),
        ]

    @property
    def middleware(self) -> list[ServerMiddleware[Any]]:
        """Pass to ``MCPServer(middleware=...)``: the routing-header check, the task listen
        streams and the 2025-11-25 task wire for handshake clients (an extension cannot add
        middleware by itself)."""
        return list(self._middleware)

    def tools(self) -> Sequence[ToolBinding]:
        return [tool_binding(spec) for spec in self.state.registry]

    def methods(self) -> Sequence[MethodBinding]:
        return task_requests.bindings(self.state)

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        spec = self.state.registry.get(params.name)
        if spec is None:
            return await call_next(ctx)
        return await reporting_redis_outages(calls.call_tool)(self.state, spec, params, ctx)
