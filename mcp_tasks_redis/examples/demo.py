"""Example tools: what the demo, the dev stack, the compose file and the acceptance tests run.

Keep these names and behaviours: they are part of the product's contract (benchmarks call
``noop`` by name). The default ``--app`` is this module's ``app``; the repository's
``workers/demo.py`` re-exports it as the deployable ``workers.demo:app``.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from pydantic import Field

from mcp_tasks_redis.engine.context import ToolContext
from mcp_tasks_redis.engine.progress import ProgressReporter
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.results import ToolResult

app = ToolRegistry("mcp-tasks-redis-demo", instructions="Demo tools for mcp-tasks-redis.")

# Enough steps that even a short run reports progress at least ten times.
STEPS = 20


@app.tool(task_support="forbidden")
async def greet(name: Annotated[str, Field(description="Who to greet")]) -> str:
    """Say hello (runs inline; not available as a task)."""
    return f"Hello, {name}!"


async def _compute(seconds: float, progress: ProgressReporter, label: str) -> None:
    for step in range(1, STEPS + 1):
        await anyio.sleep(seconds / STEPS)
        await progress.update(100 * step / STEPS, f"{label}: step {step}/{STEPS}")


@app.tool(task_support="optional")
async def slow_compute(
    seconds: Annotated[float, Field(ge=0, le=3600, description="How long to work, in seconds")],
    progress: ProgressReporter,
) -> ToolResult:
    """Work for `seconds`, reporting progress along the way."""
    await _compute(seconds, progress, "computing")
    return ToolResult(text=f"Computed for {seconds:g} seconds", structured={"seconds": seconds})


@app.tool(task_support="required")
async def long_report(
    seconds: Annotated[float, Field(ge=0, le=3600, description="How long the report takes, in seconds")],
    progress: ProgressReporter,
) -> ToolResult:
    """Build a report in three phases (gather, analyse, write); only available as a task."""
    progress.plan({"gather": 30, "analyse": 50, "write": 20})
    for name, share in (("gather", 0.3), ("analyse", 0.5), ("write", 0.2)):
        steps = max(4, round(STEPS * share))
        async with progress.phase(name, steps) as phase:
            for i in range(1, steps + 1):
                await anyio.sleep(seconds * share / steps)
                await phase.update_item(i)
    return ToolResult(
        text=f"Report finished in {seconds:g} seconds",
        structured={"seconds": seconds, "sections": ["gather", "analyse", "write"]},
    )


@app.tool(task_support="optional")
async def ask_user(
    question: Annotated[str, Field(description="What to ask the user")], ctx: ToolContext
) -> str:
    """Ask the user a question (elicitation) and return the answer."""
    answer = await ctx.ask_text(question)
    if answer is None:
        return "The user did not answer."
    return answer


@app.tool(task_support="optional")
async def noop() -> str:
    """Return "ok" at once, with no progress (the smallest task: overhead and throughput)."""
    return "ok"


@app.tool(task_support="optional")
async def fail(message: Annotated[str, Field(description="The error message to raise")]) -> str:
    """Always fail, with the given message."""
    raise RuntimeError(message)
