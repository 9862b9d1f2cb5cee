"""Isolation between callers.

With authentication (the SDK's bearer auth on Streamable HTTP, a static test token verifier), a
task belongs to its principal (issuer, client id, subject): another principal cannot get, fetch,
list or cancel it, and gets exactly the error an unknown id gets (same code, same message with the
id swapped, same data) - no existence oracle. Principals that differ in any one part, or whose
parts only concatenate alike, are different principals. Without authentication the id is the
capability: ids carry at least 128 random bits, and tasks/list shows only the calling session's
tasks.

    .venv/bin/pytest tests/hostile/test_isolation.py -s
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import string
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.integration.procs")

from mcp.shared.exceptions import McpError  # noqa: E402
from mcp.types import INVALID_PARAMS, CallToolResult, ErrorData  # noqa: E402

from mcp_tasks_redis.examples.demo import app as demo_app  # noqa: E402
from tests.hostile.auth_server import bearer_session, start_auth_server  # noqa: E402
from tests.hostile.harness import InProcessMCP  # noqa: E402

pytest_plugins = ["tests.integration.procs"]

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

IDP = "https://idp.example"
TOKENS: dict[str, dict[str, Any]] = {
    "alice": {"client_id": "notes-app", "subject": "alice", "iss": IDP, "scopes": ["tasks"]},
    "alice-again": {"client_id": "notes-app", "subject": "alice", "iss": IDP, "scopes": ["read"]},
    "bob": {"client_id": "notes-app", "subject": "bob", "iss": IDP, "scopes": ["tasks"]},
    # Alice's subject through another client, or from another issuer: other principals.
    "alice-other-client": {"client_id": "other-app", "subject": "alice", "iss": IDP, "scopes": []},
    "alice-other-issuer": {
        "client_id": "notes-app",
        "subject": "alice",
        "iss": "https://evil.example",
        "scopes": [],
    },
    "no-subject": {"client_id": "notes-app", "iss": IDP, "scopes": []},
    # Parts that only look alike once joined together.
    "split-1": {"client_id": "notes-app", "subject": "carol|x", "iss": IDP, "scopes": []},
    "split-2": {"client_id": "notes-app|carol", "subject": "x", "iss": IDP, "scopes": []},
}
OTHERS = ["bob", "alice-other-client", "alice-other-issuer", "no-subject", "split-1"]


def common_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def unknown_id() -> str:
    return "unknown-" + os.urandom(12).hex()


def same_shape(error: ErrorData, task_id: str, reference: ErrorData, reference_id: str) -> bool:
    return (error.code, error.message.replace(task_id, "<id>"), error.data) == (
        reference.code,
        reference.message.replace(reference_id, "<id>"),
        reference.data,
    )


async def refusals(session: Any, task_id: str) -> list[ErrorData]:
    """The errors of tasks/get, tasks/result and tasks/cancel for ``task_id``."""
    errors: list[ErrorData] = []
    for ask in (
        session.experimental.get_task,
        lambda t: session.experimental.get_task_result(t, CallToolResult),
        session.experimental.cancel_task,
    ):
        with pytest.raises(McpError) as info:
            await asyncio.wait_for(ask(task_id), 10)  # tasks/result must not block either
        errors.append(info.value.error)
    return errors


@pytest.mark.slow
async def test_principals_cannot_reach_each_others_tasks(stack: Any) -> None:
    server, _ = await asyncio.gather(start_auth_server(stack, "auth-server", TOKENS), stack.start_worker())
    async with bearer_session(server.url, "alice") as alice:
        done = (await alice.experimental.call_tool_as_task("slow_compute", {"seconds": 0})).task.taskId
        running = (await alice.experimental.call_tool_as_task("slow_compute", {"seconds": 60})).task.taskId
        await alice.experimental.get_task_result(done, CallToolResult)
    alices = [done, running]
    async with bearer_session(server.url, "split-2") as carol:
        carols = [(await carol.experimental.call_tool_as_task("slow_compute", {"seconds": 60})).task.taskId]

    probes = 0
    for name, owned in [*((o, alices) for o in OTHERS), ("split-1", carols), ("alice", carols)]:
        async with bearer_session(server.url, name) as other:
            for task_id in owned:
                reference_id = unknown_id()
                reference = await refusals(other, reference_id)
                assert {e.code for e in reference} == {INVALID_PARAMS}
                for error, ref in zip(await refusals(other, task_id), reference, strict=True):
                    assert same_shape(error, task_id, ref, reference_id), (name, error, ref)
                    probes += 1
            listed = {t.taskId for t in (await other.experimental.list_tasks()).tasks}
            assert listed.isdisjoint(owned), (name, listed)
    # Nothing the others did reached the tasks: the running one still runs, and the owner (with
    # another token) lists, fetches and cancels them.
    async with bearer_session(server.url, "alice-again") as alice:
        assert {t.taskId for t in (await alice.experimental.list_tasks()).tasks} == set(alices)
        assert (await alice.experimental.get_task(running)).status == "working"
        result = await alice.experimental.get_task_result(done, CallToolResult)
        assert result.structuredContent == {"seconds": 0}
        assert (await alice.experimental.cancel_task(running)).status == "cancelled"
    async with bearer_session(server.url, "split-2") as carol:
        assert (await carol.experimental.cancel_task(carols[0])).status == "cancelled"
    print(
        f"\nauth isolation: {len(OTHERS) + 2} other principals x tasks/get|result|cancel: {probes} "
        "refusals, each identical to an unknown id's; listings disjoint; the owners unaffected"
    )


async def test_no_token_no_service(stack: Any) -> None:
    import httpx

    server = await start_auth_server(stack, "auth-server", TOKENS)
    async with httpx.AsyncClient(follow_redirects=True) as client:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YWxpY2U6"}):
            response = await client.post(
                server.url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tasks/list"},
                headers={"Accept": "application/json, text/event-stream", **headers},
            )
            assert response.status_code == 401, (headers, response.status_code)


# -- without auth: the id is the capability -----------------------------------------------------------


@pytest.fixture
def mcp(redis_url: str, namespace: str) -> Iterator[InProcessMCP]:
    with InProcessMCP(redis_url, namespace, demo_app, sessions=3) as server:
        yield server


def test_task_ids_are_unguessable(mcp: InProcessMCP) -> None:
    n = 300
    ids = [
        mcp.run(lambda s: s.experimental.call_tool_as_task("slow_compute", {"seconds": 1})).task.taskId
        for _ in range(n)
    ]
    assert len(set(ids)) == n
    alphabet = set(string.ascii_letters + string.digits + "-_")
    assert all(set(i) <= alphabet for i in ids), "ids use the URL-safe base64 alphabet"
    length = min(len(i) for i in ids)
    bits = length * math.log2(len(alphabet))
    assert bits >= 128, f"{length} characters of 64 symbols carry only {bits:.0f} bits"
    # Random, not sequential or time-based: every position takes many values, the symbols are
    # used evenly, and ids share no prefix.
    for position in range(length):
        assert len({i[position] for i in ids}) > 40, f"position {position} barely varies"
    counts = Counter("".join(ids))
    expected = n * length / len(alphabet)
    chi2 = sum((counts.get(c, 0) - expected) ** 2 / expected for c in alphabet)
    assert chi2 < 150, f"symbol frequencies far from uniform (chi2 {chi2:.0f}, 63 degrees of freedom)"
    shared = max(common_prefix(a, b) for a, b in itertools.pairwise(sorted(ids)))
    assert shared <= 4
    print(
        f"\nids: {n} distinct, {length} URL-safe base64 characters = {bits:.0f} bits, chi2 {chi2:.0f}, "
        f"longest shared prefix {shared}"
    )


def test_listing_shows_only_the_calling_sessions_tasks(mcp: InProcessMCP) -> None:
    created: dict[int, set[str]] = {0: set(), 1: set(), 2: set()}
    # Enough for session 0 to page (the page size is 50), interleaved with the others' tasks.
    for i in range(60):
        for session in (0, 1) if i % 3 else (0,):
            task = mcp.run(
                lambda s: s.experimental.call_tool_as_task("slow_compute", {"seconds": 1}), session=session
            ).task
            created[session].add(task.taskId)
    for session in (0, 1, 2):
        listed: list[str] = []
        cursor: str | None = None
        while True:
            page = mcp.run(lambda s, c=cursor: s.experimental.list_tasks(cursor=c), session=session)
            listed += [t.taskId for t in page.tasks]
            cursor = page.nextCursor
            if cursor is None:
                break
        assert len(listed) == len(set(listed))
        assert set(listed) == created[session], session
    # The id is the capability: another session that holds it gets and cancels the task...
    some = next(iter(created[0]))
    assert mcp.run(lambda s: s.experimental.get_task(some), session=2).taskId == some
    assert mcp.run(lambda s: s.experimental.cancel_task(some), session=2).status == "cancelled"
    # ...but a cursor taken from one session's listing shows another session only its own tasks.
    first = mcp.run(lambda s: s.experimental.list_tasks(), session=0)
    assert first.nextCursor is not None
    elsewhere = mcp.run(lambda s: s.experimental.list_tasks(cursor=first.nextCursor), session=1)
    assert {t.taskId for t in elsewhere.tasks} <= created[1]
    print(
        f"\nsession listings: {len(created[0])} / {len(created[1])} / 0 tasks, each session sees "
        "exactly its own (paged)"
    )
