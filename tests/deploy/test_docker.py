"""The product's Dockerfile and docker-compose.yml on a real Docker engine, driven by a real MCP client.

One compose project for the module (a unique name, the server published on a free loopback port
only), built from the repository's own Dockerfile and compose file; the only override is a short
worker lease (so a killed worker's task is re-run within seconds) and the host side of the
published port. The tests run in file order on that stack and each makes sure of the number of
workers it needs: tasks end to end, three workers sharing tasks, a worker stopped (its task is
handed back) or killed (re-run after the lease), Redis restarted (nothing lost), and finally
``down -v`` leaving nothing behind.

Skipped, with the reason, where no Docker engine runs; ``MCP_TASKS_REQUIRE_DOCKER=1`` (CI) turns
that skip into a failure. Select with ``-m deploy``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from deploy_support import ENV_REQUIRE_DOCKER, Compose, Started, poll, run, why_no_docker
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client  # pyright: ignore[reportDeprecated]
from mcp.shared.exceptions import McpError
from mcp.types import (
    INTERNAL_ERROR,
    LATEST_PROTOCOL_VERSION,
    CallToolResult,
    ProgressNotification,
    ServerNotification,
    TextContent,
)

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.slow,
    # The first build of the image takes minutes; later runs reuse Docker's layer cache.
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
LEASE_MS = 3000
RESULT_TIMEOUT_S = 60.0


@dataclass
class Deployment:
    compose: Compose
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def save_logs(self) -> None:
        """Every container's log (the last lines of each) to a file, named in the output."""
        self.log_path.write_text(self.compose("logs", "--no-color", "--tail", "300", timeout=60))
        print(f"deploy: container logs in {self.log_path}")

    def ensure_workers(self, count: int) -> list[str]:
        """At least ``count`` healthy workers (scaled up, or stopped ones started, when fewer run)."""
        if len(self.compose.containers("worker")) < count:
            self.compose("up", "-d", "--no-recreate", "--scale", f"worker={count}")
        return self.compose.wait_healthy("worker", count)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    reason = why_no_docker()
    if reason is not None:
        if os.environ.get(ENV_REQUIRE_DOCKER):
            pytest.fail(f"{ENV_REQUIRE_DOCKER} is set but {reason}")
        pytest.skip(reason)
    override = tmp_path_factory.mktemp("compose") / "docker-compose.test.yml"
    lease = {"MCP_TASKS_LEASE_MS": str(LEASE_MS)}  # every process of a deployment must agree
    override.write_text(
        yaml.safe_dump({"services": {"server": {"environment": lease}, "worker": {"environment": lease}}})
    )
    port = free_port()
    compose = Compose(
        f"mcptasks-deploy-{secrets.token_hex(4)}",
        [ROOT / "docker-compose.yml", override],
        {"MCP_TASKS_PUBLISH": f"127.0.0.1:{port}"},
    )
    started = time.monotonic()
    deployment = Deployment(compose, port, override.parent / "compose.log")
    try:
        compose("up", "-d", "--build", timeout=900)
        print(f"\ndeploy: build + up in {time.monotonic() - started:.1f} s")
        yield deployment
    finally:
        # Whatever a test left running goes; the last test checks that `down -v` leaves nothing.
        try:
            if compose.leftovers():
                deployment.save_logs()
                compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=120)
        except AssertionError as e:
            print(e)


# -- the MCP client ----------------------------------------------------------------------------
@asynccontextmanager
async def session(url: str, on_message: Any = None) -> AsyncGenerator[ClientSession]:
    async with (
        streamablehttp_client(url) as (read, write, _),  # pyright: ignore[reportDeprecated]
        ClientSession(read, write, message_handler=on_message) as client,
    ):
        await client.initialize()
        yield client


