"""The `TaskStore` contract, run against the SDK's `InMemoryTaskStore` and our `RedisTaskStore`.

Every behaviour the SDK checks for its in-memory store is ported here as one test run on both
stores: the in-memory run proves the test itself is right. Where our store deliberately differs,
the difference has its own test at the end of the file (``test_difference_*``), run on both
stores with each one's expected behaviour spelled out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aioredis
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.helpers import cancel_task
from mcp.shared.experimental.tasks.in_memory_task_store import InMemoryTaskStore
from mcp.shared.experimental.tasks.store import TaskStore
from mcp.types import INVALID_PARAMS, CallToolResult, TaskMetadata, TextContent

from mcp_tasks_redis.engine.errors import TaskIsTerminal
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

MakeStore = Callable[..., Awaitable[TaskStore]]
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture(params=["in-memory", "redis"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str] | None:
    """None for the in-memory store (which needs no Redis), else (redis_url, namespace)."""
    if request.param == "in-memory":
        return None
    return request.getfixturevalue("redis_url"), request.getfixturevalue("namespace")


@pytest.fixture
async def make_store(backend: tuple[str, str] | None) -> AsyncIterator[MakeStore]:
    """A factory of empty stores of one kind; ``page_size`` as in the SDK's in-memory store."""
    made: list[RedisTaskStore] = []
    clients: list[aioredis.Redis] = []

    async def make(page_size: int = 10) -> TaskStore:
        if backend is None:
            return InMemoryTaskStore(page_size=page_size)
        url, namespace = backend
        client: aioredis.Redis = cast(Any, aioredis.Redis).from_url(url)
        clients.append(client)
        # Short TTLs allowed and no grace period, so that the expiry tests run in milliseconds.
        limits = TaskLimits(list_page_size=page_size, min_ttl_ms=1, grace_ms=0)
        store = RedisTaskStore(client, namespace=namespace, limits=limits)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def store(make_store: MakeStore) -> TaskStore:
    return await make_store()


def is_redis(store: TaskStore) -> bool:
    return isinstance(store, RedisTaskStore)


async def eventually_gone(store: TaskStore, task_id: str, within: float = 5.0) -> None:
    # Expiry has no event to await: re-read until the task is gone.
    with anyio.fail_after(within):
        while await store.get_task(task_id) is not None:  # noqa: ASYNC110 (expiry sends no event)
            await anyio.sleep(0.02)


# -- create / get ---------------------------------------------------------------------------


async def test_create_and_get(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    assert task.taskId
    assert task.status == "working"
    assert task.ttl == 60000
    assert task.createdAt == task.lastUpdatedAt

    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.taskId == task.taskId
    assert retrieved.status == "working"
    assert retrieved.createdAt == task.createdAt


async def test_create_with_custom_id(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000), task_id="my-custom-id")
    assert task.taskId == "my-custom-id"
    assert task.status == "working"
    retrieved = await store.get_task("my-custom-id")
    assert retrieved is not None
    assert retrieved.taskId == "my-custom-id"


async def test_generated_ids_are_unique(store: TaskStore) -> None:
    ids = {(await store.create_task(TaskMetadata(ttl=60000))).taskId for _ in range(20)}
    assert len(ids) == 20


async def test_create_duplicate_id_raises(store: TaskStore) -> None:
    await store.create_task(metadata=TaskMetadata(ttl=60000), task_id="duplicate")
    with pytest.raises(ValueError, match="already exists"):
        await store.create_task(metadata=TaskMetadata(ttl=60000), task_id="duplicate")


async def test_get_nonexistent_returns_none(store: TaskStore) -> None:
    assert await store.get_task("nonexistent") is None


# -- update ---------------------------------------------------------------------------------


