"""Cancel racing completion on the same tasks, from separate connections and separate processes.

For every task exactly one side wins and the task ends in that side's status; the loser gets
TaskIsTerminal (an InvalidTransition); the status never changes afterwards; and a cancelled task
exposes no result, whatever the interleaving (DESIGN decision 1: a cancel that lands first wins).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from mcp.shared.experimental.tasks.context import TaskContext
from mcp.types import CallToolResult, TaskMetadata, TextContent

from mcp_tasks_redis.engine.errors import InvalidTransition, TaskIsTerminal
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

pytestmark = pytest.mark.slow

N = 300
WAVE = 20
ROOT = Path(__file__).resolve().parents[2]
RESULT = CallToolResult(content=[TextContent(type="text", text="finished")])

Outcome = bool | BaseException  # True: this side's change was applied

CHILD = """
import asyncio, json, os, sys
from mcp.types import CallToolResult, TextContent
from mcp_tasks_redis.engine.errors import InvalidTransition
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

async def main() -> None:
    env = os.environ
    store = RedisTaskStore.from_url(env["REDIS_URL"], namespace=env["NAMESPACE"])
    ids = json.loads(sys.stdin.readline())
    result = CallToolResult(content=[TextContent(type="text", text="finished")])

    async def complete(task_id: str) -> bool:
        try:
            await store.complete(task_id, result)
            return True
        except InvalidTransition:
            return False

    try:
        ready = store.engine.redis.pipeline(transaction=True)
        await ready.rpush(env["GO_KEY"] + ":ready", 1).pexpire(env["GO_KEY"] + ":ready", 60_000).execute()
        await store.engine.redis.blpop([env["GO_KEY"]], timeout=30)
        # Reverse order, one at a time: the parent cancels forward, so the two meet in the middle.
        won = {i: await complete(i) for i in reversed(ids)}
        print(json.dumps(won))
    finally:
        await store.aclose()

