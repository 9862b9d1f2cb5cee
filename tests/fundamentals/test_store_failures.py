"""RedisTaskStore when things go wrong: Redis unreachable (a clear error naming the URL, and
service resumes when Redis is back, without a restart) and results that cannot be stored as JSON
(refused before anything is written).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aioredis
from mcp.shared.experimental.tasks.message_queue import QueuedMessage
from mcp.types import CallToolResult, JSONRPCNotification, Result, TaskMetadata, TextContent

from mcp_tasks_redis.engine.errors import NotSerializable, RedisUnavailable
from mcp_tasks_redis.mcp_v1.queue import RedisTaskMessageQueue
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

META = TaskMetadata(ttl=60_000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayRedis:
    """A redis-server of this test alone, on a fixed port, that can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:  # ready once it accepts connections; there is nothing else to wait on
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    server = ThrowawayRedis(free_port())
    server.start()
    yield server
    server.stop()


async def test_unreachable_redis_is_a_clear_error_naming_the_url() -> None:
    port = free_port()  # nothing listens there
    store = RedisTaskStore.from_url(f"redis://127.0.0.1:{port}/0", namespace="unreachable")
    try:
        calls = [
            store.create_task(META),
            store.get_task("abc"),
            store.update_task("abc", status="completed"),
            store.list_tasks(),
            store.wait_for_update("abc"),
            store.notify_update("abc"),
        ]
        for call in calls:
            with pytest.raises(
                RedisUnavailable, match=rf"Redis at redis://127\.0\.0\.1:{port}/0 is unreachable"
            ):
                await call
    finally:
        await store.aclose()
    assert issubclass(RedisUnavailable, ConnectionError)


async def test_unreachable_redis_is_a_clear_error_for_the_queue_too() -> None:
    port = free_port()
    queue = RedisTaskMessageQueue.from_url(f"redis://127.0.0.1:{port}/0", namespace="unreachable")
    note = QueuedMessage(type="notification", message=JSONRPCNotification(jsonrpc="2.0", method="n"))
    try:
        calls = [
            queue.enqueue("abc", note),
            queue.dequeue("abc"),
            queue.peek("abc"),
            queue.is_empty("abc"),
            queue.clear("abc"),
            queue.wait_for_message("abc"),
            queue.notify_message_available("abc"),
            queue.engine.tasks.answer("abc", {"k": {"result": {}}}),
        ]
        for call in calls:
            with pytest.raises(RedisUnavailable, match=str(port)):
                await call
    finally:
        await queue.aclose()


async def test_store_works_again_once_redis_is_back(throwaway_redis: ThrowawayRedis) -> None:
    store = RedisTaskStore.from_url(f"redis://127.0.0.1:{throwaway_redis.port}/0", namespace="comeback")
    try:
        task = await store.create_task(META)
        throwaway_redis.stop()
        with pytest.raises(RedisUnavailable, match=str(throwaway_redis.port)):
            await store.get_task(task.taskId)
        throwaway_redis.start()  # an empty Redis: the old task is gone (no persistence), service is not
        # The same store object, no reconnect call: the client reconnects by itself.
        again = await store.create_task(META)
        got = await store.get_task(again.taskId)
        assert got is not None
        assert got.status == "working"

        # Waiters recover too: the event subscription reconnects and pub/sub wakes them again.
        waiting = anyio.Event()

        async def wait() -> None:
            await store.wait_for_update(again.taskId)
            waiting.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await store.update_task(again.taskId, status="completed")
            with anyio.fail_after(10):
                await waiting.wait()
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    "bad",
    [
        Result.model_validate({"value": object()}),
        Result.model_validate({"value": b"\xff"}),
        CallToolResult(content=[TextContent(type="text", text="x")], structuredContent={"f": print}),
    ],
    ids=["object", "undecodable-bytes", "function"],
)
async def test_result_that_is_not_json_is_refused_and_nothing_written(
    redis: aioredis.Redis, namespace: str, bad: Result
) -> None:
    store = RedisTaskStore(redis, namespace=namespace)
    task = await store.create_task(META)
    record_key = store.engine.keys.task(task.taskId)
    before: dict[bytes, bytes] = await cast(Any, redis).hgetall(record_key)
    with pytest.raises(NotSerializable, match="not JSON-serializable"):
        await store.store_result(task.taskId, bad)
    with pytest.raises(NotSerializable):
        await store.complete(task.taskId, bad)
    with pytest.raises(NotSerializable):
        await store.fail(task.taskId, "failed", result=bad)
    assert await cast(Any, redis).hgetall(record_key) == before
    assert await store.get_result(task.taskId) is None


async def test_nan_is_stored_as_null_like_on_the_wire(redis: aioredis.Redis, namespace: str) -> None:
    store = RedisTaskStore(redis, namespace=namespace)
    task = await store.create_task(META)
    await store.complete(task.taskId, CallToolResult(content=[], structuredContent={"n": float("nan")}))
    result = await store.get_result(task.taskId)
    assert isinstance(result, CallToolResult)
    assert result.structuredContent == {"n": None}


async def test_arguments_that_are_not_json_create_nothing(redis: aioredis.Redis, namespace: str) -> None:
    store = RedisTaskStore(redis, namespace=namespace)
    with pytest.raises(NotSerializable, match="arguments"):
        await store.create_task(META, task_id="t1", tool="echo", arguments={"when": object()})
    assert await store.get_task("t1") is None
    leftovers: list[bytes] = [k async for k in cast(Any, redis).scan_iter(match=f"{namespace}:*")]
    assert leftovers == []
