"""Two OS processes sharing one store: what one process does wakes a waiter in the other.

The child is a fresh Python interpreter (``sys.executable``) that gets the Redis URL, namespace
and task id from its environment, blocks until the parent says "go" (a Redis list), acts once,
and exits. The parent is already waiting by then, so the wake-up can only come across processes.
Timings are printed (``-s``) and only checked against a generous timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aioredis
from mcp.shared.experimental.tasks.message_queue import QueuedMessage
from mcp.shared.experimental.tasks.resolver import Resolver
from mcp.types import JSONRPCNotification, JSONRPCRequest, TaskMetadata

from mcp_tasks_redis.engine.events import Listener
from mcp_tasks_redis.mcp_v1.input_requests import input_request_id
from mcp_tasks_redis.mcp_v1.queue import RedisTaskMessageQueue
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GENEROUS = 15.0  # seconds; a wake-up normally takes milliseconds

CHILD = """
import asyncio, os
from mcp.shared.experimental.tasks.message_queue import QueuedMessage
from mcp.types import JSONRPCNotification
from mcp_tasks_redis.mcp_v1.queue import RedisTaskMessageQueue
from mcp_tasks_redis.mcp_v1.router import RedisResponseRouter
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

async def main() -> None:
    env = os.environ
    store = RedisTaskStore.from_url(env["REDIS_URL"], namespace=env["NAMESPACE"])
    queue = RedisTaskMessageQueue(store.engine)
    try:
        ready = store.engine.redis.pipeline(transaction=True)
        await ready.rpush(env["GO_KEY"] + ":ready", 1).pexpire(env["GO_KEY"] + ":ready", 60_000).execute()
        await store.engine.redis.blpop([env["GO_KEY"]], timeout=30)
        action, task_id = env["ACTION"], env["TASK_ID"]
        if action == "update":
            await store.update_task(task_id, status=env["STATUS"])
        elif action == "enqueue":
            note = JSONRPCNotification(jsonrpc="2.0", method="notifications/message")
            await queue.enqueue(task_id, QueuedMessage(type="notification", message=note))
        elif action == "reply":
            router = RedisResponseRouter(store.engine)
            reply = {"action": "accept", "content": {"pid": os.getpid()}}
            assert router.route_response(env["REQUEST_ID"], reply)
            await router.drain()
    finally:
        await store.aclose()

