"""Drop-in compatibility: the `mcp` SDK's own task helpers and server, unchanged, on our store.

The SDK's in-process `run_task` path is used on purpose here: these tests prove that an existing
server only swaps `enable_tasks(store=..., queue=...)` (plus, for replies to elicitation across
processes, `install_response_router`), not that run_task is fit for distribution (it is not).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import anyio
import pytest
import redis.asyncio as aioredis
from mcp.client.session import ClientSession
from mcp.server.experimental.task_context import ServerTaskContext
from mcp.server.lowlevel import Server
from mcp.shared.context import RequestContext
from mcp.shared.exceptions import McpError
from mcp.shared.experimental.tasks.context import TaskContext
from mcp.shared.experimental.tasks.helpers import cancel_task, task_execution
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    CreateTaskResult,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    TaskMetadata,
    TextContent,
    Tool,
    ToolExecution,
)

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.mcp_v1.queue import RedisTaskMessageQueue
from mcp_tasks_redis.mcp_v1.router import RedisTaskResultHandler, install_response_router
from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

# The SDK marks its whole tasks API deprecated in 1.x; these tests exercise it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# pyright: reportDeprecated=false


@pytest.fixture
async def engine(redis_url: str, namespace: str) -> AsyncIterator[TaskEngine]:
    client: aioredis.Redis = cast(Any, aioredis.Redis).from_url(redis_url)
    engine = TaskEngine(client, namespace=namespace, owns_client=True)
    yield engine
    await engine.close()


@pytest.fixture
async def store(engine: TaskEngine) -> RedisTaskStore:
    return RedisTaskStore(engine)


def text_of(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


# -- helpers from mcp.shared.experimental.tasks ---------------------------------------------


async def test_task_execution_success(store: RedisTaskStore) -> None:
    task = await store.create_task(TaskMetadata(ttl=60000))
    async with task_execution(task.taskId, store) as ctx:
        await ctx.update_status("halfway")
        assert ctx.task.statusMessage == "halfway"
        await ctx.complete(CallToolResult(content=[TextContent(type="text", text="done")]))
    stored = await store.get_task(task.taskId)
    assert stored is not None
    assert stored.status == "completed"
    result = await store.get_result(task.taskId)
    assert isinstance(result, CallToolResult)
    assert text_of(result) == "done"


async def test_task_execution_exception_fails_the_task(store: RedisTaskStore) -> None:
    task = await store.create_task(TaskMetadata(ttl=60000))
    async with task_execution(task.taskId, store):
        raise RuntimeError("disk on fire")
    stored = await store.get_task(task.taskId)
    assert stored is not None
    assert stored.status == "failed"
    assert stored.statusMessage == "disk on fire"


async def test_task_execution_unknown_task(store: RedisTaskStore) -> None:
    with pytest.raises(ValueError, match="not found"):
        async with task_execution("no-such-task", store):
            pass


async def test_task_context_fail(store: RedisTaskStore) -> None:
    task = await store.create_task(TaskMetadata(ttl=60000))
    ctx = TaskContext(task, store)
    await ctx.fail("bad input")
    assert ctx.task.status == "failed"
    assert ctx.task.statusMessage == "bad input"
    with pytest.raises(ValueError, match="terminal"):
        await ctx.update_status("too late")


async def test_cancel_task_helper(store: RedisTaskStore) -> None:
    task = await store.create_task(TaskMetadata(ttl=60000))
    cancelled = await cancel_task(store, task.taskId)
    assert cancelled.status == "cancelled"
    for task_id, text in ((task.taskId, "terminal state 'cancelled'"), ("no-such-task", "not found")):
        with pytest.raises(McpError) as info:
            await cancel_task(store, task_id)
        assert info.value.error.code == INVALID_PARAMS
        assert text in info.value.error.message


# -- a low-level Server with enable_tasks, driven by a ClientSession --------------------------


def build_server(store: RedisTaskStore, queue: RedisTaskMessageQueue) -> tuple[Server[Any, Any], anyio.Event]:
    server: Server[Any, Any] = Server("interop")
    never = anyio.Event()  # the "block" tool waits on it until it is cancelled or the server stops

    @server.list_tools()
    async def _list_tools() -> list[Tool]:  # pyright: ignore[reportUnusedFunction]
        schema: dict[str, Any] = {"type": "object"}
        return [
            Tool(name=name, inputSchema=schema, execution=ToolExecution(taskSupport="optional"))
            for name in ("echo", "block", "ask", "boom")
        ]

    @server.call_tool()
    async def _call_tool(name: str, arguments: dict[str, Any]) -> CreateTaskResult:  # pyright: ignore[reportUnusedFunction]
        async def work(task: ServerTaskContext) -> CallToolResult:
            if name == "echo":
                await task.update_status("echoing")
                return CallToolResult(content=[TextContent(type="text", text=str(arguments["text"]))])
            if name == "block":
                await never.wait()
            if name == "ask":
                answer = await task.elicit(
                    "Who are you?", {"type": "object", "properties": {"name": {"type": "string"}}}
                )
                assert answer.content is not None
                return CallToolResult(
                    content=[TextContent(type="text", text=f"hello {answer.content['name']}")]
                )
            raise RuntimeError("kaboom")

        return await server.request_context.experimental.run_task(work)

    server.experimental.enable_tasks(store=store, queue=queue)
    return server, never


async def test_sdk_server_end_to_end(engine: TaskEngine, store: RedisTaskStore, redis_url: str) -> None:
    queue = RedisTaskMessageQueue(engine)
    server, _ = build_server(store, queue)
    install_response_router(server)
    with anyio.fail_after(30):
        async with create_connected_server_and_client_session(server) as client:
            created = await client.experimental.call_tool_as_task("echo", {"text": "hi"}, ttl=120_000)
            task_id = created.task.taskId
            assert created.task.status == "working"
            assert created.task.ttl == 120_000

            result = await client.experimental.get_task_result(task_id, CallToolResult)
            assert text_of(result) == "hi"
            status = await client.experimental.get_task(task_id)
            assert status.status == "completed"

            # The state is in Redis: an unrelated connection sees the same task.
            other = RedisTaskStore.from_url(redis_url, namespace=engine.keys.namespace)
            try:
                seen = await other.get_task(task_id)
                assert seen is not None
                assert seen.status == "completed"
            finally:
                await other.aclose()

            failing = await client.experimental.call_tool_as_task("boom", {})
            last = await client.experimental.get_task(failing.task.taskId)
            with anyio.fail_after(10):
                async for polled in client.experimental.poll_task(failing.task.taskId):
                    last = polled
            assert last.status == "failed"
            assert last.statusMessage == "kaboom"

            blocked = await client.experimental.call_tool_as_task("block", {})
            cancelled = await client.experimental.cancel_task(blocked.task.taskId)
            assert cancelled.status == "cancelled"
            with pytest.raises(McpError) as info:
                await client.experimental.cancel_task(blocked.task.taskId)
            assert info.value.error.code == INVALID_PARAMS
            with pytest.raises(McpError) as info:
                await client.experimental.get_task("no-such-task")
            assert info.value.error.code == INVALID_PARAMS

            listed = await client.experimental.list_tasks()
            assert {t.taskId for t in listed.tasks} == {task_id, failing.task.taskId, blocked.task.taskId}
            assert {t.taskId: t.status for t in listed.tasks}[blocked.task.taskId] == "cancelled"
    await queue.aclose()


@pytest.mark.parametrize("router", ["redis", "sdk-default"])
async def test_sdk_elicitation_round_trip(
    engine: TaskEngine, store: RedisTaskStore, monkeypatch: pytest.MonkeyPatch, router: str
) -> None:
    """ServerTaskContext.elicit via tasks/result. With our router the reply travels through the
    task's reply slot in Redis (so it may reach any process); with the SDK's default handler
    (store and queue swapped, nothing else) it still works in-process."""
    queue = RedisTaskMessageQueue(engine)
    server, _ = build_server(store, queue)
    if router == "redis":
        assert isinstance(install_response_router(server), RedisTaskResultHandler)

    answered: list[tuple[str, str, Any]] = []
    original = engine.tasks.answer

    async def spy(task_id: str, answers: Mapping[str, Mapping[str, Any]]) -> list[str]:
        answered.extend((task_id, key, reply) for key, reply in answers.items())
        return await original(task_id, answers)

    monkeypatch.setattr(engine.tasks, "answer", spy)
    asked: list[str] = []

    async def on_elicit(
        context: RequestContext[ClientSession, Any], params: ElicitRequestParams
    ) -> ElicitResult | ErrorData:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"name": "Ada"})

    with anyio.fail_after(30):
        async with create_connected_server_and_client_session(
            server, elicitation_callback=on_elicit
        ) as client:
            created = await client.experimental.call_tool_as_task("ask", {})
            result = await client.experimental.get_task_result(created.task.taskId, CallToolResult)
    assert text_of(result) == "hello Ada"
    assert asked == ["Who are you?"]
    expected = [(created.task.taskId, {"result": {"action": "accept", "content": {"name": "Ada"}}})]
    assert [(t, r) for t, _, r in answered] == (expected if router == "redis" else [])
    final = await store.get_task(created.task.taskId)
    assert final is not None
    assert final.status == "completed"
    await queue.aclose()