async def test_update_status(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    updated = await store.update_task(task.taskId, status="completed", status_message="All done!")
    assert updated.status == "completed"
    assert updated.statusMessage == "All done!"
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.status == "completed"
    assert retrieved.statusMessage == "All done!"


async def test_update_message_only_keeps_status(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    updated = await store.update_task(task.taskId, status_message="halfway")
    assert updated.status == "working"
    assert updated.statusMessage == "halfway"
    assert updated.lastUpdatedAt >= task.lastUpdatedAt


async def test_update_working_and_input_required_back_and_forth(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    assert (await store.update_task(task.taskId, status="input_required")).status == "input_required"
    assert (await store.update_task(task.taskId, status="working")).status == "working"


async def test_update_nonexistent_raises(store: TaskStore) -> None:
    with pytest.raises(ValueError, match="not found"):
        await store.update_task("nonexistent", status="completed")


@pytest.mark.parametrize("terminal", TERMINAL)
async def test_terminal_status_transition_rejected(store: TaskStore, terminal: str) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    await store.update_task(task.taskId, status=terminal)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Cannot transition from terminal status"):
        await store.update_task(task.taskId, status="working")
    other = "failed" if terminal != "failed" else "completed"
    with pytest.raises(ValueError, match="Cannot transition from terminal status"):
        await store.update_task(task.taskId, status=other)  # type: ignore[arg-type]
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.status == terminal


# -- results --------------------------------------------------------------------------------


async def test_store_and_get_result(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    result = CallToolResult(content=[TextContent(type="text", text="Result data")])
    await store.store_result(task.taskId, result)
    assert await store.get_result(task.taskId) == result


async def test_get_result_nonexistent_returns_none(store: TaskStore) -> None:
    assert await store.get_result("nonexistent") is None


async def test_get_result_no_result_returns_none(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    assert await store.get_result(task.taskId) is None


async def test_store_result_nonexistent_raises(store: TaskStore) -> None:
    result = CallToolResult(content=[TextContent(type="text", text="Result")])
    with pytest.raises(ValueError, match="not found"):
        await store.store_result("nonexistent-id", result)


# -- list -----------------------------------------------------------------------------------


async def test_list_tasks(store: TaskStore) -> None:
    for _ in range(3):
        await store.create_task(metadata=TaskMetadata(ttl=60000))
    tasks, next_cursor = await store.list_tasks()
    assert len(tasks) == 3
    assert next_cursor is None


async def test_list_tasks_pagination(make_store: MakeStore) -> None:
    store = await make_store(page_size=2)
    created = {(await store.create_task(metadata=TaskMetadata(ttl=60000))).taskId for _ in range(5)}

    tasks1, cursor = await store.list_tasks()
    assert len(tasks1) == 2
    assert cursor is not None
    tasks2, cursor = await store.list_tasks(cursor=cursor)
    assert len(tasks2) == 2
    assert cursor is not None
    tasks3, cursor = await store.list_tasks(cursor=cursor)
    assert len(tasks3) == 1
    assert cursor is None
    # Every task exactly once across the pages.
    listed = [t.taskId for t in tasks1 + tasks2 + tasks3]
    assert sorted(listed) == sorted(created)


async def test_list_tasks_invalid_cursor(store: TaskStore) -> None:
    await store.create_task(metadata=TaskMetadata(ttl=60000))
    with pytest.raises(ValueError, match="Invalid cursor"):
        await store.list_tasks(cursor="invalid-cursor")


# -- delete ---------------------------------------------------------------------------------


async def test_delete_task(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    assert await store.delete_task(task.taskId) is True
    assert await store.get_task(task.taskId) is None
    assert await store.delete_task(task.taskId) is False
    tasks, _ = await store.list_tasks()
    assert task.taskId not in {t.taskId for t in tasks}


# -- expiry ---------------------------------------------------------------------------------


async def test_task_expiration_cleanup(store: TaskStore) -> None:
    """A task past its TTL is gone from get and from list."""
    keep = await store.create_task(metadata=TaskMetadata(ttl=60000))
    task = await store.create_task(metadata=TaskMetadata(ttl=50))
    await eventually_gone(store, task.taskId)
    tasks, _ = await store.list_tasks()
    assert [t.taskId for t in tasks] == [keep.taskId]


async def test_difference_ttl_counts_from_creation(store: TaskStore) -> None:
    """In-memory: reaching a terminal status restarts the TTL. Ours: the TTL counts from creation,
    as the 2025-11-25 spec defines it, and a task's expiry is written once (a task that finishes
    past its TTL keeps its outcome for the grace period instead)."""
    task = await store.create_task(metadata=TaskMetadata(ttl=1000))
    if not is_redis(store):
        await anyio.sleep(0.6)
        await store.update_task(task.taskId, status="completed")
        await anyio.sleep(0.6)  # 1.2 s after creation, 0.6 s after completion
        assert await store.get_task(task.taskId) is not None
        await eventually_gone(store, task.taskId)
        return
    assert isinstance(store, RedisTaskStore)
    key = store.engine.keys.task(task.taskId)
    before = await store.engine.redis.pttl(key)
    await store.update_task(task.taskId, status="completed")
    after = await store.engine.redis.pttl(key)
    assert 0 < after <= before <= 1000


# -- wait / notify --------------------------------------------------------------------------


async def test_wait_for_update_nonexistent_raises(store: TaskStore) -> None:
    with pytest.raises(ValueError, match="not found"):
        await store.wait_for_update("nonexistent-task-id")


async def test_wait_for_update_wakes_on_status_change(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    waiting = asyncio.create_task(store.wait_for_update(task.taskId))
    await asyncio.wait({waiting}, timeout=0.1)
    assert not waiting.done(), "returned although nothing changed"
    # Whenever the waiter took its baseline, a later toggle differs from it.
    statuses = ["input_required", "working"]
    with anyio.fail_after(5):
        while not waiting.done():
            await store.update_task(task.taskId, status=statuses[0])  # type: ignore[arg-type]
            statuses.reverse()
            await asyncio.wait({waiting}, timeout=0.05)
    await waiting


async def test_wait_for_update_ignores_message_only_updates(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    waiting = asyncio.create_task(store.wait_for_update(task.taskId))
    for i in range(3):
        await store.update_task(task.taskId, status_message=f"step {i}")
        await asyncio.wait({waiting}, timeout=0.05)
    assert not waiting.done()
    waiting.cancel()


async def test_notify_update_wakes_waiter(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    waiting = asyncio.create_task(store.wait_for_update(task.taskId))
    # Neither store keeps a notification sent before the waiter registered: notify until it wakes.
    with anyio.fail_after(5):
        while not waiting.done():
            await store.notify_update(task.taskId)
            await asyncio.wait({waiting}, timeout=0.05)
    await waiting


# -- the SDK's cancel_task helper on the store ----------------------------------------------


@pytest.mark.parametrize("before", ["working", "input_required"])
async def test_cancel_task_succeeds_for_unfinished_task(store: TaskStore, before: str) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    if before != "working":
        await store.update_task(task.taskId, status="input_required")
    result = await cancel_task(store, task.taskId)
    assert result.taskId == task.taskId
    assert result.status == "cancelled"
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.status == "cancelled"


async def test_cancel_task_rejects_nonexistent_task(store: TaskStore) -> None:
    with pytest.raises(McpError) as info:
        await cancel_task(store, "nonexistent-task-id")
    assert info.value.error.code == INVALID_PARAMS
    assert "not found" in info.value.error.message


@pytest.mark.parametrize("terminal", TERMINAL)
async def test_cancel_task_rejects_terminal_task(store: TaskStore, terminal: str) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    await store.update_task(task.taskId, status=terminal)  # type: ignore[arg-type]
    with pytest.raises(McpError) as info:
        await cancel_task(store, task.taskId)
    assert info.value.error.code == INVALID_PARAMS
    assert f"terminal state '{terminal}'" in info.value.error.message


# -- deliberate differences -----------------------------------------------------------------


async def test_difference_terminal_task_is_fully_immutable(store: TaskStore) -> None:
    """In-memory: the same terminal status and a new message are accepted on a finished task.
    Ours: any change to a finished task raises TaskIsTerminal (its outcome is final)."""
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    await store.update_task(task.taskId, status="completed", status_message="done")
    if not is_redis(store):
        assert (await store.update_task(task.taskId, status="completed")).status == "completed"
        assert (await store.update_task(task.taskId, status_message="later")).statusMessage == "later"
        return
    with pytest.raises(TaskIsTerminal):
        await store.update_task(task.taskId, status="completed")
    with pytest.raises(TaskIsTerminal):
        await store.update_task(task.taskId, status_message="later")
    with pytest.raises(TaskIsTerminal):
        await store.store_result(task.taskId, CallToolResult(content=[]))
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.statusMessage == "done"
    assert await store.get_result(task.taskId) is None


async def test_difference_null_ttl_is_clamped_to_the_default(store: TaskStore) -> None:
    """In-memory: ttl None means the task never expires. Ours: every task expires, so None
    means the configured default TTL, and that is the ttl the task reports."""
    task = await store.create_task(metadata=TaskMetadata(ttl=None))
    expected = TaskLimits().default_ttl_ms if is_redis(store) else None
    assert task.ttl == expected
    retrieved = await store.get_task(task.taskId)
    assert retrieved is not None
    assert retrieved.ttl == expected


async def test_difference_cancelled_task_exposes_no_result(store: TaskStore) -> None:
    """In-memory: a result stored before the cancel stays readable. Ours: cancelled wins and
    nothing of the abandoned outcome is exposed."""
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    result = CallToolResult(content=[TextContent(type="text", text="partial")])
    await store.store_result(task.taskId, result)
    await cancel_task(store, task.taskId)
    expected = None if is_redis(store) else result
    assert await store.get_result(task.taskId) == expected


async def test_difference_invalid_task_ids(store: TaskStore) -> None:
    """In-memory: any string is an id. Ours: ids travel in key names, so they are validated."""
    bad = "has space/and\nnewline"
    if not is_redis(store):
        assert (await store.create_task(TaskMetadata(ttl=60000), task_id=bad)).taskId == bad
        return
    with pytest.raises(ValueError, match="Invalid task id"):
        await store.create_task(TaskMetadata(ttl=60000), task_id=bad)
    assert await store.get_task(bad) is None


def _sdk_bug(reason: str) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., Awaitable[None]]]:
    """Parametrize over the store fixture, expecting the in-memory run to fail (SDK 1.x bug)."""
    return pytest.mark.parametrize(
        "backend",
        [pytest.param("in-memory", marks=pytest.mark.xfail(reason=reason, strict=True)), "redis"],
        indirect=True,
    )


@_sdk_bug("mcp 1.x InMemoryTaskStore keeps one event per task: only the last waiter wakes")
async def test_difference_concurrent_waiters_all_wake(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    waiters = [asyncio.create_task(store.wait_for_update(task.taskId)) for _ in range(3)]
    await asyncio.sleep(0.05)
    await store.update_task(task.taskId, status="completed")
    done, _ = await asyncio.wait(waiters, timeout=2)
    for waiter in waiters:
        waiter.cancel()
    assert len(done) == 3


@_sdk_bug("mcp 1.x InMemoryTaskStore blocks forever when the change happened before the wait")
async def test_difference_wait_on_finished_task_returns_at_once(store: TaskStore) -> None:
    task = await store.create_task(metadata=TaskMetadata(ttl=60000))
    await store.update_task(task.taskId, status="completed")
    with anyio.fail_after(1):
        await store.wait_for_update(task.taskId)