asyncio.run(main())
"""


@pytest.fixture
async def stores(redis_url: str, namespace: str) -> AsyncIterator[tuple[RedisTaskStore, RedisTaskStore]]:
    """Two stores on separate connections (and event subscriptions), as two replicas would be."""
    a = RedisTaskStore.from_url(redis_url, namespace=namespace)
    b = RedisTaskStore.from_url(redis_url, namespace=namespace)
    yield a, b
    await a.aclose()
    await b.aclose()


def tally(statuses: dict[str, str]) -> dict[str, int]:
    counts = {"cancelled": 0, "completed": 0}
    for status in statuses.values():
        counts[status] += 1
    return counts


async def attempt(change: Awaitable[object]) -> Outcome:
    try:
        await change
    except BaseException as e:  # kept for the assertions below
        return e
    return True


async def check_final(store: RedisTaskStore, task_id: str, cancel: Outcome, complete: Outcome) -> str:
    """Exactly one winner, the loser refused as terminal; returns the final status."""
    outcomes = (cancel, complete)
    assert sum(o is True for o in outcomes) == 1, f"{task_id}: {outcomes}"
    loser = next(o for o in outcomes if o is not True)
    assert isinstance(loser, TaskIsTerminal), repr(loser)
    assert isinstance(loser, InvalidTransition)
    task = await store.get_task(task_id)
    assert task is not None
    assert task.status == ("cancelled" if cancel is True else "completed")
    result = await store.get_result(task_id)
    assert (result is None) if task.status == "cancelled" else (result == RESULT)
    return task.status


async def assert_frozen(store: RedisTaskStore, statuses: dict[str, str]) -> None:
    """No later change of any kind lands on a finished task."""
    for task_id, status in statuses.items():
        for change in (
            store.cancel(task_id),
            store.complete(task_id, RESULT),
            store.fail(task_id, "late"),
            store.update_task(task_id, status="working"),
            store.update_task(task_id, status_message="late"),
        ):
            with pytest.raises(TaskIsTerminal):
                await change
        task = await store.get_task(task_id)
        assert task is not None
        assert task.status == status


async def create_many(store: RedisTaskStore) -> list[str]:
    return [(await store.create_task(TaskMetadata(ttl=120_000))).taskId for _ in range(N)]


async def race(
    ids: list[str], cancel: Callable[[str], Awaitable[object]], complete: Callable[[str], Awaitable[object]]
) -> list[tuple[Outcome, Outcome]]:
    """Cancel and complete every task concurrently, in waves of concurrent pairs.

    Within a pair the side sent first alternates, so that both interleavings occur; waves keep
    the two connection pools small and warm, so that sending order, not connection setup, decides.
    """
    outcomes: list[tuple[Outcome, Outcome]] = []
    for start in range(0, len(ids), WAVE):
        coros: list[Awaitable[Outcome]] = []
        for i, task_id in enumerate(ids[start : start + WAVE]):
            pair = [attempt(cancel(task_id)), attempt(complete(task_id))]
            coros += pair if i % 2 else pair[::-1]
        flat = await asyncio.gather(*coros)
        outcomes += [
            (flat[2 * i], flat[2 * i + 1]) if i % 2 else (flat[2 * i + 1], flat[2 * i])
            for i in range(len(flat) // 2)
        ]
    return outcomes


async def test_cancel_vs_atomic_complete(stores: tuple[RedisTaskStore, RedisTaskStore]) -> None:
    a, b = stores
    ids = await create_many(a)
    outcomes = await race(ids, a.cancel, lambda task_id: b.complete(task_id, RESULT))
    statuses = {i: await check_final(a, i, c, d) for i, (c, d) in zip(ids, outcomes, strict=True)}
    counts = tally(statuses)
    print(f"cancel vs complete: {counts}")
    assert counts["cancelled"] > 0, "the race never went both ways"
    assert counts["completed"] > 0, "the race never went both ways"
    await assert_frozen(b, statuses)


async def test_cancel_vs_sdk_task_context_complete(stores: tuple[RedisTaskStore, RedisTaskStore]) -> None:
    """The SDK's TaskContext.complete is two calls (store_result, then completed); a cancel may
    land before, between or after them, and still exactly one outcome is visible."""
    a, b = stores
    ids = await create_many(a)

    contexts: dict[str, TaskContext] = {}
    for task_id in ids:
        task = await b.get_task(task_id)
        assert task is not None
        contexts[task_id] = TaskContext(task, b)

    async def sdk_complete(task_id: str) -> None:
        await contexts[task_id].complete(RESULT)

    outcomes = await race(ids, a.cancel, sdk_complete)
    statuses = {i: await check_final(a, i, c, d) for i, (c, d) in zip(ids, outcomes, strict=True)}
    print(f"cancel vs TaskContext.complete: {tally(statuses)}")
    await assert_frozen(a, statuses)


async def test_cancel_in_this_process_vs_complete_in_another(
    stores: tuple[RedisTaskStore, RedisTaskStore], redis: aioredis.Redis, redis_url: str, namespace: str
) -> None:
    a, _ = stores
    ids = await create_many(a)
    go_key = f"{namespace}:test:go"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url, "NAMESPACE": namespace, "GO_KEY": go_key},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write((json.dumps(ids) + "\n").encode())
    await process.stdin.drain()
    assert await cast(Any, redis).blpop([go_key + ":ready"], timeout=30), "the child did not start"
    pipe: Any = redis.pipeline(transaction=True)
    await pipe.rpush(go_key, "go").pexpire(go_key, 60_000).execute()
    cancels = [await attempt(a.cancel(i)) for i in ids]
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    completes: dict[str, bool] = json.loads(stdout)
    statuses = {
        i: await check_final(a, i, c, True if completes[i] else TaskIsTerminal(i, "cancelled", "completed"))
        for i, c in zip(ids, cancels, strict=True)
    }
    counts = tally(statuses)
    print(f"cancel here vs complete in a child: {counts}")
    assert counts["cancelled"] > 0, "the processes never met: the child started too late"
    assert counts["completed"] > 0, "the processes never met: the child started too late"
    await assert_frozen(a, statuses)
