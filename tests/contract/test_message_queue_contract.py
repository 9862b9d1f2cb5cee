"""The `TaskMessageQueue` contract, run against the SDK's in-memory queue and `RedisTaskMessageQueue`.

Every behaviour the SDK checks for `InMemoryTaskMessageQueue` is ported as one test run on both
queues (the in-memory ``cleanup`` helper is not part of the contract and is left out). Our queue
needs the task to exist (its inbox expires with the task), so each test asks `new_task` for an id.
Deliberate differences have their own ``test_difference_*`` tests at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aioredis
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.message_queue import (
    InMemoryTaskMessageQueue,
    QueuedMessage,
    TaskMessageQueue,
)
from mcp.shared.experimental.tasks.resolver import Resolver
from mcp.types import ErrorData, JSONRPCNotification, JSONRPCRequest, TaskMetadata

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.mcp_v1.input_requests import input_request_id
from mcp_tasks_redis.mcp_v1.queue import RedisTaskMessageQueue
from mcp_tasks_redis.mcp_v1.router import RedisResponseRouter
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore


@dataclass
class Env:
    queue: TaskMessageQueue
    new_task: Callable[[], Awaitable[str]]
    store: RedisTaskStore | None = None

    @property
    def is_redis(self) -> bool:
        return self.store is not None


@pytest.fixture(params=["in-memory", "redis"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str] | None:
    if request.param == "in-memory":
        return None
    return request.getfixturevalue("redis_url"), request.getfixturevalue("namespace")


@pytest.fixture
async def env(backend: tuple[str, str] | None) -> AsyncIterator[Env]:
    if backend is None:
        counter = iter(range(1, 1_000_000))

        async def new_memory_task() -> str:
            return f"task-{next(counter)}"

        yield Env(InMemoryTaskMessageQueue(), new_memory_task)
        return
    url, namespace = backend
    client: aioredis.Redis = cast(Any, aioredis.Redis).from_url(url)
    engine = TaskEngine(client, namespace=namespace)
    store = RedisTaskStore(engine)
    queue = RedisTaskMessageQueue(engine)

    async def new_redis_task() -> str:
        return (await store.create_task(TaskMetadata(ttl=60000))).taskId

    yield Env(queue, new_redis_task, store)
    await queue.aclose()
    await engine.close()
    await client.aclose()


def make_request(id: int | str = 1, method: str = "test/method") -> JSONRPCRequest:
    return JSONRPCRequest(jsonrpc="2.0", id=id, method=method, params={"x": [1, "two"], "_meta": {"k": "v"}})


def make_notification(method: str = "test/notify") -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method=method)


def method_of(message: QueuedMessage | None) -> str:
    assert message is not None
    return message.message.method


# -- enqueue / dequeue / peek ---------------------------------------------------------------


async def test_enqueue_and_dequeue(env: Env) -> None:
    task_id = await env.new_task()
    sent = make_request()
    await env.queue.enqueue(task_id, QueuedMessage(type="request", message=sent))
    result = await env.queue.dequeue(task_id)
    assert result is not None
    assert result.type == "request"
    assert result.message.method == "test/method"
    assert result.message == sent
    assert await env.queue.dequeue(task_id) is None


async def test_dequeue_empty_returns_none(env: Env) -> None:
    assert await env.queue.dequeue("nonexistent-task") is None
    assert await env.queue.dequeue(await env.new_task()) is None


async def test_fifo_ordering(env: Env) -> None:
    task_id = await env.new_task()
    for i, name in enumerate(["first", "second", "third"], start=1):
        await env.queue.enqueue(task_id, QueuedMessage(type="request", message=make_request(i, name)))
    assert [method_of(await env.queue.dequeue(task_id)) for _ in range(3)] == ["first", "second", "third"]


async def test_separate_queues_per_task(env: Env) -> None:
    one, two = await env.new_task(), await env.new_task()
    await env.queue.enqueue(one, QueuedMessage(type="request", message=make_request(1, "task1-msg")))
    await env.queue.enqueue(two, QueuedMessage(type="request", message=make_request(2, "task2-msg")))
    assert method_of(await env.queue.dequeue(one)) == "task1-msg"
    assert method_of(await env.queue.dequeue(two)) == "task2-msg"


async def test_peek_does_not_remove(env: Env) -> None:
    task_id = await env.new_task()
    await env.queue.enqueue(task_id, QueuedMessage(type="request", message=make_request()))
    peeked = await env.queue.peek(task_id)
    again = await env.queue.peek(task_id)
    dequeued = await env.queue.dequeue(task_id)
    assert peeked is not None
    assert again is not None
    assert dequeued is not None
    assert isinstance(peeked.message, JSONRPCRequest)
    assert isinstance(dequeued.message, JSONRPCRequest)
    assert peeked.message.id == again.message.id == dequeued.message.id  # type: ignore[union-attr]
    assert await env.queue.peek(task_id) is None


async def test_is_empty(env: Env) -> None:
    task_id = await env.new_task()
    assert await env.queue.is_empty(task_id) is True
    await env.queue.enqueue(task_id, QueuedMessage(type="notification", message=make_notification()))
    assert await env.queue.is_empty(task_id) is False
    await env.queue.dequeue(task_id)
    assert await env.queue.is_empty(task_id) is True


async def test_clear_returns_all_messages(env: Env) -> None:
    task_id = await env.new_task()
    for i in (1, 2, 3):
        await env.queue.enqueue(task_id, QueuedMessage(type="request", message=make_request(i)))
    messages = await env.queue.clear(task_id)
    assert [m.message.id for m in messages] == [1, 2, 3]  # type: ignore[union-attr]
    assert await env.queue.is_empty(task_id) is True


async def test_clear_empty_queue(env: Env) -> None:
    assert await env.queue.clear("nonexistent") == []


async def test_notification_messages(env: Env) -> None:
    task_id = await env.new_task()
    await env.queue.enqueue(
        task_id, QueuedMessage(type="notification", message=make_notification("log/message"))
    )
    result = await env.queue.dequeue(task_id)
    assert result is not None
    assert result.type == "notification"
    assert isinstance(result.message, JSONRPCNotification)
    assert result.message.method == "log/message"


async def test_message_timestamp_is_kept(env: Env) -> None:
    task_id = await env.new_task()
    sent = QueuedMessage(type="request", message=make_request())
    await env.queue.enqueue(task_id, sent)
    received = await env.queue.dequeue(task_id)
    assert received is not None
    assert received.timestamp == sent.timestamp


async def test_message_with_resolver_keeps_original_request_id(env: Env) -> None:
    task_id = await env.new_task()
    resolver: Resolver[dict[str, Any]] = Resolver()
    await env.queue.enqueue(
        task_id,
        QueuedMessage(type="request", message=make_request(), resolver=resolver, original_request_id=42),
    )
    result = await env.queue.dequeue(task_id)
    assert result is not None
    assert result.original_request_id == 42
    assert result.message.method == "test/method"


# -- wait / notify --------------------------------------------------------------------------


async def test_wait_for_message_returns_immediately_if_message_exists(env: Env) -> None:
    task_id = await env.new_task()
    await env.queue.enqueue(task_id, QueuedMessage(type="request", message=make_request()))
    with anyio.fail_after(1):
        await env.queue.wait_for_message(task_id)


async def test_wait_for_message_blocks_until_message(env: Env) -> None:
    task_id = await env.new_task()
    waiting = asyncio.create_task(env.queue.wait_for_message(task_id))
    await asyncio.wait({waiting}, timeout=0.1)
    assert not waiting.done(), "returned although the queue is empty"
    await env.queue.enqueue(task_id, QueuedMessage(type="request", message=make_request()))
    with anyio.fail_after(5):
        await waiting


async def test_notify_message_available_wakes_waiter(env: Env) -> None:
    task_id = await env.new_task()
    waiting = asyncio.create_task(env.queue.wait_for_message(task_id))
    # A notification sent before the waiter registered is lost on both queues: repeat it.
    with anyio.fail_after(5):
        while not waiting.done():
            await env.queue.notify_message_available(task_id)
            await asyncio.wait({waiting}, timeout=0.05)
    await waiting


# -- deliberate differences -----------------------------------------------------------------


async def test_enqueue_accepts_any_task_id(env: Env) -> None:
    """As the SDK's contract says, a queue takes messages for any task id, also one its store
    does not hold (queue and store are separate ABCs that a server may pair differently)."""
    await env.queue.enqueue("no-such-task", QueuedMessage(type="request", message=make_request()))
    assert await env.queue.is_empty("no-such-task") is False
    received = await env.queue.dequeue("no-such-task")
    assert received is not None
    assert received.message.method == "test/method"
    assert await env.queue.is_empty("no-such-task") is True


async def test_difference_resolver_stays_in_its_process(env: Env) -> None:
    """In-memory: the dequeued message carries the caller's Resolver. Ours: the message is JSON
    in Redis, so it comes back without one; the request waits in the task's input slot (the
    task shows input_required) and the reply reaches the resolver through Redis instead."""
    task_id = await env.new_task()
    resolver: Resolver[dict[str, Any]] = Resolver()
    request_id = input_request_id(task_id, "1")
    queued = QueuedMessage(
        type="request", message=make_request(request_id), resolver=resolver, original_request_id=request_id
    )
    await env.queue.enqueue(task_id, queued)
    received = await env.queue.dequeue(task_id)
    assert received is not None
    if not env.is_redis:
        assert received.resolver is resolver
        return
    assert received.resolver is None
    assert env.store is not None
    task = await env.store.get_task(task_id)
    assert task is not None
    assert task.status == "input_required"
    record = await env.store.engine.tasks.get(task_id)
    assert record is not None
    assert record.input_requests["1"]["method"] == "test/method"


async def test_difference_reply_from_another_connection_reaches_the_resolver(
    env: Env, redis_url: str
) -> None:
    """Ours only: the reply is routed by another process's router (here: another connection
    and engine) through the task's reply slot, to the resolver of the process that queued."""
    if not env.is_redis:
        pytest.skip("the in-memory queue cannot cross processes")
    assert env.store is not None
    other = TaskEngine(
        cast(Any, aioredis.Redis).from_url(redis_url),
        namespace=env.store.engine.keys.namespace,
        owns_client=True,
    )
    router = RedisResponseRouter(other)
    try:
        for reply_kind in ("result", "error"):
            task_id = await env.new_task()
            resolver: Resolver[dict[str, Any]] = Resolver()
            request_id = input_request_id(task_id, "7")
            await env.queue.enqueue(
                task_id,
                QueuedMessage(
                    type="request",
                    message=make_request(request_id),
                    resolver=resolver,
                    original_request_id=request_id,
                ),
            )
            if reply_kind == "result":
                assert router.route_response(request_id, {"action": "accept", "content": {"n": 1}})
                with anyio.fail_after(5):
                    assert await resolver.wait() == {"action": "accept", "content": {"n": 1}}
            else:
                assert router.route_error(request_id, ErrorData(code=-1, message="declined"))
                with anyio.fail_after(5), pytest.raises(McpError, match="declined"):
                    await resolver.wait()
        assert not router.route_response(12, {}), "not a task input id: left to other routers"
        assert not router.route_response("task-", {})
        await router.drain()
    finally:
        await other.close()
