"""End to end over stdio: each client session spawns its own server process (``stdio_client``),
so two sessions are two server replicas; the tools run on real worker processes on one Redis.

The scenarios are the ones the Streamable HTTP tests run (``procs``); stdio adds that a session
ending takes its server process with it, which the disconnect test relies on.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.register_assert_rewrite("tests.integration.procs")  # its checks assert; imported below

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from tests.integration import procs  # noqa: E402
from tests.integration.procs import Stack, stdio_opener  # noqa: E402

pytest_plugins = ["tests.integration.procs"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.timeout(90),
]

LEASE_MS = 3000


async def test_three_tasks_on_two_workers_run_concurrently_with_progress_and_status(stack: Stack) -> None:
    workers = list(
        await asyncio.gather(
            stack.start_worker("worker-1", concurrency=1), stack.start_worker("worker-2", concurrency=1)
        )
    )
    elapsed = await procs.check_three_tasks(stdio_opener(stack), workers)
    print(f"3 s + 2 s + 1 s on two one-slot workers over stdio: {elapsed:.2f} s")


async def test_second_replica_sees_task_and_returns_its_result(stack: Stack) -> None:
    await stack.start_worker()
    await procs.check_replica_reads(stdio_opener(stack, "stdio-a"), stdio_opener(stack, "stdio-b"))


async def test_cancel_on_second_replica_stops_the_tool_on_its_worker(stack: Stack) -> None:
    workers = list(await asyncio.gather(stack.start_worker("worker-1"), stack.start_worker("worker-2")))
    end_to_end, reaction = await procs.check_cancel_from_other_replica(
        stdio_opener(stack, "stdio-a"), stdio_opener(stack, "stdio-b"), workers
    )
    print(
        f"cancel (replica B, stdio) -> tool stopped: {end_to_end * 1000:.0f} ms from the request, "
        f"{reaction * 1000:.0f} ms after the cancel was stored"
    )


async def test_sigkilled_worker_task_completes_on_the_other_worker(stack: Stack, engine: TaskEngine) -> None:
    stack.configure(lease_ms=LEASE_MS)
    workers = list(await asyncio.gather(stack.start_worker("worker-1"), stack.start_worker("worker-2")))
    recovery = await procs.check_worker_crash(stdio_opener(stack), workers, engine, LEASE_MS / 1000)
    print(f"SIGKILL -> re-run on the other worker (stdio client): {recovery:.2f} s (lease {LEASE_MS} ms)")


async def test_elicitation_round_trip_through_a_worker(stack: Stack) -> None:
    worker = await stack.start_worker()
    await procs.check_elicitation(stdio_opener(stack), [worker])


async def test_failing_tool_fails_the_task_with_its_message(stack: Stack) -> None:
    await stack.start_worker()
    await procs.check_failing_tool(stdio_opener(stack))


async def test_spec_error_codes(stack: Stack) -> None:
    await stack.start_worker()
    await procs.check_error_codes(stdio_opener(stack))


async def test_client_disconnect_does_not_cancel_the_task(stack: Stack) -> None:
    # Over stdio the first server process exits with its session; a new one picks the task up.
    worker = await stack.start_worker()
    await procs.check_disconnect(stdio_opener(stack, "stdio-a"), stdio_opener(stack, "stdio-b"), [worker])
