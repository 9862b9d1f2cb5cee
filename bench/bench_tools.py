"""Tools that `bench_runtime.py` measures with.

Each tool does as little as possible beyond what it measures: ``stamp_start`` returns the wall
clock time it started at, ``noop`` returns nothing, ``stamped_progress`` reports progress whose
message is the wall-clock time it was reported at. The worker process and the benchmark share
the machine's clock, so the benchmark subtracts its own timestamps from these.
"""

from __future__ import annotations

import time
from typing import Annotated

import anyio
from pydantic import Field

from mcp_tasks_redis.engine.progress import ProgressReporter
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.results import ToolResult

app = ToolRegistry("mcp-tasks-redis-bench", instructions="Benchmark tools.")


@app.tool(task_support="optional")
async def stamp_start() -> ToolResult:
    """Return the wall-clock time at which the tool started."""
    return ToolResult(structured={"started": time.time()})


@app.tool(task_support="optional")
async def noop() -> None:
    """Do nothing: the task's own lifecycle is what is measured."""


@app.tool(task_support="optional")
async def stamped_progress(
    steps: Annotated[int, Field(ge=1, le=100)],
    interval: Annotated[float, Field(ge=0, le=1)],
    progress: ProgressReporter,
) -> None:
    """Report ``steps`` progress updates of equal size, each message being ``time.time()``."""
    for step in range(1, steps + 1):
        await progress.update(100 * step / steps, f"{time.time():.6f}")
        await anyio.sleep(interval)
