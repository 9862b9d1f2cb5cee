"""mcp-tasks-redis: distributed MCP Tasks on Redis, with tools run by arq worker processes.

The small public surface:

- `RedisTaskStore`, `RedisTaskMessageQueue`: drop-in `TaskStore` / `TaskMessageQueue` for an
  `mcp` SDK 1.x server (``server.experimental.enable_tasks(store=..., queue=...)``);
- `ToolRegistry` and what a tool may ask for (`ToolContext`, `CancellationToken`, `RequestInfo`,
  `ProgressReporter`, `ToolResult`): one declaration of tools, imported by servers and workers;
- `build_server`, `build_worker`: the MCP server and the worker for a registry;
- `TaskEngine`: the protocol-neutral engine underneath, for operators and embedders.
"""

from mcp_tasks_redis.engine.connection import TaskLimits
from mcp_tasks_redis.engine.context import CancellationToken, RequestInfo, ToolContext
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.progress import ProgressReporter
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.results import ToolResult
from mcp_tasks_redis.mcp_v1.queue import RedisTaskMessageQueue
from mcp_tasks_redis.mcp_v1.server import build_server
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore
from mcp_tasks_redis.mcp_v1.worker import build_worker

__all__ = [
    "CancellationToken",
    "ProgressReporter",
    "RedisTaskMessageQueue",
    "RedisTaskStore",
    "RequestInfo",
    "TaskEngine",
    "TaskLimits",
    "ToolContext",
    "ToolRegistry",
    "ToolResult",
    "build_server",
    "build_worker",
]
