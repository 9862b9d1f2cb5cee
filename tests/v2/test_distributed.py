"""SEP-2663 end to end: a real `mcp` 2.x client, two server replicas and two worker processes.

Every test starts its own processes on one Redis namespace (``stack`` fixture) serving the
conformance fixture tools (``mcp_tasks_redis.examples.conformance``), and talks to replica A and
replica B with the SDK's `Client` declaring the tasks extension: what one replica created, the other reads,
answers and cancels, through Redis only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

pytest.register_assert_rewrite("tests.integration.stack", "tests.v2.clients")
from mcp.shared.exceptions import MCPError  # noqa: E402
from mcp_types import INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY, SubscriptionsListenResult  # noqa: E402

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from mcp_tasks_redis.engine.record import TaskStatus  # noqa: E402
from mcp_tasks_redis.mcp_v2.client import (  # noqa: E402
    TasksClientExtension,
    cancel_task,
    get_task,
    listen_request,
    update_task,
    wait_task,
)
from mcp_tasks_redis.mcp_v2.protocol import CreateTaskResult, GetTaskResult  # noqa: E402
from tests.integration.stack import ProductProcess, ServerProcess, Stack, started_on, wait_for  # noqa: E402
from tests.v2.clients import TaskNotes, plain_client, tasks_client  # noqa: E402

pytest_plugins = ["tests.integration.stack"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

APP = "mcp_tasks_redis.examples.conformance:app"  # in the wheel: also runs from .ci/wheel-check
LEASE_MS = 2000


async def start(stack: Stack, workers: int = 2) -> tuple[ServerProcess, ServerProcess, list[ProductProcess]]:
    stack.configure(app=APP, lease_ms=LEASE_MS)
    a, b, *started = await asyncio.gather(
        stack.start_server("server-a"),
        stack.start_server("server-b"),
        *(stack.start_worker(f"worker-{i}") for i in range(1, workers + 1)),
    )
    assert isinstance(a, ServerProcess)
    assert isinstance(b, ServerProcess)
    return a, b, started


async def create(client: Any, tool: str, arguments: dict[str, Any]) -> CreateTaskResult:
    created = await client.session.call_tool(tool, arguments, allow_claimed=True)
    assert isinstance(created, CreateTaskResult), created
    return created


async def status_of(client: Any, task_id: str, statuses: set[str], timeout_s: float = 10) -> GetTaskResult:
    async def check() -> GetTaskResult | None:
        task = await get_task(client.session, task_id)
        return task if task.status in statuses else None

    found: GetTaskResult = await wait_for(check, timeout_s=timeout_s, what=f"{task_id} in {statuses}")
    return found


async def test_created_on_a_is_read_and_cancelled_on_b_and_the_worker_stops(stack: Stack) -> None:
    a, b, workers = await start(stack)
    async with tasks_client(a.url) as on_a, tasks_client(b.url) as on_b:
        created = await create(on_a, "slow_compute", {"seconds": 30, "label": "cancel-me"})
        assert (created.status, created.ttl_ms, created.poll_interval_ms) == ("working", 3_600_000, 500)
        # Written before the answer: B resolves it at once, without waiting for a worker.
        seen = await get_task(on_b.session, created.task_id)
        assert (seen.task_id, seen.status, seen.result, seen.error) == (
            created.task_id,
            "working",
            None,
            None,
        )

        worker, _ = await started_on(workers, created.task_id)
        await cancel_task(on_b.session, created.task_id)
        stop = await worker.wait_for_log(f"stopping task {created.task_id}", timeout_s=5)
        assert stop.msg.endswith("task cancelled"), stop.msg
        final = await status_of(on_a, created.task_id, {"cancelled", "completed", "failed"})
        assert final.status == "cancelled"
        assert final.result is None
        assert final.error is None
        # Cancelling a finished task is the same acknowledgement, and changes nothing.
        await cancel_task(on_a.session, created.task_id)
        assert (await get_task(on_b.session, created.task_id)).status == "cancelled"
    assert worker.find(f"task {created.task_id} progress reached 100%") is None


async def test_results_errors_and_tool_errors_read_the_same_on_both_replicas(stack: Stack) -> None:
    a, b, _ = await start(stack, workers=1)
    async with tasks_client(a.url) as on_a, tasks_client(b.url) as on_b:
        # The claim resolves transparently: the client polls tasks/get on the replica it uses.
        result = await on_a.call_tool("slow_compute", {"seconds": 0.5, "label": "transparent"})
        assert [c.text for c in result.content] == ["Computed transparent in 0.5 s"]  # type: ignore[union-attr]

        tool_error = await create(on_a, "failing_job", {})
        protocol_error = await create(on_b, "protocol_error_job", {})
        for client in (on_a, on_b):
            done = await wait_task(client.session, tool_error.task_id)
            assert done.status == "completed"  # isError is still completed on this wire
            assert done.result is not None
            assert done.result["isError"] is True
            assert "failing_job failed" in done.result["content"][0]["text"]
            failed = await wait_task(client.session, protocol_error.task_id)
            assert failed.status == "failed"
            assert failed.result is None
            assert failed.error == {
                "code": -32603,
                "message": "protocol_error_job raised a protocol-level error",
            }


async def test_subscribed_client_gets_every_change_as_notifications_tasks(stack: Stack) -> None:
    a, b, _ = await start(stack, workers=1)
    notes = TaskNotes()
    async with (
        tasks_client(a.url) as on_a,
        tasks_client(b.url, TasksClientExtension(on_notification=notes)) as on_b,
    ):
        created = await create(on_a, "slow_compute", {"seconds": 2, "label": "watched"})
        ended: list[SubscriptionsListenResult] = []

        async def listen() -> None:
            # The listen result arrives when the server ends the stream: once the task has ended.
            request = listen_request([created.task_id, "no-such-task"])
            ended.append(
                await on_b.session.send_request(
                    request, SubscriptionsListenResult, request_read_timeout_seconds=30
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await notes.wait(
                lambda: any(n.status == "completed" for n in notes.of(created.task_id)),
                15,
                "a completed notification",
            )
        assert ended, "the stream was ended by the server once the task was done"
    seen = notes.of(created.task_id)
    assert notes.of("no-such-task") == []
    assert [n.status for n in seen][-1] == "completed"
    assert {n.status for n in seen[:-1]} <= {"working"}
    messages = [n.status_message for n in seen if n.status == "working" and n.status_message]
    assert len(messages) >= 3, messages  # progress travels as statusMessage
    assert messages[-1].startswith("watched: step")
    assert messages == sorted(set(messages), key=messages.index)
    last = seen[-1]
    assert last.result == {"content": [{"type": "text", "text": "Computed watched in 2 s"}]}
    # Every frame of the stream names the subscription.
    assert all("io.modelcontextprotocol/subscriptionId" in (n.meta or {}) for n in seen)


async def test_two_outstanding_inputs_answered_one_at_a_time_on_different_replicas(
    stack: Stack, engine: TaskEngine
) -> None:
    a, b, workers = await start(stack)
    async with tasks_client(a.url) as on_a, tasks_client(b.url) as on_b:
        created = await create(on_a, "multi_input", {})
        worker, _ = await started_on(workers, created.task_id)
        asking = await status_of(on_b, created.task_id, {"input_required"})
        await wait_for(
            lambda: _two_requests(on_a, created.task_id), timeout_s=5, what="both requests outstanding"
        )
        asking = await get_task(on_b.session, created.task_id)
        requests = asking.input_requests or {}
        assert len(requests) == 2
        assert {r["method"] for r in requests.values()} == {"elicitation/create"}
        first, second = sorted(requests)

        # A partial answer on B, plus a key that was never asked: the task still waits, on A too.
        await update_task(
            on_b.session,
            created.task_id,
            {
                first: {"action": "accept", "content": {"name": "partial-1"}},
                "never-asked": {"action": "accept"},
            },
        )
        after_first = await get_task(on_a.session, created.task_id)
        assert after_first.status == "input_required"
        assert set(after_first.input_requests or {}) == {second}

        await update_task(
            on_a.session, created.task_id, {second: {"action": "accept", "content": {"name": "partial-2"}}}
        )
        done = await wait_task(on_b.session, created.task_id)
        assert done.status == "completed"
        assert done.result is not None
        assert done.result["content"][0]["text"] in ("Got partial-1, partial-2", "Got partial-2, partial-1")
    record = await engine.tasks.get(created.task_id)
    assert record is not None
    assert record.status is TaskStatus.COMPLETED
    assert set(record.answers) == {first, second}
    assert "never-asked" not in record.answers
    assert worker.find(f"task {created.task_id} finished") is not None


async def _two_requests(client: Any, task_id: str) -> bool:
    return len((await get_task(client.session, task_id)).input_requests or {}) == 2


async def test_elicitation_answered_through_the_client_extension(stack: Stack) -> None:
    a, _, _ = await start(stack, workers=1)
    asked: list[dict[str, Any]] = []

    async def answer(key: str, request: dict[str, Any]) -> dict[str, Any]:
        asked.append(request)
        return {"action": "accept", "content": {"confirm": True}}

    async with tasks_client(a.url, TasksClientExtension(on_input=answer, poll_interval_s=0.1)) as client:
        result = await client.call_tool("confirm_delete", {"filename": "report.txt"})
    assert [c.text for c in result.content] == ["Deleted report.txt"]  # type: ignore[union-attr]
    assert [r["params"]["message"] for r in asked] == ["Delete report.txt?"]


async def test_question_before_the_task_exists_then_the_task(stack: Stack) -> None:
    """MRTR first (no task yet), then a task whose worker reads the answer: the SDK client answers
    the InputRequiredResult with its elicitation callback and retries the call by itself."""
    a, _, workers = await start(stack, workers=1)
    asked: list[str] = []

    async def elicit(context: Any, params: Any) -> Any:
        from mcp_types import ElicitResult

        asked.append(params.message)
        return ElicitResult(action="accept", content={"name": "Alice"})

    async with tasks_client(
        a.url, TasksClientExtension(poll_interval_s=0.1), elicitation_callback=elicit
    ) as client:
        result = await client.call_tool("test_tool_with_task", {})
    assert asked == ["What is your name?"]
    assert "Hello, Alice!" in result.content[0].text  # type: ignore[union-attr]
    assert any(w.find("test_tool_with_task (attempt 1)") for w in workers)


async def test_a_killed_worker_s_task_runs_again_on_the_other(stack: Stack, engine: TaskEngine) -> None:
    a, b, workers = await start(stack)
    async with tasks_client(a.url) as on_a, tasks_client(b.url) as on_b:
        created = await create(on_a, "slow_compute", {"seconds": 2, "label": "survivor"})
        victim, _ = await started_on(workers, created.task_id, attempt=1)
        await status_of(on_b, created.task_id, {"working"})
        victim.kill()
        survivors = [w for w in workers if w is not victim]
        await started_on(survivors, created.task_id, attempt=2, timeout_s=LEASE_MS / 1000 + 10)
        done = await wait_task(on_b.session, created.task_id, poll_interval_s=0.1)
        assert done.status == "completed"
        assert done.result == {"content": [{"type": "text", "text": "Computed survivor in 2 s"}]}
    record = await engine.tasks.get(created.task_id)
    assert record is not None
    assert record.attempt == 2


async def test_what_a_client_without_the_extension_gets(stack: Stack) -> None:
    a, _, _ = await start(stack, workers=1)
    async with plain_client(a.url) as client:
        # An optional tool runs inline: a plain result, no task.
        result = await client.call_tool("slow_compute", {"seconds": 0, "label": "inline"})
        assert [c.text for c in result.content] == ["Computed inline in 0 s"]  # type: ignore[union-attr]
        # A tool that only runs as a task: -32021 naming the extension.
        with pytest.raises(MCPError) as info:
            await client.call_tool("failing_job", {})
        assert info.value.error.code == MISSING_REQUIRED_CLIENT_CAPABILITY
        assert info.value.error.data == {
            "requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}
        }
        # tasks/* need the extension declared on the request.
        with pytest.raises(MCPError) as info:
            await get_task(client.session, "any-task")
        assert info.value.error.code == MISSING_REQUIRED_CLIENT_CAPABILITY
    async with tasks_client(a.url) as client:
        with pytest.raises(MCPError) as info:
            await get_task(client.session, "no-such-task")
        assert info.value.error.code == INVALID_PARAMS
