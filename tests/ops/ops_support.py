"""Helpers for the operations tests: run the command as a subprocess, talk MCP, wait with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.experimental import ExperimentalClientFeatures
from mcp.client.streamable_http import streamable_http_client
from mcp.types import LATEST_PROTOCOL_VERSION, CallToolResult

ROOT = Path(__file__).resolve().parents[2]
RESULT_TIMEOUT_S = 30.0


def command() -> list[str]:
    """The installed console script next to this Python (the real entry point), else `python -m`."""
    script = Path(sys.executable).parent / "mcp-tasks-redis"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mcp_tasks_redis.ops.cli"]


def clean_env(redis_url: str | None = None, namespace: str | None = None, **extra: str) -> dict[str, str]:
    """This environment without any MCP_TASKS_* / REDIS_URL, plus the given Redis and namespace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_TASKS_") and k != "REDIS_URL"}
    env["COLUMNS"] = "200"  # rich tables: never wrap a task id in a test's pipe
    env["PYTHONUNBUFFERED"] = "1"
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    if namespace is not None:
        env["MCP_TASKS_NAMESPACE"] = namespace
    env.update(extra)
    return env


def run_cli(
    *args: str, env: Mapping[str, str], timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, no traceback, stderr exactly one line containing every needle."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is not running.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll)


def stop_process(process: subprocess.Popen[Any], timeout: float = 15) -> int:
    """SIGTERM, bounded wait, SIGKILL; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return int(process.returncode)


@asynccontextmanager
async def mcp_session(
    url: str, on_message: Any = None
) -> AsyncGenerator[tuple[ClientSession, ExperimentalClientFeatures]]:
    async with (
        streamable_http_client(url) as (read, write, _),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()
        yield session, ExperimentalClientFeatures(session)


async def run_task(url: str, tool: str, arguments: dict[str, Any]) -> tuple[str, CallToolResult, list[float]]:
    """Call ``tool`` as a task with a progressToken; return (task id, result, progress values seen).

    The result is awaited for at most RESULT_TIMEOUT_S. Notifications travel on the session's own
    stream, not on the tasks/result response, so the final 100 % may arrive just after the
    result: it is awaited (briefly) before the session closes."""
    seen: list[float] = []
    finished = asyncio.Event()

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", None)
        if getattr(root, "method", None) == "notifications/progress":
            seen.append(float(root.params.progress))  # type: ignore[union-attr]
            if seen[-1] >= 100.0:
                finished.set()

    async with mcp_session(url, on_message) as (_, tasks):
        created = await tasks.call_tool_as_task(tool, arguments, meta={"progressToken": "t"})
        result = await asyncio.wait_for(
            tasks.get_task_result(created.task.taskId, CallToolResult), RESULT_TIMEOUT_S
        )
        if not result.isError:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await finished.wait()
    return created.task.taskId, result, seen


def initialize_status(url: str) -> int:
    """POST one raw ``initialize`` to ``url`` without following redirects; the HTTP status.

    The SDK's client follows a same-origin redirect by itself, so only a raw request shows
    whether the endpoint answers where it is or sends the client elsewhere first. The session
    the request opens is closed again."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LATEST_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw-probe", "version": "0"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=10.0, follow_redirects=False) as client:
        response = client.post(url, json=body, headers=headers)
        session = response.headers.get("mcp-session-id")
        if session:
            client.delete(url, headers={"mcp-session-id": session})
        if response.status_code == 200:
            assert '"serverInfo"' in response.text, response.text[:300]
        return response.status_code
