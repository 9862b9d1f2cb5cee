"""`http_app` over real HTTP: MCP at exactly its path, alone and mounted inside an existing app.

The server runs in this process under uvicorn (on a socket bound before it starts, so no wait
for it to come up); the tools run on a real worker process. Clients are the SDK's 1.x ones that
deployed clients use (``streamablehttp_client``, ``session.experimental``; deprecated in favour of
the 2.x API), with an httpx hook that records every response, so a redirect anywhere is seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import pytest
import uvicorn

pytest.register_assert_rewrite("tests.integration.procs")

from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamablehttp_client  # pyright: ignore[reportDeprecated]  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402
from mcp.types import CallToolResult, ProgressNotification, ServerNotification, TextContent  # noqa: E402
from ops_support import initialize_status  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.types import ASGIApp  # noqa: E402

from mcp_tasks_redis.engine.loading import load_registry  # noqa: E402
from mcp_tasks_redis.mcp_v1.host import http_app  # noqa: E402
from mcp_tasks_redis.ops.processes import engine_from  # noqa: E402
from mcp_tasks_redis.settings import DEFAULT_APP, Settings  # noqa: E402
from tests.integration.procs import Stack  # noqa: E402

pytest_plugins = ["tests.integration.procs"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

RESULT_TIMEOUT_S = 20.0


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncGenerator[str]:
    """``app`` under uvicorn on a free loopback port; yields its base URL.

    The socket is bound and listening before uvicorn starts, so a client may connect at once:
    the kernel queues it until uvicorn has run the lifespan and accepts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


class Recorder:
    """An httpx client factory for the SDK's transport that records every response status."""

    def __init__(self) -> None:
        self.statuses: list[tuple[str, int]] = []

    async def _record(self, response: httpx.Response) -> None:
        self.statuses.append((f"{response.request.method} {response.request.url.path}", response.status_code))

    def __call__(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.AsyncClient:
        client = create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
        client.event_hooks["response"].append(self._record)
        return client


async def drive_tasks(url: str) -> list[tuple[str, int]]:
    """Run ``slow_compute`` and ``noop`` as tasks through the SDK client at ``url``; check both
    end to end and return every HTTP (request, status) the session saw."""
    recorder = Recorder()
    progress: dict[str, list[float]] = {}
    done = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ServerNotification) and isinstance(message.root, ProgressNotification):
            params = message.root.params
            progress.setdefault(str(params.progressToken), []).append(params.progress)
            if params.progressToken == "slow" and params.progress >= 100:
                done.set()

    async with (
        streamablehttp_client(url, httpx_client_factory=recorder) as (read, write, _),  # pyright: ignore[reportDeprecated]
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()
        tasks = session.experimental  # pyright: ignore[reportDeprecated]
        slow = await tasks.call_tool_as_task("slow_compute", {"seconds": 0.4}, meta={"progressToken": "slow"})
        noop = await tasks.call_tool_as_task("noop", {}, meta={"progressToken": "noop"})
        async with asyncio.timeout(RESULT_TIMEOUT_S):
            slow_result = await tasks.get_task_result(slow.task.taskId, CallToolResult)
            noop_result = await tasks.get_task_result(noop.task.taskId, CallToolResult)
            await done.wait()  # the final 100 % travels on the session stream, not with the result
        assert (await tasks.get_task(slow.task.taskId)).status == "completed"

    assert not slow_result.isError, slow_result
    assert slow_result.structuredContent == {"seconds": 0.4}
    assert progress["slow"][-1] == 100.0
    assert progress["slow"] == sorted(progress["slow"])
    assert not noop_result.isError, noop_result
    assert [c.text for c in noop_result.content if isinstance(c, TextContent)] == ["ok"]
    # noop reports nothing itself; the runtime may still send the final 100 % on completion.
    assert progress.get("noop", []) in ([], [100.0]), progress.get("noop")
    return recorder.statuses


@pytest.fixture
async def worker(stack: Stack) -> Stack:
    await stack.start_worker("worker", concurrency=4)
    return stack


def settings_of(stack: Stack) -> Settings:
    return Settings(redis_url=stack.redis_url, namespace=stack.namespace)


async def test_mcp_answers_at_exactly_its_path_without_redirect(worker: Stack) -> None:
    settings = settings_of(worker)
    engine = engine_from(settings)
    try:
        async with serving(http_app(load_registry(DEFAULT_APP), engine, settings)) as base:
            # The path with and without its trailing slash, as `serve` and `dev` run it.
            statuses = await asyncio.to_thread(
                lambda: [initialize_status(f"{base}/mcp"), initialize_status(f"{base}/mcp/")]
            )
            assert statuses == [200, 200]
            seen = await drive_tasks(f"{base}/mcp")
    finally:
        await engine.close()
    assert seen
    assert all(status < 300 for _, status in seen), seen


async def test_http_app_mounted_in_an_existing_app_at_a_chosen_path(worker: Stack) -> None:
    settings = settings_of(worker)
    engine = engine_from(settings)
    tasks_app = http_app(load_registry(DEFAULT_APP), engine, settings, path="/tasks")
    lifespans: list[str] = []

    async def home(_: Request) -> PlainTextResponse:
        return PlainTextResponse("the existing app")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncGenerator[None]:
        # The existing app's own lifespan, with the mounted app's run inside it.
        lifespans.append("parent up")
        async with tasks_app.router.lifespan_context(tasks_app):
            yield
        lifespans.append("parent down")

    parent = Starlette(routes=[Route("/", home), Mount("/internal/agents", app=tasks_app)], lifespan=lifespan)
    try:
        async with serving(parent) as base:
            url = f"{base}/internal/agents/tasks"
            async with httpx.AsyncClient(follow_redirects=False) as client:
                assert (await client.get(f"{base}/")).text == "the existing app"
                health = await client.get(f"{base}/internal/agents/health")
                assert health.status_code == 200, health.text
                assert "noop" in health.json()["tools"]
                assert (await client.post(f"{base}/internal/agents/mcp", json={})).status_code == 404
            statuses = await asyncio.to_thread(lambda: [initialize_status(url), initialize_status(url + "/")])
            assert statuses == [200, 200]
            seen = await drive_tasks(url)
    finally:
        await engine.close()
    assert all(status < 300 for _, status in seen), seen
    assert all(request.split(" ", 1)[1].startswith("/internal/agents/tasks") for request, _ in seen), seen
    assert lifespans == ["parent up", "parent down"]