async def start_tasks(url: str, calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Create one task per (tool, arguments) in one session; their ids."""
    async with session(url) as client:
        tasks = client.experimental  # pyright: ignore[reportDeprecated]
        return [(await tasks.call_tool_as_task(tool, args)).task.taskId for tool, args in calls]


async def outcomes(url: str, task_ids: list[str]) -> list[dict[str, Any]]:
    """What ``tasks/result`` answers for each task, a result or a JSON-RPC error, as plain data."""
    answers: list[dict[str, Any]] = []
    async with session(url) as client:
        tasks = client.experimental  # pyright: ignore[reportDeprecated]
        for task_id in task_ids:
            try:
                async with asyncio.timeout(RESULT_TIMEOUT_S):
                    answers.append(
                        {"result": (await tasks.get_task_result(task_id, CallToolResult)).model_dump()}
                    )
            except McpError as e:
                answers.append({"error": e.error.model_dump()})
    return answers


async def results(url: str, task_ids: list[str]) -> list[CallToolResult]:
    """Every task's result, fetched from a new session (the id is the capability)."""
    async with session(url) as client:
        tasks = client.experimental  # pyright: ignore[reportDeprecated]
        async with asyncio.timeout(RESULT_TIMEOUT_S):
            return list(await asyncio.gather(*(tasks.get_task_result(t, CallToolResult) for t in task_ids)))


def text_of(result: CallToolResult) -> list[str]:
    return [c.text for c in result.content if isinstance(c, TextContent)]


def first_start(stack: Deployment, task_id: str) -> Started:
    return poll(
        lambda: next(iter(stack.compose.task_starts(task_id)), None), timeout=30, what=f"{task_id} to start"
    )


def initialize_status(url: str) -> int:
    """A raw `initialize` POST, redirects not followed: where the server answers."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LATEST_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "p", "version": "0"},
        },
    }
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        response = client.post(url, json=body, headers={"Accept": "application/json, text/event-stream"})
        if session_id := response.headers.get("mcp-session-id"):
            client.delete(url, headers={"mcp-session-id": session_id})
        return response.status_code


# -- the scenarios, in order --------------------------------------------------------------------
def test_the_image_builds_once_and_the_stack_comes_up_healthy(stack: Deployment) -> None:
    started = time.monotonic()
    compose = stack.compose
    [redis_name] = compose.wait_healthy("redis", 1)
    [server] = compose.wait_healthy("server", 1)
    [worker] = compose.wait_healthy("worker", 1)
    print(f"deploy: healthy {time.monotonic() - started:.1f} s after up")
    # One image, built once from the Dockerfile, run by the server and the workers alike.
    image = run(["docker", "image", "inspect", "--format", "{{.Id}}", "mcp-tasks-redis:local"]).strip()
    assert compose.inspect(server)["Image"] == compose.inspect(worker)["Image"] == image
    assert compose.inspect(server)["Config"]["User"] == "app"
    # Published on the loopback interface only, on the port asked for.
    bindings = compose.inspect(server)["NetworkSettings"]["Ports"]["8000/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(stack.port)}]
    assert "appendonly" in " ".join(compose.inspect(redis_name)["Config"]["Cmd"])


async def test_tasks_end_to_end_through_the_published_port(stack: Deployment) -> None:
    stack.ensure_workers(1)
    assert await asyncio.to_thread(
        lambda: [initialize_status(stack.url), initialize_status(stack.url + "/")]
    ) == [
        200,
        200,
    ]
    progress: list[float] = []
    done = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ServerNotification) and isinstance(message.root, ProgressNotification):
            progress.append(message.root.params.progress)
            if message.root.params.progress >= 100:
                done.set()

    async with session(stack.url, on_message) as client:
        tasks = client.experimental  # pyright: ignore[reportDeprecated]
        slow = await tasks.call_tool_as_task("slow_compute", {"seconds": 1}, meta={"progressToken": "p"})
        noop = await tasks.call_tool_as_task("noop", {})
        async with asyncio.timeout(RESULT_TIMEOUT_S):
            slow_result = await tasks.get_task_result(slow.task.taskId, CallToolResult)
            noop_result = await tasks.get_task_result(noop.task.taskId, CallToolResult)
            await done.wait()
        greeting = await client.call_tool("greet", {"name": "Docker"})
    assert not slow_result.isError, slow_result
    assert slow_result.structuredContent == {"seconds": 1}
    assert progress == sorted(progress)
    assert len(progress) >= 10
    assert progress[-1] == 100
    assert text_of(noop_result) == ["ok"]
    assert text_of(greeting) == ["Hello, Docker!"]
    assert first_start(stack, slow.task.taskId).container in stack.compose.containers("worker")


async def test_three_workers_share_the_tasks(stack: Deployment) -> None:
    started = time.monotonic()
    workers = stack.ensure_workers(3)
    print(f"deploy: scaled to 3 healthy workers in {time.monotonic() - started:.1f} s")
    # Ten slots per worker: 25 tasks that overlap do not fit on any two, so all three must run some.
    started = time.monotonic()
    ids = await start_tasks(stack.url, [("slow_compute", {"seconds": 3})] * 25)
    outcomes = await results(stack.url, ids)
    print(f"deploy: 25 x 3 s tasks on 3 workers in {time.monotonic() - started:.1f} s")
    assert all(not r.isError and r.structuredContent == {"seconds": 3} for r in outcomes)
    ran_on = {task_id: first_start(stack, task_id).container for task_id in ids}
    counts = {w: sum(1 for c in ran_on.values() if c == w) for w in workers}
    print(f"deploy: tasks per worker {counts}")
    assert set(ran_on.values()) == set(workers), counts


async def test_a_stopped_worker_hands_its_task_to_another(stack: Deployment) -> None:
    stack.ensure_workers(2)
    [task_id] = await start_tasks(stack.url, [("slow_compute", {"seconds": 6})])
    victim = first_start(stack, task_id)
    started = time.monotonic()
    run(["docker", "stop", "--time", "40", victim.container])  # SIGTERM, then the compose grace period
    stop_s = time.monotonic() - started
    print(f"deploy: docker stop of a busy worker took {stop_s:.1f} s")
    assert stop_s < 20, "the worker hands back on SIGTERM; it does not sit out the grace period"
    assert stack.compose.inspect(victim.container)["State"]["ExitCode"] == 0
    assert stack.compose.logged(victim.container, task_id, "handed back")
    [outcome] = await results(stack.url, [task_id])
    assert not outcome.isError, outcome
    assert outcome.structuredContent == {"seconds": 6}
    starts = stack.compose.task_starts(task_id)
    print(f"deploy: stopped {victim}; runs {starts}")
    finishers = [s for s in starts if s.container != victim.container]
    assert finishers, "the task ran again on another worker"


async def test_a_killed_worker_task_is_rerun_after_its_lease(stack: Deployment) -> None:
    stack.ensure_workers(2)
    [task_id] = await start_tasks(stack.url, [("slow_compute", {"seconds": 4})])
    victim = first_start(stack, task_id)
    started = time.monotonic()
    run(["docker", "kill", victim.container])  # SIGKILL: no hand-back, only the lease lapses
    [outcome] = await results(stack.url, [task_id])
    print(f"deploy: a killed worker's 4 s task finished {time.monotonic() - started:.1f} s after the kill")
    assert not outcome.isError, outcome
    assert outcome.structuredContent == {"seconds": 4}
    starts = stack.compose.task_starts(task_id)
    print(f"deploy: killed {victim}; runs {starts}")
    # A killed container stays down (docker kill counts as a manual stop for the restart policy).
    reruns = [s for s in starts if s.worker != victim.worker and s.container != victim.container]
    assert reruns, "another worker re-ran the task"
    assert all(s.attempt is None or s.attempt >= 2 for s in reruns), reruns


async def test_a_redis_restart_loses_nothing(stack: Deployment) -> None:
    stack.ensure_workers(2)
    compose = stack.compose
    assert "aof_enabled:1" in compose.redis_cli("INFO", "persistence")
    finished = await start_tasks(
        stack.url, [("slow_compute", {"seconds": 0.2}), ("noop", {}), ("fail", {"message": "kept"})]
    )
    before = await outcomes(stack.url, finished)
    assert "kept" in str(before[2])
    [running] = await start_tasks(stack.url, [("slow_compute", {"seconds": 5})])
    first_start(stack, running)

    started = time.monotonic()
    compose("stop", "redis")
    compose("start", "redis")
    compose.wait_healthy("redis", 1)
    print(f"deploy: Redis stopped and back healthy in {time.monotonic() - started:.1f} s")

    statuses = await statuses_after_restart(stack.url, finished)
    assert statuses == ["completed", "completed", "failed"]
    assert await outcomes(stack.url, finished) == before
    [outcome] = await results(stack.url, [running])
    assert not outcome.isError, outcome
    assert outcome.structuredContent == {"seconds": 5}
    [fresh] = await results(stack.url, await start_tasks(stack.url, [("noop", {})]))
    assert text_of(fresh) == ["ok"]


async def statuses_after_restart(url: str, task_ids: list[str]) -> list[str]:
    """The tasks' statuses once the server answers again. Each of the server's pooled Redis
    connections died with the restart, and redis-py (8.x, no retry configured) fails the first
    command on each once: the server answers that request with its outage error (-32603,
    "unreachable"), and a client asks again, as it would after any outage."""
    async with session(url) as client:
        tasks = client.experimental  # pyright: ignore[reportDeprecated]
        async with asyncio.timeout(RESULT_TIMEOUT_S):
            while True:
                try:
                    return [(await tasks.get_task(t)).status for t in task_ids]
                except McpError as e:
                    if e.error.code != INTERNAL_ERROR or "unreachable" not in e.error.message:
                        raise  # anything but the passing outage is a failure


def test_down_leaves_nothing_behind(stack: Deployment) -> None:
    stack.save_logs()
    started = time.monotonic()
    stack.compose("down", "-v", "--remove-orphans")
    print(f"deploy: down -v in {time.monotonic() - started:.1f} s")
    assert stack.compose.leftovers() == {}
