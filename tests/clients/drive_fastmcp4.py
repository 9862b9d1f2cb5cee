"""FastMCP 4's client (``fastmcp==4.1.4`` + ``fastmcp-tasks==4.1.4``, SEP-2663 on ``mcp`` 2.x) as a
user drives it.

Runs in its own venv (``tests/clients/harness.py``), never in the project's:

    python drive_fastmcp4.py URL SCENARIO [--with-mcp-name]

and prints one JSON object per line, ending with ``{"event": "done"}``. Scenarios (demo tools):

- ``as_shipped``: what a FastMCP 4 user gets from a SEP-2663 server that checks the routing
  header: the task is created, then its ``tasks/get`` is refused;
- ``complete``: ``call_tool_task`` of ``slow_compute``, polled with ``status()`` (``tasks/get``)
  until it ends, then ``result()``; and a transparent ``call_tool`` of the same tool;
- ``cancel``: a 30 s ``slow_compute`` task cancelled once a poll shows the tool reporting
  progress; the status after that and ``result()``;
- ``input``: ``ask_user`` as a task: parked ``input_required`` with its ``inputRequests``, then
  ``result()`` answers through the client's ``elicitation_handler`` and ``tasks/update``;
- ``required``: ``long_report`` (``taskSupport: required``) through ``call_tool``, and a tool error
  (``fail``) as a task;
- ``handshake``: against a server that speaks only 2025-11-25 (the product on ``mcp`` 1.x).

fastmcp-tasks 4.1.4 sends ``tasks/get``, ``tasks/update`` and ``tasks/cancel`` without the
``Mcp-Name: <taskId>`` header that SEP-2663 requires of clients over Streamable HTTP (its request
classes declare no ``name_param``, so the SDK's session does not stamp it). ``--with-mcp-name``
declares it on those three classes, the one-line fix that client needs, so that the rest of its
task driving can be tried against a server that enforces the header.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import fastmcp_tasks.client as tasks_client
import fastmcp_tasks.client_models as models
import mcp_types
from fastmcp import Client
from fastmcp.client.client import CallToolResult
from fastmcp.client.elicitation import ElicitResult
from fastmcp_tasks.client import ToolTask, call_tool_task  # pyright: ignore[reportUnknownVariableType]
from mcp.client.session import ClientSession
from pydantic_core import to_jsonable_python

TERMINAL = ("completed", "failed", "cancelled")


def emit(event: str, **fields: Any) -> None:
    line = {"event": event, "t": time.time(), **fields}
    sys.stdout.write(json.dumps(to_jsonable_python(line)) + "\n")
    sys.stdout.flush()


def result_fields(result: CallToolResult) -> dict[str, Any]:
    return {
        "is_error": result.is_error,
        "texts": [c.text for c in result.content if isinstance(c, mcp_types.TextContent)],
        "structured": result.structured_content,
        "data": to_jsonable_python(result.data),
    }


def error_fields(error: BaseException) -> dict[str, Any]:
    code = getattr(error, "code", None)
    if code is None:
        code = getattr(getattr(error, "error", None), "code", None)
    return {"type": type(error).__name__, "message": str(error), "code": code}


def task_fields(task: models.ClientGetTaskResult) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "status": task.status,
        "message": task.status_message,
        "result": task.result,
        "error": task.error,
        "input_requests": task.input_requests,
        "poll_interval_ms": task.poll_interval_ms,
    }


async def answer(
    message: str, response_type: type[Any] | None, params: Any, context: Any
) -> ElicitResult[Any]:
    dumped = params.model_dump(by_alias=True, exclude_none=True, mode="json")
    emit("elicit", message=message, params=dumped, request_id=str(getattr(context, "request_id", "")))
    return ElicitResult(action="accept", content={"answer": "forty-two"})


def record_updates() -> None:
    """Report each ``tasks/update`` the client sends (the only way it answers input on SEP-2663)."""
    send = tasks_client._send_update  # pyright: ignore[reportPrivateUsage]

    async def sending(
        session: ClientSession,
        task_id: str,
        input_responses: dict[str, Any],
        read_timeout_seconds: float | None = None,
    ) -> None:
        emit("tasks/update", task_id=task_id, responses=input_responses)
        await send(session, task_id, input_responses, read_timeout_seconds)

    tasks_client._send_update = sending  # pyright: ignore[reportPrivateUsage]


async def attempt(name: str, call: Any) -> Any:
    """Await ``call``; report its value as ``name`` or its error as ``name_error``."""
    try:
        value = await call
    except Exception as e:
        emit(f"{name}_error", **error_fields(e))
        return None
    return value


async def connected(client: Client[Any]) -> None:
    emit(
        "connected",
        protocol=client.protocol_version,
        extensions=client.server_capabilities.extensions if client.server_capabilities else None,
        tools={t.name: t.execution.task_support if t.execution else None for t in await client.list_tools()},
    )


async def poll_until(
    task: ToolTask, done: Callable[[models.ClientGetTaskResult], bool], timeout_s: float = 20.0
) -> models.ClientGetTaskResult:
    """``status()`` (one ``tasks/get`` each) at the task's poll interval until ``done(status)``."""
    async with asyncio.timeout(timeout_s):
        while True:
            status = await task.status()
            emit("poll", **task_fields(status))
            if done(status):
                return status
            await asyncio.sleep((status.poll_interval_ms or 500) / 1000 / 5)


