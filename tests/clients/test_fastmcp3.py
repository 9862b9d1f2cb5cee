"""FastMCP 3's client (2025-11-25 task wire) against the product on ``mcp`` 1.x and on ``mcp`` 2.x.

The same four scenarios run against a server of each major (the 2.x server serves this client
the 2025-11-25 wire, ``mcp_v2/legacy.py``), each with a real worker process. What this client
does that the SDK's own client does not: it shows progress only from ``notifications/tasks/status``
(it sends no progressToken with a task call), and it polls ``tasks/get`` and calls ``tasks/result``
only once the task has ended, so an input request must reach it on the session's stream (issue 9).
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.integration.stack", "tests.clients.harness")

from tests.clients.harness import run_client, start_stack  # noqa: E402
from tests.integration.stack import Stack, started_on  # noqa: E402

pytest_plugins = ["tests.integration.stack"]

pytestmark = [pytest.mark.slow, pytest.mark.clients, pytest.mark.timeout(300)]

MAJORS = [pytest.param(1, id="server-mcp1"), pytest.param(2, id="server-mcp2")]
SHOWN = ("is_error", "texts", "structured", "data")


@pytest.mark.parametrize("major", MAJORS)
async def test_task_progress_arrives_as_status_messages(stack: Stack, major: int) -> None:
    server, workers = await start_stack(stack, major)
    run = await run_client("fastmcp3", "progress", server.url)

    connected = run.one("connected")
    assert connected["protocol"] == "2025-11-25"
    assert connected["tasks"]["requests"] == {"tools": {"call": {}}}
    assert connected["tools"]["long_report"] == "required"
    assert connected["tools"]["greet"] == "forbidden"
    created = run.one("created")
    assert created["immediate"] is False, "the server ran the call instead of making a task"
    await started_on(workers, created["task_id"])

    result = run.one("result")
    assert result["is_error"] is False
    assert result["texts"] == ["Computed for 2 seconds"]
    assert result["structured"] == {"seconds": 2.0}
    # No output schema claims another shape: the client's parsed data is the structured content.
    assert result["data"] == {"seconds": 2.0}

    statuses = run.all("status")
    assert statuses, f"no notifications/tasks/status reached the client:\n{run.transcript()}"
    assert {s["task_id"] for s in statuses} == {created["task_id"]}
    assert statuses[-1]["status"] == "completed"
    working = [s for s in statuses if s["status"] == "working"]
    messages = [s["message"] for s in working]
    assert len(set(messages)) >= 5, messages
    assert all(m.startswith("computing: step ") for m in messages), messages
    # They arrive while the tool runs (2 s), not all at its end.
    assert working[-1]["t"] - working[0]["t"] >= 0.8, [round(s["t"] - working[0]["t"], 2) for s in working]
    assert all(s["t"] <= result["t"] for s in working)


@pytest.mark.parametrize("major", MAJORS)
async def test_cancelling_a_running_task_stops_the_tool_on_its_worker(stack: Stack, major: int) -> None:
    server, workers = await start_stack(stack, major)
    run = await run_client("fastmcp3", "cancel", server.url)

    task_id = run.one("created")["task_id"]
    worker, _ = await started_on(workers, task_id)
    assert run.one("running")["message"].startswith("computing: step ")
    after = run.one("after_cancel")
    assert after["status"] == "cancelled"
    error = run.one("result_error")
    assert error["message"] == f"Task {task_id} was cancelled"
    stop = await worker.wait_for_log(f"stopping task {task_id}", timeout_s=5)
    assert stop.msg.endswith("task cancelled"), stop.msg
    assert worker.find(f"task {task_id} progress reached 100%") is None


@pytest.mark.parametrize("major", MAJORS)
async def test_elicitation_through_a_worker_reaches_a_client_that_only_polls(
    stack: Stack, major: int
) -> None:
    """FastMCP 3 calls ``tasks/result`` only after ``tasks/get`` shows the task ended: the task
    can only end if the server delivered the worker's question on the session's stream."""
    server, workers = await start_stack(stack, major)
    run = await run_client("fastmcp3", "elicitation", server.url)

    task_id = run.one("created")["task_id"]
    await started_on(workers, task_id)
    asked = run.one("elicit")
    assert asked["message"] == "What is the answer?"
    assert asked["params"]["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
    assert "answer" in asked["params"]["requestedSchema"]["properties"]
    result = run.one("result")
    assert result["texts"] == ["forty-two"]
    assert result["is_error"] is False
    assert run.one("final")["status"] == "completed"
    assert asked["t"] < result["t"]


@pytest.mark.parametrize("major", MAJORS)
async def test_a_failing_tool_as_a_task_gives_what_the_plain_call_gives(stack: Stack, major: int) -> None:
    server, workers = await start_stack(stack, major)
    run = await run_client("fastmcp3", "failing", server.url)

    task_id = run.one("created")["task_id"]
    await started_on(workers, task_id)
    plain, result = run.one("plain"), run.one("result")
    assert plain["is_error"] is True
    assert plain["texts"] == ["disk on fire: sector 7G"]
    assert {k: result[k] for k in SHOWN} == {k: plain[k] for k in SHOWN}
    final = run.one("final")
    assert final["status"] == "failed"  # a tool error is a failed task on this wire
    assert "disk on fire: sector 7G" in final["message"]
