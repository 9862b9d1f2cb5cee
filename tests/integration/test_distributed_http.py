"""End to end over Streamable HTTP: real server replicas and arq worker processes on one Redis.

Every test starts its own processes (``stack`` fixture, one namespace per test) and talks to them
with the SDK's ``ClientSession``. The scenarios shared with the stdio tests live in ``procs``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.register_assert_rewrite("tests.integration.procs")  # its checks assert; imported below

from mcp.shared.exceptions import McpError  # noqa: E402

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from mcp_tasks_redis.engine.record import TaskStatus  # noqa: E402
from tests.integration import procs  # noqa: E402
from tests.integration.procs import Stack, http_opener, http_session, started_on, task_result  # noqa: E402

pytest_plugins = ["tests.integration.procs"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.timeout(90),
]

LEASE_MS = 3000


async def test_three_tasks_on_two_workers_run_concurrently_with_progress_and_status(stack: Stack) -> None:
    server, *workers = await asyncio.gather(
        stack.start_server(),
        stack.start_worker("worker-1", concurrency=1),
        stack.start_worker("worker-2", concurrency=1),
    )
    elapsed = await procs.check_three_tasks(http_opener(server), workers)
    print(f"3 s + 2 s + 1 s on two one-slot workers over HTTP: {elapsed:.2f} s")


async def test_second_replica_sees_task_and_returns_its_result(stack: Stack) -> None:
    a, b, _ = await asyncio.gather(
        stack.start_server("server-a"), stack.start_server("server-b"), stack.start_worker()
    )
    await procs.check_replica_reads(http_opener(a), http_opener(b))


async def test_cancel_on_second_replica_stops_the_tool_on_its_worker(stack: Stack) -> None:
    a, b, *workers = await asyncio.gather(
        stack.start_server("server-a"),
        stack.start_server("server-b"),
        stack.start_worker("worker-1"),
        stack.start_worker("worker-2"),
    )
    end_to_end, reaction = await procs.check_cancel_from_other_replica(
        http_opener(a), http_opener(b), workers
    )
    print(
        f"cancel (replica B) -> tool stopped: {end_to_end * 1000:.0f} ms from the request, "
        f"{reaction * 1000:.0f} ms after the cancel was stored"
    )


async def test_sigkilled_worker_task_completes_on_the_other_worker(stack: Stack, engine: TaskEngine) -> None:
    stack.configure(lease_ms=LEASE_MS)
    server, *workers = await asyncio.gather(
        stack.start_server(), stack.start_worker("worker-1"), stack.start_worker("worker-2")
    )
    recovery = await procs.check_worker_crash(http_opener(server), workers, engine, LEASE_MS / 1000)
    print(f"SIGKILL -> re-run on the other worker: {recovery:.2f} s (lease {LEASE_MS} ms)")


async def test_sigterm_worker_hands_its_task_back_promptly(stack: Stack, engine: TaskEngine) -> None:
    # Both workers are up before the task exists: the one that takes it is stopped, the other
    # is already reading when the task comes back.
    server, *workers = await asyncio.gather(
        stack.start_server(),
        stack.start_worker("worker-1", concurrency=1),
        stack.start_worker("worker-2", concurrency=1),
    )
    async with http_session(server.url) as session:
        created = await session.experimental.call_tool_as_task("slow_compute", {"seconds": 4})
        task_id = created.task.taskId
        first, _ = await started_on(workers, task_id)
        second = next(w for w in workers if w is not first)
        terminated_at = time.time()
        first.terminate()
        await first.wait_exit(timeout_s=10)
        exited_after = time.time() - terminated_at
        assert first.find(f"task {task_id} handed back on shutdown") is not None
        _, rerun = await started_on([second], task_id)
        result = await task_result(session, task_id)
        assert result.structuredContent == {"seconds": 4}
    assert rerun.ts is not None
    handed_over = rerun.ts - terminated_at
    record = await engine.tasks.get(task_id)
    assert record is not None
    # A hand-back is not a lost worker: the attempt is not counted.
    assert (record.status, record.attempt) == (TaskStatus.COMPLETED, 1)
    assert exited_after < 5, f"worker took {exited_after:.2f} s to exit on SIGTERM"
    assert handed_over < 2, f"task restarted {handed_over:.2f} s after SIGTERM"
    print(
        f"SIGTERM -> worker exited in {exited_after:.2f} s, task re-run elsewhere after {handed_over:.2f} s"
    )


async def test_elicitation_round_trip_through_a_worker(stack: Stack) -> None:
    server, worker = await asyncio.gather(stack.start_server(), stack.start_worker())
    await procs.check_elicitation(http_opener(server), [worker])


async def test_failing_tool_fails_the_task_with_its_message(stack: Stack) -> None:
    server, _ = await asyncio.gather(stack.start_server(), stack.start_worker())
    await procs.check_failing_tool(http_opener(server))


async def test_spec_error_codes(stack: Stack) -> None:
    server, _ = await asyncio.gather(stack.start_server(), stack.start_worker())
    await procs.check_error_codes(http_opener(server))


async def test_client_disconnect_does_not_cancel_the_task(stack: Stack) -> None:
    a, b, worker = await asyncio.gather(
        stack.start_server("server-a"), stack.start_server("server-b"), stack.start_worker()
    )
    await procs.check_disconnect(http_opener(a), http_opener(b), [worker])


async def test_worker_fails_a_task_for_a_tool_it_does_not_know(stack: Stack, engine: TaskEngine) -> None:
    server, worker = await asyncio.gather(stack.start_server(), stack.start_worker())
    record = await engine.tasks.create(tool="nope", arguments={}, dispatch=True)
    final = await engine.wait_until(record.task_id, lambda r: r is not None and r.is_terminal, timeout=10)
    assert final is not None
    assert final.status is TaskStatus.FAILED
    assert "Unknown tool 'nope'" in (final.status_message or "")
    assert worker.find(f"task {record.task_id} started: nope") is not None
    # A client sees the same failure as a JSON-RPC error on tasks/result.
    async with http_session(server.url) as session:
        assert (await session.experimental.get_task(record.task_id)).status == "failed"
        with pytest.raises(McpError) as info:
            await task_result(session, record.task_id)
    assert "Unknown tool 'nope'" in info.value.error.message
