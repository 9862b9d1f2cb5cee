"""The `mcp` SDK's own in-process task support, as a baseline (runs in the project's venv).

A low-level ``Server`` with ``server.experimental.enable_tasks()`` (InMemoryTaskStore and
InMemoryTaskMessageQueue, the defaults): a task-augmented call returns
``ctx.experimental.run_task(work)``, so the tool runs in the server process, with no worker, no
Redis and no durability. Served over Streamable HTTP (stateful sessions) at ``/mcp``, like ours.

  python sdk_server.py PORT
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp.types as types
import uvicorn
from mcp.server.experimental.task_context import ServerTaskContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

warnings.simplefilter("ignore", DeprecationWarning)

server: Server[Any, Any] = Server("bench-sdk")
server.experimental.enable_tasks()

TOOLS = [
    types.Tool(
        name="noop", inputSchema={"type": "object"}, execution=types.ToolExecution(taskSupport="optional")
    ),
    types.Tool(
        name="progress_probe",
        inputSchema={
            "type": "object",
            "properties": {"steps": {"type": "integer"}, "interval": {"type": "number"}},
        },
        execution=types.ToolExecution(taskSupport="optional"),
    ),
]


def _ok() -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])


@server.list_tools()
async def list_tools() -> list[types.Tool]:
    return TOOLS


@server.call_tool()
async def call_tool(name: str, arguments: dict[str, Any]) -> Any:
    async def work(task: ServerTaskContext | None = None) -> types.CallToolResult:
        if name == "progress_probe":
            for _ in range(int(arguments["steps"])):
                await anyio.sleep(float(arguments["interval"]))
                if task is not None:  # the SDK's task progress channel: statusMessage
                    await task.update_status(f"t={time.time()!r}")
        return _ok()

    ctx = server.request_context
    if ctx.experimental.is_task:
        return await ctx.experimental.run_task(work)
    return await work()


manager = StreamableHTTPSessionManager(app=server)


async def handle_mcp(scope: Scope, receive: Receive, send: Send) -> None:
    await manager.handle_request(scope, receive, send)


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    async with manager.run():
        yield


app = Starlette(routes=[Route("/health", health), Mount("/mcp", app=handle_mcp)], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
