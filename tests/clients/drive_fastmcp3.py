"""FastMCP 3's client (``fastmcp==3.4.10``, the 2025-11-25 task wire on ``mcp`` 1.x) as a user drives it.

Runs in its own venv (``tests/clients/harness.py``), never in the project's:

    python drive_fastmcp3.py URL SCENARIO

and prints one JSON object per line, ending with ``{"event": "done"}``. Scenarios (demo tools):

- ``progress``: ``call_tool(..., task=True)`` of ``slow_compute``; every status notification the
  task handle hears (``on_status_change``), then the result;
- ``cancel``: a 30 s ``slow_compute`` task, cancelled once a status notification shows the tool
  reporting progress; the status and the result after that;
- ``elicitation``: ``ask_user`` as a task; the client's ``elicitation_handler`` answers;
- ``failing``: ``fail`` called plainly and as a task (``raise_on_error=False``), both results.

FastMCP 3's task handle polls ``tasks/get`` (every 0.5 s without notifications) and calls
``tasks/result`` only once the task is terminal.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import mcp.types
from fastmcp import Client
from fastmcp.client.client import CallToolResult
from fastmcp.client.elicitation import ElicitResult
from pydantic_core import to_jsonable_python

TERMINAL = ("completed", "failed", "cancelled")


def emit(event: str, **fields: Any) -> None:
    line = {"event": event, "t": time.time(), **fields}
    sys.stdout.write(json.dumps(to_jsonable_python(line)) + "\n")
    sys.stdout.flush()


def result_fields(result: CallToolResult) -> dict[str, Any]:
    return {
        "is_error": result.is_error,
        "texts": [c.text for c in result.content if isinstance(c, mcp.types.TextContent)],
        "structured": result.structured_content,
        "data": to_jsonable_python(result.data),
    }


def error_fields(error: BaseException) -> dict[str, Any]:
    code = getattr(getattr(error, "error", None), "code", None)
    return {"type": type(error).__name__, "message": str(error), "code": code}


class StatusLog:
    """The status notifications one task handle heard (``on_status_change``)."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.seen: list[mcp.types.GetTaskResult] = []

    def __call__(self, status: mcp.types.GetTaskResult) -> None:
        self.seen.append(status)
        emit("status", task_id=status.taskId, status=status.status, message=status.statusMessage)
        self.changed.set()

    async def until(self, wanted: str, timeout_s: float = 15.0) -> mcp.types.GetTaskResult:
        """Wait for a notification whose statusMessage contains ``wanted``."""
        async with asyncio.timeout(timeout_s):
            while True:
                for status in self.seen:
                    if wanted in (status.statusMessage or ""):
                        return status
                self.changed.clear()
                await self.changed.wait()


async def answer(
    message: str, response_type: type[Any] | None, params: mcp.types.ElicitRequestParams, context: Any
) -> ElicitResult[dict[str, Any]]:
    emit("elicit", message=message, params=params.model_dump(by_alias=True, exclude_none=True, mode="json"))
    return ElicitResult(action="accept", content={"answer": "forty-two"})


async def connected(client: Client[Any]) -> None:
    init = client.initialize_result
    assert init is not None
    tasks = init.capabilities.tasks
    emit(
        "connected",
        protocol=init.protocolVersion,
        tasks=tasks.model_dump(by_alias=True, exclude_none=True, mode="json") if tasks else None,
        tools={t.name: t.execution.taskSupport if t.execution else None for t in await client.list_tools()},
    )


async def progress(client: Client[Any]) -> None:
    task = await client.call_tool("slow_compute", {"seconds": 2}, task=True)
    log = StatusLog()
    task.on_status_change(log)
    emit("created", task_id=task.task_id, immediate=task.returned_immediately)
    result = await task.result()
    emit("result", **result_fields(result))


async def cancel(client: Client[Any]) -> None:
    task = await client.call_tool("slow_compute", {"seconds": 30}, task=True)
    log = StatusLog()
    task.on_status_change(log)
    emit("created", task_id=task.task_id, immediate=task.returned_immediately)
    running = await log.until("computing: step")
    emit("running", message=running.statusMessage)
    await task.cancel()
    status = await task.status()
    emit("after_cancel", status=status.status, message=status.statusMessage)
    try:
        result = await task.result()
    except Exception as e:
        emit("result_error", **error_fields(e))
    else:
        emit("result", **result_fields(result))


async def elicitation(client: Client[Any]) -> None:
    task = await client.call_tool("ask_user", {"question": "What is the answer?"}, task=True)
    log = StatusLog()
    task.on_status_change(log)
    emit("created", task_id=task.task_id, immediate=task.returned_immediately)
    result = await task.result()
    emit("result", **result_fields(result))
    status = await client.get_task_status(task.task_id)
    emit("final", status=status.status)


async def failing(client: Client[Any]) -> None:
    message = "disk on fire: sector 7G"
    plain = await client.call_tool("fail", {"message": message}, raise_on_error=False)
    emit("plain", **result_fields(plain))
    task = await client.call_tool("fail", {"message": message}, task=True, raise_on_error=False)
    emit("created", task_id=task.task_id, immediate=task.returned_immediately)
    result = await task.result()
    emit("result", **result_fields(result))
    status = await client.get_task_status(task.task_id)
    emit("final", status=status.status, message=status.statusMessage)


SCENARIOS = {"progress": progress, "cancel": cancel, "elicitation": elicitation, "failing": failing}


async def main(url: str, scenario: str) -> None:
    async with Client(url, elicitation_handler=answer) as client:
        await connected(client)
        await SCENARIOS[scenario](client)
    emit("done")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
