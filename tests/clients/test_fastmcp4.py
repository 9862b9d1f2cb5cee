"""FastMCP 4's client and fastmcp-tasks' ``call_tool_task`` (SEP-2663) against the product.

Against the server on ``mcp`` 2.x (the SEP-2663 extension), with a real worker process:

- as shipped, fastmcp-tasks 4.1.4 sends ``tasks/get|update|cancel`` without the ``Mcp-Name``
  header SEP-2663 requires of clients over Streamable HTTP ("the client MUST set the Mcp-Name
  header to the value of params.taskId"), and the server refuses them as SEP-2243 says (-32020,
  HTTP 400): a task is created and then cannot be read, so ``call_tool`` of any tool the server
  runs as a task fails. The product keeps the check (its own 2.x client and the conformance suite
  send the header); ``test_as_shipped_...`` pins what such a user sees;
- with the header the spec asks for (the driver's ``--with-mcp-name``: the one-line fix the
  client needs), everything this client does works: a task that completes while it polls
  ``tasks/get``, cancel, an input request answered through ``tasks/update``, a ``required`` tool.

Against the server on ``mcp`` 1.x: it speaks only 2025-11-25, which the 2.x SDK under FastMCP 4
negotiates through ``initialize``; on that wire FastMCP 4 runs no tasks (it cannot send
``params.task``), so plain calls run inline on the server and task-only tools are refused.
Issue 10 accepts this: it is on 2.x that a client of either generation gets tasks.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.integration.stack", "tests.clients.harness")

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from tests.clients.harness import run_client, start_stack  # noqa: E402
from tests.integration.stack import Stack, started_on  # noqa: E402

pytest_plugins = ["tests.integration.stack"]

pytestmark = [pytest.mark.slow, pytest.mark.clients, pytest.mark.timeout(300)]

FIXED = "--with-mcp-name"
HEADER_MISMATCH = -32020


def check_modern(connected: dict[str, object]) -> None:
    assert connected["protocol"] == "2026-07-28"
    assert connected["extensions"] == {"io.modelcontextprotocol/tasks": {}}


async def test_as_shipped_its_tasks_get_lacks_the_routing_header_and_is_refused(
    stack: Stack, engine: TaskEngine
) -> None:
    server, workers = await start_stack(stack, 2)
    run = await run_client("fastmcp4", "as_shipped", server.url)

    check_modern(run.one("connected"))
    created = run.one("created")
    assert created["status"] == "working"
    await started_on(workers, created["task_id"])  # the task exists and runs
    assert await engine.tasks.get(created["task_id"]) is not None
    for refused in (run.one("status_error"), run.one("call_tool_error")):
        assert refused["code"] == HEADER_MISMATCH
        assert "mcp-name header does not match" in refused["message"].lower()


async def test_a_task_completes_while_the_client_polls_tasks_get(stack: Stack) -> None:
    server, workers = await start_stack(stack, 2)
    run = await run_client("fastmcp4", "complete", server.url, FIXED)

    check_modern(run.one("connected"))
    created = run.one("created")
    assert (created["status"], created["ttl_ms"], created["poll_interval_ms"]) == ("working", 3_600_000, 500)
    await started_on(workers, created["task_id"])
    polls = run.all("poll")
    working = [p["message"] for p in polls if p["status"] == "working" and p["message"]]
    assert len(set(working)) >= 3, working  # progress shows as statusMessage on this wire
    assert all(m.startswith("computing: step ") for m in working), working
    last = polls[-1]
    assert last["status"] == "completed"
    assert last["result"]["structuredContent"] == {"seconds": 2.0}
    assert (last["error"], last["input_requests"]) == (None, None)
    result = run.one("result")
    assert result["texts"] == ["Computed for 2 seconds"]
    assert result["data"] == {"seconds": 2.0}  # no output schema claims another shape
    transparent = run.one("transparent")  # call_tool resolves the task itself
    assert (transparent["is_error"], transparent["texts"]) == (False, ["Computed for 0.5 seconds"])
    assert len(workers[0].find_all("started: slow_compute")) == 2


async def test_cancel_stops_the_tool_on_its_worker(stack: Stack) -> None:
    server, workers = await start_stack(stack, 2)
    run = await run_client("fastmcp4", "cancel", server.url, FIXED)

    task_id = run.one("created")["task_id"]
    worker, _ = await started_on(workers, task_id)
    assert run.one("running")["message"].startswith("computing: step ")
    after = run.one("after_cancel")
    assert (after["status"], after["result"], after["error"]) == ("cancelled", None, None)
    error = run.one("result_error")
    assert (error["type"], error["message"]) == ("ToolError", f"Task {task_id} was cancelled")
    stop = await worker.wait_for_log(f"stopping task {task_id}", timeout_s=5)
    assert stop.msg.endswith("task cancelled"), stop.msg
    assert worker.find(f"task {task_id} progress reached 100%") is None


async def test_an_input_request_is_answered_through_tasks_update(stack: Stack) -> None:
    """The worker asks; the client sees ``input_required`` with ``inputRequests`` on ``tasks/get``,
    its elicitation handler answers, and the answer goes back with ``tasks/update``."""
    server, workers = await start_stack(stack, 2)
    run = await run_client("fastmcp4", "input", server.url, FIXED)

    task_id = run.one("created")["task_id"]
    await started_on(workers, task_id)
    parked = run.one("parked")
    assert parked["status"] == "input_required"
    [(key, request)] = parked["input_requests"].items()
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "What is the answer?"
    asked = run.one("elicit")
    assert asked["message"] == "What is the answer?"
    update = run.one("tasks/update")
    assert update["task_id"] == task_id
    assert update["responses"] == {key: {"action": "accept", "content": {"answer": "forty-two"}}}
    assert run.one("result")["texts"] == ["forty-two"]
    final = run.one("final")
    assert final["status"] == "completed"
    assert final["result"]["content"] == [{"type": "text", "text": "forty-two"}]


async def test_a_required_tool_and_a_tool_error(stack: Stack) -> None:
    server, workers = await start_stack(stack, 2)
    run = await run_client("fastmcp4", "required", server.url, FIXED)

    report = run.one("long_report")  # taskSupport "required": always a task, run by the worker
    assert report["is_error"] is False
    assert report["structured"] == {"seconds": 1.0, "sections": ["gather", "analyse", "write"]}
    assert workers[0].find("started: long_report") is not None
    # On this wire a tool error completes the task, with isError: true in its result.
    task_id = run.one("created")["task_id"]
    await started_on(workers, task_id)
    final = run.one("final")
    assert (final["status"], final["error"]) == ("completed", None)
    assert final["result"] == {
        "content": [{"type": "text", "text": "disk on fire: sector 7G"}],
        "isError": True,
    }
    assert run.one("result")["is_error"] is True
    plain = run.one("call_tool_error")  # call_tool raises it, as for a tool error of a plain call
    assert (plain["type"], plain["message"]) == ("ToolError", "disk on fire: sector 7G")


async def test_against_the_1x_server_it_gets_plain_calls_and_no_tasks(stack: Stack) -> None:
    server, workers = await start_stack(stack, 1)
    run = await run_client("fastmcp4", "handshake", server.url)

    connected = run.one("connected")
    assert connected["protocol"] == "2025-11-25"
    assert connected["extensions"] is None
    assert connected["tools"]["long_report"] == "required"
    plain = run.one("plain")  # run inline by the server: no task, no worker
    assert (plain["is_error"], plain["texts"]) == (False, ["Computed for 0.2 seconds"])
    not_a_task = run.one("call_tool_task_error")
    assert not_a_task["type"] == "ToolError"
    assert "did not run as a task" in not_a_task["message"]
    refused = run.one("long_report_error")
    assert refused["code"] == -32601
    assert "must be called as a task" in refused["message"]
    # Elicitation works as a plain server request on this wire, answered by the same handler.
    assert run.one("ask_user")["texts"] == ["forty-two"]
    assert run.one("elicit")["message"] == "What is the answer?"
    ran = [r.msg for r in workers[0].records() if r.msg.startswith("task ") and " started: " in r.msg]
    assert ran == [], "a worker ran a task for a client that cannot have one"
