"""The fixture tools of the official MCP conformance suite's SEP-2663 tasks scenarios.

They ship with the library, so an installed package serves them from any folder; the repository's
``workers/conformance.py`` re-exports them. Serve them with ``mcp-tasks-redis serve --app
workers.conformance:app`` (on ``mcp`` 2.x) and run them with ``mcp-tasks-redis worker --app
workers.conformance:app``; the names, arguments and
behaviour are what ``src/scenarios/server/tasks/*.ts`` of the suite expect (listed in
``shared/conformance/README.md``). Every task runs on a worker, like any other tool.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import Field

from mcp_tasks_redis.engine.context import ToolContext
from mcp_tasks_redis.engine.outcome import INTERNAL_ERROR, ProtocolError
from mcp_tasks_redis.engine.prepare import NeedInput, Preparation
from mcp_tasks_redis.engine.progress import ProgressReporter
from mcp_tasks_redis.engine.registry import ToolRegistry

app = ToolRegistry("mcp-tasks-redis-conformance", instructions="SEP-2663 conformance fixtures.")

CONFIRM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean"}},
    "required": ["confirm"],
}
NAME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "confirm": {"type": "boolean"}},
    "required": ["name"],
}


@app.tool(task_support="forbidden")
async def greet(name: Annotated[str, Field(description="Who to greet")]) -> str:
    """Say hello, at once (never a task)."""
    return f"Hello, {name}!"


@app.tool(task_support="optional")
async def slow_compute(
    seconds: Annotated[float, Field(ge=0, le=3600, description="How long to work, in seconds")],
    progress: ProgressReporter,
    label: Annotated[str, Field(description="A label for the run")] = "",
) -> str:
    """Work for `seconds` (cancellable), reporting progress; then say so."""
    steps = max(1, min(20, int(seconds * 4)))
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        await progress.update(100 * step / steps, f"{label or 'computing'}: step {step}/{steps}")
    return f"Computed {label or 'result'} in {seconds:g} s"


@app.tool(task_support="required")
async def failing_job() -> str:
    """Fail as a tool after about a second: the task completes with ``isError: true``."""
    await asyncio.sleep(1.0)
    raise RuntimeError("failing_job failed, as it always does")


@app.tool(task_support="optional")
async def protocol_error_job() -> str:
    """Fail with a JSON-RPC error: the task ends ``failed`` with that error inlined."""
    raise ProtocolError(INTERNAL_ERROR, "protocol_error_job raised a protocol-level error")


@app.tool(task_support="optional")
async def confirm_delete(
    filename: Annotated[str, Field(description="The file to delete")], ctx: ToolContext
) -> str:
    """Ask the user to confirm (elicitation), then report what was done."""
    answer = await ctx.elicit(f"Delete {filename}?", CONFIRM_SCHEMA)
    if answer.accepted and answer.content is not None and answer.content.get("confirm") is True:
        return f"Deleted {filename}"
    return f"Kept {filename}"


@app.tool(task_support="optional")
async def multi_input(ctx: ToolContext) -> str:
    """Ask two questions at once; both stay outstanding until each is answered."""
    first, second = await asyncio.gather(
        ctx.elicit("First name?", NAME_SCHEMA), ctx.elicit("Second name?", NAME_SCHEMA)
    )
    names = [str((a.content or {}).get("name")) for a in (first, second) if a.accepted]
    return f"Got {', '.join(names) or 'nothing'}"


def ask_user_name(preparation: Preparation) -> NeedInput | dict[str, Any]:
    """Before the task exists: ask for the user's name (an MRTR round), then hand it on."""
    answer = preparation.elicitation("user_name")
    if answer is None:
        return preparation.elicit("user_name", "What is your name?", NAME_SCHEMA)
    name = (answer.content or {}).get("name") if answer.accepted else None
    if not isinstance(name, str) or not name:
        raise ValueError("A name is needed to run this tool")
    return {"user_name": name}


@app.tool(task_support="required", prepare=ask_user_name)
async def test_tool_with_task(ctx: ToolContext) -> str:
    """Greet the user whose name was asked before the task was created."""
    await asyncio.sleep(0.2)
    return f"Hello, {ctx.prepared['user_name']}! (asked before the task existed)"
