"""The benchmark's tools for our product: the same four tools every peer exposes.

Loaded by our workers and server as ``--app ours_app:app`` with ``bench/peers`` on PYTHONPATH.
- ``noop``: returns at once (throughput, end-to-end, cost);
- ``probe``: records enqueue -> start latency in a Redis list (pickup);
- ``sleep``: sleeps (scaling);
- ``progress_probe``: reports progress whose message carries the worker's wall clock (relay latency).
"""

from __future__ import annotations

import os
import time

import anyio
import redis.asyncio as aioredis

from mcp_tasks_redis.engine.progress import ProgressReporter
from mcp_tasks_redis.engine.registry import ToolRegistry

app = ToolRegistry("bench")

_client: aioredis.Redis | None = None


def _redis() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    return _client


@app.tool(task_support="optional")
async def noop() -> str:
    """Do nothing."""
    return "ok"


@app.tool(task_support="optional")
async def probe(t: float, key: str) -> str:
    """Record ``"<t> <start>"``: the enqueue wall-clock time ``t`` and when the tool started."""
    started = time.time()
    await _redis().rpush(key, f"{t!r} {started!r}")
    return "ok"


@app.tool(task_support="optional")
async def sleep(seconds: float, key: str = "") -> str:
    """Sleep ``seconds`` (first recording the start time in list ``key``, if given)."""
    if key:
        await _redis().rpush(key, repr(time.time()))
    await anyio.sleep(seconds)
    return "slept"


@app.tool(task_support="optional")
async def progress_probe(steps: int, interval: float, progress: ProgressReporter) -> str:
    """Report ``steps`` progress updates ``interval`` s apart; each message is ``t=<wall clock>``."""
    for i in range(1, steps + 1):
        await anyio.sleep(interval)
        await progress.update(100.0 * i / (steps + 1), f"t={time.time()!r}")
    return "ok"
