"""Replica failover: a client creates tasks on replica A, A is SIGKILLed mid-run, and the client
carries on against replica B: status, results and cancel all work there, because nothing about a
task lives in a replica. Without auth the task id is the capability; with auth the tasks are
bound to the principal, which B recognises from another token of the same principal, while
another principal sees nothing of them.

    .venv/bin/pytest tests/chaos/test_failover.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.integration.procs")

from mcp import ClientSession  # noqa: E402
from mcp.shared.exceptions import McpError  # noqa: E402
from mcp.types import INVALID_PARAMS, CallToolResult  # noqa: E402

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from tests.hostile.auth_server import bearer_session, start_auth_server  # noqa: E402
from tests.integration.procs import ProductProcess, Stack, http_session, started_on  # noqa: E402

pytest_plugins = ["tests.integration.procs"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

DURATIONS = (1.0, 2.0, 3.0, 4.0)
TOKENS: dict[str, dict[str, Any]] = {
    # Two tokens of one principal (say, before and after a refresh, with other scopes).
    "alice-token-1": {
        "client_id": "notes-app",
        "subject": "alice",
        "iss": "https://idp.example",
        "scopes": ["tasks"],
    },
    "alice-token-2": {
        "client_id": "notes-app",
        "subject": "alice",
        "iss": "https://idp.example",
        "scopes": ["tasks", "admin"],
    },
    "bob-token": {
        "client_id": "notes-app",
        "subject": "bob",
        "iss": "https://idp.example",
        "scopes": ["tasks"],
    },
}


@contextlib.asynccontextmanager
async def abandoned(
    session_cm: contextlib.AbstractAsyncContextManager[ClientSession],
) -> AsyncIterator[ClientSession]:
    """A session whose server is killed while it is open: leaving it swallows the transport's
    complaints (the server is gone), as a client that fails over would."""
    stack = contextlib.AsyncExitStack()
    session = await stack.enter_async_context(session_cm)
    try:
        yield session
    finally:
        with contextlib.suppress(Exception, BaseExceptionGroup):
            await stack.aclose()


async def create_on_a(session: ClientSession, workers: list[ProductProcess]) -> tuple[list[str], str]:
    ids = [
        (await session.experimental.call_tool_as_task("slow_compute", {"seconds": s})).task.taskId
        for s in DURATIONS
    ]
    long_id = (await session.experimental.call_tool_as_task("slow_compute", {"seconds": 60})).task.taskId
    for task_id in [*ids, long_id]:
        await started_on(workers, task_id)
    return ids, long_id


async def carry_on_at_b(
    b: ClientSession, ids: list[str], long_id: str, workers: list[ProductProcess]
) -> None:
    """Status, results and a cancel through replica B, for tasks created on the dead replica A."""
    for task_id in [*ids, long_id]:
        status = (await b.experimental.get_task(task_id)).status
        assert status in ("working", "completed"), (task_id, status)
    for seconds, task_id in zip(DURATIONS, ids, strict=True):
        result = await b.experimental.get_task_result(task_id, CallToolResult)
        assert not result.isError
        assert result.structuredContent == {"seconds": seconds}
    cancelled = await b.experimental.cancel_task(long_id)
    assert cancelled.status == "cancelled"
    runner, _ = await started_on(workers, long_id)
    await runner.wait_for_log(f"stopping task {long_id}: task cancelled", timeout_s=5)
    assert (await b.experimental.get_task(long_id)).status == "cancelled"


async def test_failover_without_auth(stack: Stack, engine: TaskEngine) -> None:
    a, b, *workers = await asyncio.gather(
        stack.start_server("server-a"),
        stack.start_server("server-b"),
        stack.start_worker("worker-1"),
        stack.start_worker("worker-2"),
    )
    async with abandoned(http_session(a.url)) as on_a:
        ids, long_id = await create_on_a(on_a, workers)
        a.kill()
        killed_at = time.monotonic()
    async with http_session(b.url) as on_b:
        first = await on_b.experimental.get_task(ids[0])
        seen_after = time.monotonic() - killed_at
        assert first.taskId == ids[0]
        await carry_on_at_b(on_b, ids, long_id, workers)
        # A new session on B is not the session that created them: its listing stays empty.
        listed = await on_b.experimental.list_tasks()
        assert {t.taskId for t in listed.tasks}.isdisjoint([*ids, long_id])
    records = [await engine.tasks.get(t) for t in ids]
    assert [r.status.value for r in records if r is not None] == ["completed"] * len(ids)
    print(
        f"\nfailover without auth: {len(ids) + 1} tasks created on A, A SIGKILLed; on B: "
        f"first status {seen_after * 1000:.0f} ms after the kill, {len(ids)} results, 1 cancel"
    )


async def test_failover_with_auth_keeps_tasks_bound_to_their_principal(stack: Stack) -> None:
    a, b, *workers = await asyncio.gather(
        start_auth_server(stack, "auth-server-a", TOKENS),
        start_auth_server(stack, "auth-server-b", TOKENS),
        stack.start_worker("worker-1"),
        stack.start_worker("worker-2"),
    )
    async with abandoned(bearer_session(a.url, "alice-token-1")) as alice_on_a:
        ids, long_id = await create_on_a(alice_on_a, workers)
        a.kill()
    mine = {*ids, long_id}
    # Another principal on B: every one of alice's ids is "not found", exactly like a made-up id.
    async with bearer_session(b.url, "bob-token") as bob:
        for task_id in [*mine, "made-up-" + "x" * 24]:
            for ask in (
                bob.experimental.get_task,
                bob.experimental.cancel_task,
                lambda t: bob.experimental.get_task_result(t, CallToolResult),
            ):
                with pytest.raises(McpError) as info:
                    await ask(task_id)
                assert info.value.error.code == INVALID_PARAMS
                assert info.value.error.message == f"Task not found: {task_id}"
        assert mine.isdisjoint(t.taskId for t in (await bob.experimental.list_tasks()).tasks)
    # The same principal on B, with another token: it sees, lists, fetches and cancels them.
    async with bearer_session(b.url, "alice-token-2") as alice_on_b:
        listed = {t.taskId for t in (await alice_on_b.experimental.list_tasks()).tasks}
        assert listed == mine
        await carry_on_at_b(alice_on_b, ids, long_id, workers)
    # Bob's probing changed nothing: the long task was cancelled by alice, not by bob.
    print(
        f"\nfailover with auth: {len(mine)} tasks of alice created on A, A SIGKILLed; on B alice "
        f"(another token) listed {len(listed)}, fetched {len(ids)} results, cancelled 1; bob got "
        f"'Task not found' for all of them"
    )
