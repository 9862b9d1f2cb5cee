"""FastMCP 3 + Docket: the same tools, as ``task=True`` tools (runs in bench/.venvs/fastmcp3).

Everything is a FastMCP default except the Docket URL (``FASTMCP_DOCKET_URL``, the harness's one
Redis). The server process runs Docket's embedded worker; the harness starts one more with
``fastmcp tasks worker fastmcp3_server.py``, so two workers serve the tools, as for ours.

  BENCH_PORT=P FASTMCP_DOCKET_URL=redis://... python fastmcp3_server.py
"""

from __future__ import annotations

import asyncio
import os
import time

from fastmcp import Context, FastMCP

mcp = FastMCP("bench-fastmcp3")


@mcp.tool(task=True)
async def noop() -> str:
    """Do nothing."""
    return "ok"


@mcp.tool(task=True)
async def progress_probe(steps: int, interval: float, ctx: Context) -> str:
    """Report progress ``steps`` times; each message carries the worker's wall clock."""
    for i in range(1, steps + 1):
        await asyncio.sleep(interval)
        await ctx.report_progress(i, steps + 1, f"t={time.time()!r}")
    return "ok"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), log_level="warning")
