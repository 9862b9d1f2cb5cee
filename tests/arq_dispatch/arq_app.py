"""The tools the arq dispatcher's tests run, and a ``WorkerSettings`` as a team would write one.

In-process tests import the registry; the end-to-end tests start a real arq worker process on
this module (``python -m arq tests.arq_dispatch.arq_app.WorkerSettings``), configured by environment
variables (`worker_env`). The settings class uses arq's public hooks only: ``functions``,
``on_startup``, ``on_shutdown`` and the JSON job serializer settings.
"""

from __future__ import annotations

import os
from typing import Any

import anyio

from mcp_tasks_redis.arq_dispatch import ArqTasks, json_deserializer, json_serializer
from mcp_tasks_redis.engine.context import ToolContext
from mcp_tasks_redis.engine.policy import Retry
from mcp_tasks_redis.engine.registry import ToolRegistry
from tests.arq_dispatch.limits import LIMITS

app = ToolRegistry("arq-tests")
CALLS: list[str] = []
"""Tools started in this process, by name (in-process tests)."""
STOPPED: list[str] = []
"""Task ids whose `hold` tool was stopped from outside (in-process tests)."""


@app.tool
async def echo(text: str) -> str:
    CALLS.append("echo")
    return f"echo: {text}"


@app.tool
async def hold(ctx: ToolContext) -> str:
    """Says "started", then holds until stopped (or returns at once where ARQ_TEST_HOLD=0)."""
    CALLS.append("hold")
    await ctx.set_status(f"started on attempt {ctx.request.attempt}")
    if os.environ.get("ARQ_TEST_HOLD", "1") == "1":
        try:
            await anyio.sleep_forever()
        finally:
            STOPPED.append(ctx.task_id or "")
    return "released"


@app.tool(retry=Retry(attempts=3, on=(ConnectionError,), backoff_s=0.05, jitter=0))
async def flaky(ctx: ToolContext) -> str:
    CALLS.append("flaky")
    if ctx.request.attempt < 2:
        raise ConnectionError("upstream refused")
    return f"ok on attempt {ctx.request.attempt}"


def worker_env(redis_url: str, namespace: str, *, job_timeout_s: float, hold: bool) -> dict[str, str]:
    """The environment of a worker process on this module."""
    return {
        "ARQ_TEST_REDIS_URL": redis_url,
        "ARQ_TEST_NAMESPACE": namespace,
        "ARQ_TEST_JOB_TIMEOUT_S": str(job_timeout_s),
        "ARQ_TEST_HOLD": "1" if hold else "0",
    }


def _tasks_from_env() -> ArqTasks | None:
    if "ARQ_TEST_NAMESPACE" not in os.environ:
        return None
    return ArqTasks(
        app,
        redis_url=os.environ["ARQ_TEST_REDIS_URL"],
        namespace=os.environ["ARQ_TEST_NAMESPACE"],
        limits=LIMITS,
        job_timeout_s=float(os.environ["ARQ_TEST_JOB_TIMEOUT_S"]),
    )


mcp_tasks = _tasks_from_env()

if mcp_tasks is not None:
    from arq.connections import RedisSettings

    class WorkerSettings:
        """What a team's own arq settings look like with MCP tasks added."""

        functions: list[Any] = [mcp_tasks.function]
        on_startup = mcp_tasks.on_startup
        on_shutdown = mcp_tasks.on_shutdown
        queue_name = mcp_tasks.queue_name
        redis_settings = RedisSettings.from_dsn(mcp_tasks.redis_url)
        job_serializer = json_serializer
        job_deserializer = json_deserializer
        job_timeout = mcp_tasks.job_timeout_s
        keep_result = 0
        max_tries = 1_000
        poll_delay = 0.02
