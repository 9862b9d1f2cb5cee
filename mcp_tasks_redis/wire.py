"""Which MCP wire this installation speaks: the one of the installed `mcp` SDK's major version.

- `mcp` 1.x: the 2025-11-25 Tasks wire (SEP-1686), `mcp_tasks_redis.mcp_v1`;
- `mcp` 2.x: the SEP-2663 `io.modelcontextprotocol/tasks` extension, `mcp_tasks_redis.mcp_v2`.

Both majors install under the same import name, so one environment holds one of them; the
engine and the workers are the same for both.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.runtime.execution import AroundRun
from mcp_tasks_redis.settings import Settings


@cache
def mcp_major() -> int:
    return int(version("mcp").split(".")[0])


def around_run(engine: TaskEngine) -> AroundRun | None:
    """The installed wire's wrapper around each run on a worker (1.x: the SDK's task_execution)."""
    if mcp_major() == 1:
        from mcp_tasks_redis.mcp_v1.worker import task_execution_around

        return task_execution_around(engine)
    return None


async def serve(registry: ToolRegistry, engine: TaskEngine, settings: Settings) -> None:
    """Serve the registry's tools on the installed wire, over the configured transport."""
    if mcp_major() == 1:
        from mcp_tasks_redis.mcp_v1 import host
    else:
        from mcp_tasks_redis.mcp_v2 import host  # type: ignore[no-redef]
    if settings.transport == "stdio":
        await host.serve_stdio(registry, engine, settings)
    else:
        await host.serve_http(registry, engine, settings)
