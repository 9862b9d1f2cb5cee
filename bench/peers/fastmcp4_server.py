"""FastMCP 4 + fastmcp-tasks on Redis: the no-op tool as an SEP-2663 task (runs in bench/.venvs/fastmcp4).

The server registers ``TasksExtension`` (Docket on Redis) and one tool, ``noop``: task support
``optional`` (a task only for a client that declares ``io.modelcontextprotocol/tasks`` on the
request), returns "ok" at once, reports no progress. The server process runs Docket's embedded
worker; the harness starts one more with fastmcp-tasks' own worker command,
``python -m fastmcp_tasks.worker_cli worker fastmcp4_server.py``, which imports this file and runs
the same lifespan without serving HTTP. So, as for the other systems: one server, two workers.

Knobs (everything else is a FastMCP / fastmcp-tasks / Docket default):
- ``FASTMCP_DOCKET_URL``: the harness's Redis (a database of its own).
- ``BENCH_FM4_POLL_MS`` (default 50): ``TaskConfig.poll_interval``, advertised to clients as
  ``pollIntervalMs``. FastMCP's default is 5 s; a user who cares about latency lowers it, and
  50 ms is the worker's own ``minimum_check_interval`` (FastMCP's default, the XREADGROUP block),
  so a client polling faster than that gains little. The harness's driver polls at a fixed
  interval of its own for every system unless told to honor ``pollIntervalMs``.
- Docket worker: ``concurrency`` 10 per worker (default), ``minimum_check_interval`` 50 ms
  (FastMCP's default; Docket's own is 250 ms), redelivery 300 s, results kept for Docket's
  ``execution_ttl`` (15 min, not configurable through FastMCP).
- HTTP: ``mcp.run(transport="http")`` defaults (Streamable HTTP at ``/mcp``, uvicorn, log level
  warning).

  BENCH_PORT=P FASTMCP_DOCKET_URL=redis://127.0.0.1:R/1 python fastmcp4_server.py
"""

from __future__ import annotations

import os
from datetime import timedelta

from fastmcp import FastMCP
from fastmcp.utilities.tasks import TaskConfig
from fastmcp_tasks import TasksExtension

POLL_MS = int(os.environ.get("BENCH_FM4_POLL_MS", "50"))

mcp = FastMCP("bench-fastmcp4")
# Settings come from FASTMCP_DOCKET_* (the URL); the same module is imported by the extra worker.
mcp.add_extension(TasksExtension())


@mcp.tool(task=TaskConfig(mode="optional", poll_interval=timedelta(milliseconds=POLL_MS)))
async def noop() -> str:
    """Do nothing."""
    return "ok"


if __name__ == "__main__":
    mcp.run(
        transport="http",
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        log_level="warning",
        show_banner=False,
    )
