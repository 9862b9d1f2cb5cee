"""mcp-tasks-redis: distributed MCP Tasks on Redis, run by worker processes.

The small public surface:

- `ToolRegistry` and what a tool may ask for (`ToolContext`, `CancellationToken`, `RequestInfo`,
  `ProgressReporter`, `ToolResult`, `ProtocolError`) and its task policy (`Retry`, `ToolTimeout`):
  one declaration of tools, imported by the servers and the workers;
- `TaskEngine` and `TaskLimits`: the protocol-neutral engine, for operators and embedders;
- `build_worker`: a worker for a registry;
- on `mcp` 1.x (the 2025-11-25 wire): `build_server`, and `RedisTaskStore` /
  `RedisTaskMessageQueue`, drop-in `TaskStore` / `TaskMessageQueue` for an existing server;
- on `mcp` 2.x (the SEP-2663 extension): `TasksExtension`, for an `MCPServer`.

The wire-specific names import the adapter of the installed SDK on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from mcp_tasks_redis.engine.context import CancellationToken, RequestInfo, ToolContext
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.outcome import ProtocolError
from mcp_tasks_redis.engine.policy import Retry, ToolTimeout
from mcp_tasks_redis.engine.progress import ProgressReporter
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.results import ToolResult

_LAZY = {
    "build_worker": "mcp_tasks_redis.ops.processes",
    "build_server": "mcp_tasks_redis.mcp_v1.server",
    "RedisTaskStore": "mcp_tasks_redis.mcp_v1.store",
    "RedisTaskMessageQueue": "mcp_tasks_redis.mcp_v1.queue",
    "TasksExtension": "mcp_tasks_redis.mcp_v2.extension",
}

# The names in _LAZY are public too; they are left out of __all__ because `import *` would load
# the adapter of an SDK major that may not be installed.
__all__ = [
    "CancellationToken",
    "ProgressReporter",
    "ProtocolError",
    "RequestInfo",
    "Retry",
    "TaskEngine",
    "TaskLimits",
    "ToolContext",
    "ToolRegistry",
    "ToolResult",
    "ToolTimeout",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mcp_tasks_redis' has no attribute {name!r}")
    return getattr(import_module(module), name)
