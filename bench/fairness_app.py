"""The tool `fairness.py` measures with: ``hold`` sleeps a fixed time, reporting no progress, and
returns the wall-clock times it started and ended at (the worker and the benchmark share the
machine's clock)."""

from __future__ import annotations

import time
from typing import Annotated

import anyio
from pydantic import Field

from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.results import ToolResult

app = ToolRegistry("mcp-tasks-redis-fairness", instructions="Fairness benchmark tools.")


@app.tool(task_support="optional")
async def hold(seconds: Annotated[float, Field(ge=0, le=60)]) -> ToolResult:
    """Sleep ``seconds``; return when the run started and ended (``time.time()``)."""
    started = time.time()
    await anyio.sleep(seconds)
    return ToolResult(structured={"started": started, "ended": time.time()})