async def as_shipped(client: Client[Any]) -> None:
    task = await call_tool_task(client, "slow_compute", {"seconds": 1})
    emit("created", task_id=task.task_id, status=task.create_result.status)
    await attempt("status", task.status())
    await attempt("call_tool", client.call_tool("slow_compute", {"seconds": 0.2}))


async def complete(client: Client[Any]) -> None:
    task = await call_tool_task(client, "slow_compute", {"seconds": 2})
    created = task.create_result
    emit(
        "created",
        task_id=task.task_id,
        status=created.status,
        ttl_ms=created.ttl_ms,
        poll_interval_ms=created.poll_interval_ms,
    )
    await poll_until(task, lambda s: s.status in TERMINAL)
    emit("result", **result_fields(await task.result()))
    emit("transparent", **result_fields(await client.call_tool("slow_compute", {"seconds": 0.5})))


async def cancel(client: Client[Any]) -> None:
    task = await call_tool_task(client, "slow_compute", {"seconds": 30})
    emit("created", task_id=task.task_id, status=task.create_result.status)
    running = await poll_until(task, lambda s: "computing: step" in (s.status_message or ""))
    emit("running", message=running.status_message)
    await task.cancel()
    final = await task.wait(timeout=10)
    emit("after_cancel", **task_fields(final))
    await attempt("result", task.result())


async def input_request(client: Client[Any]) -> None:
    task = await call_tool_task(client, "ask_user", {"question": "What is the answer?"})
    emit("created", task_id=task.task_id, status=task.create_result.status)
    parked = await task.wait(state="input_required", timeout=15)
    emit("parked", **task_fields(parked))
    emit("result", **result_fields(await task.result()))
    emit("final", **task_fields(await task.status()))


async def required(client: Client[Any]) -> None:
    emit("long_report", **result_fields(await client.call_tool("long_report", {"seconds": 1})))
    task = await call_tool_task(client, "fail", {"message": "disk on fire: sector 7G"}, raise_on_error=False)
    emit("created", task_id=task.task_id, status=task.create_result.status)
    final = await task.wait(timeout=15)
    emit("final", **task_fields(final))
    emit("result", **result_fields(await task.result()))
    await attempt("call_tool", client.call_tool("fail", {"message": "disk on fire: sector 7G"}))


async def handshake(client: Client[Any]) -> None:
    emit("plain", **result_fields(await client.call_tool("slow_compute", {"seconds": 0.2})))
    await attempt("call_tool_task", call_tool_task(client, "slow_compute", {"seconds": 0.2}))
    await attempt("long_report", client.call_tool("long_report", {"seconds": 0.2}))
    emit("ask_user", **result_fields(await client.call_tool("ask_user", {"question": "What is the answer?"})))


SCENARIOS = {
    "as_shipped": as_shipped,
    "complete": complete,
    "cancel": cancel,
    "input": input_request,
    "required": required,
    "handshake": handshake,
}


async def main(url: str, scenario: str, options: list[str]) -> None:
    if "--with-mcp-name" in options:
        for request in (models.GetTaskRequest, models.UpdateTaskRequest, models.CancelTaskRequest):
            request.name_param = "taskId"
    record_updates()
    async with Client(url, elicitation_handler=answer) as client:
        await connected(client)
        await SCENARIOS[scenario](client)
    emit("done")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