asyncio.run(main())
"""


@pytest.fixture
async def store(redis_url: str, namespace: str) -> AsyncIterator[RedisTaskStore]:
    store = RedisTaskStore.from_url(redis_url, namespace=namespace, recheck_ms=300)
    yield store
    await store.aclose()


Go = Callable[[], Awaitable[float]]


@contextlib.asynccontextmanager
async def child(redis: aioredis.Redis, redis_url: str, namespace: str, **env: str) -> AsyncGenerator[Go]:
    """Run the child script until it is ready; ``await go()`` tells it to act (returns when)."""
    go_key = f"{namespace}:test:go"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url, "NAMESPACE": namespace, "GO_KEY": go_key, **env},
        stderr=asyncio.subprocess.PIPE,
    )
    told: list[float] = []

    async def go() -> float:
        pipe: Any = redis.pipeline(transaction=True)
        await pipe.rpush(go_key, "go").pexpire(go_key, 60_000).execute()
        told.append(time.monotonic())
        return told[-1]

    try:
        # Interpreter start and imports take a while: wait until the child is connected and idle.
        ready = await cast(Any, redis).blpop([go_key + ":ready"], timeout=int(GENEROUS))
        assert ready, "the child did not start"
        yield go
    finally:
        if not told:
            await go()
        _, stderr = await asyncio.wait_for(process.communicate(), GENEROUS)
    assert process.returncode == 0, stderr.decode()


async def woke_within(waiter: asyncio.Task[Any], told: float, what: str) -> None:
    with anyio.fail_after(GENEROUS):
        await waiter
    print(f"{what}: woke {(time.monotonic() - told) * 1000:.1f} ms after the other process was told to act")


async def test_status_change_in_another_process_wakes_the_waiter(
    store: RedisTaskStore, redis: aioredis.Redis, redis_url: str, namespace: str
) -> None:
    task = await store.create_task(TaskMetadata(ttl=60_000))
    async with child(
        redis, redis_url, namespace, ACTION="update", TASK_ID=task.taskId, STATUS="input_required"
    ) as go:
        waiter = asyncio.create_task(store.wait_for_update(task.taskId))
        await asyncio.wait({waiter}, timeout=0.3)
        assert not waiter.done(), "woke although nothing changed"
        await woke_within(waiter, await go(), "wait_for_update over pub/sub")
    got = await store.get_task(task.taskId)
    assert got is not None
    assert got.status == "input_required"


async def test_bounded_poll_wakes_the_waiter_without_pubsub(
    store: RedisTaskStore,
    redis: aioredis.Redis,
    redis_url: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pub/sub may drop messages: with no event ever arriving, the poll still wakes the waiter."""

    @contextlib.contextmanager
    def deaf_listen(task_id: str, listener: Listener | None = None) -> Iterator[Listener]:
        yield listener or Listener(task_id)  # never registered: no event ever reaches it

    monkeypatch.setattr(store.engine.events, "listen", deaf_listen)
    task = await store.create_task(TaskMetadata(ttl=60_000))
    async with child(
        redis, redis_url, namespace, ACTION="update", TASK_ID=task.taskId, STATUS="completed"
    ) as go:
        waiter = asyncio.create_task(store.wait_for_update(task.taskId))
        await asyncio.wait({waiter}, timeout=0.5)
        assert not waiter.done()
        await woke_within(waiter, await go(), "wait_for_update by polling only")


async def test_message_queued_in_another_process_wakes_wait_for_message(
    store: RedisTaskStore, redis: aioredis.Redis, redis_url: str, namespace: str
) -> None:
    queue = RedisTaskMessageQueue(store.engine)
    task = await store.create_task(TaskMetadata(ttl=60_000))
    async with child(redis, redis_url, namespace, ACTION="enqueue", TASK_ID=task.taskId) as go:
        waiter = asyncio.create_task(queue.wait_for_message(task.taskId))
        await asyncio.wait({waiter}, timeout=0.3)
        assert not waiter.done()
        await woke_within(waiter, await go(), "wait_for_message")
    message = await queue.dequeue(task.taskId)
    assert message is not None
    assert isinstance(message.message, JSONRPCNotification)
    await queue.aclose()


async def test_reply_received_by_another_process_reaches_the_resolver(
    store: RedisTaskStore, redis: aioredis.Redis, redis_url: str, namespace: str
) -> None:
    """The SDK's Resolver is an in-process future; the reply crosses over the task's reply slot."""
    queue = RedisTaskMessageQueue(store.engine)
    task = await store.create_task(TaskMetadata(ttl=60_000))
    request_id = input_request_id(task.taskId, "42")
    resolver: Resolver[dict[str, Any]] = Resolver()
    request = JSONRPCRequest(
        jsonrpc="2.0", id=request_id, method="elicitation/create", params={"message": "?"}
    )
    await queue.enqueue(
        task.taskId,
        QueuedMessage(type="request", message=request, resolver=resolver, original_request_id=request_id),
    )
    async with child(
        redis, redis_url, namespace, ACTION="reply", TASK_ID=task.taskId, REQUEST_ID=request_id
    ) as go:
        waiter = asyncio.create_task(resolver.wait())
        await asyncio.wait({waiter}, timeout=0.3)
        assert not waiter.done()
        await woke_within(waiter, await go(), "resolver")
    reply = waiter.result()
    assert reply["action"] == "accept"
    assert reply["content"]["pid"] != os.getpid()
    await queue.aclose()
