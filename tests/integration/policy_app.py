"""Tools with task policies, for the end-to-end policy tests (real server and worker processes)."""

from __future__ import annotations

import anyio

from mcp_tasks_redis.engine.registry import ToolRegistry

app = ToolRegistry("policies")


@app.tool(timeout_s=0.5)
async def stuck() -> str:
    """Never finishes on its own: its timeout ends it."""
    await anyio.sleep(30)
    return "unreachable"


@app.tool
async def nap(seconds: float, label: str) -> str:
    """Sleep, then say which call this was."""
    await anyio.sleep(seconds)
    return label
