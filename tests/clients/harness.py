"""Real third-party MCP clients against the product's real processes.

Each client lives in a venv of its own under ``tests/.venvs/`` (git-ignored; built from the package
index on first use by ``tests/venvs.py`` and cached; ``MCP_TASKS_CLIENT_VENVS`` puts them
elsewhere). A driver script (``drive_*.py`` beside this module) runs in that venv as a child
process, drives one scenario against a server URL over Streamable HTTP the way a user of that
client writes it, and prints one JSON object per line: what the client saw, in order. The tests
start the servers and workers (``tests/integration/stack.py``) and assert on those lines and on
the processes' logs.

Servers of both ``mcp`` majors are started: this interpreter's ``mcp-tasks-redis`` for its own
major, and the other major's from ``MCP_TASKS_V1_COMMAND`` / ``MCP_TASKS_V2_COMMAND`` or this
checkout's ``.venv`` / ``.venv2`` (``make venv`` / ``make venv2``).

Where a client venv cannot be built (no package index) or the other major's environment is
missing, the test is skipped with the reason; with ``MCP_TASKS_REQUIRE_CLIENTS=1`` (CI) it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.integration.stack import ProductProcess, ServerProcess, Stack, product_command
from tests.venvs import ensure_venv

__all__ = [
    "CLIENT_VENVS",
    "ClientRun",
    "client_python",
    "run_client",
    "server_command",
    "start_stack",
    "unavailable",
]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENVS = Path(os.environ.get("MCP_TASKS_CLIENT_VENVS") or ROOT / "tests" / ".venvs")
REQUIRED = os.environ.get("MCP_TASKS_REQUIRE_CLIENTS") == "1"
MCP_MAJOR = int(version("mcp").split(".")[0])

# Exact versions, as users install them. fastmcp 3.4.10 is the newest 3.x that installs here (the
# 2025-11-25 task wire, on mcp 1.x); fastmcp-tasks 4.1.4 pins fastmcp-slim==4.1.4, so 4.1.4 is the
# newest FastMCP 4 that resolves beside it (SEP-2663, on mcp 2.x).
CLIENT_VENVS: dict[str, list[str]] = {
    "fastmcp3": ["fastmcp==3.4.10"],
    "fastmcp4": ["fastmcp==4.1.4", "fastmcp-tasks==4.1.4"],
}

CLIENT_TIMEOUT_S = 60.0
"""Bound on one driver run (a scenario takes seconds; a hang fails the test, with its output)."""


def unavailable(reason: str) -> NoReturn:
    """Skip, saying why; fail instead where the real clients are required (CI)."""
    if REQUIRED:
        pytest.fail(f"{reason} (MCP_TASKS_REQUIRE_CLIENTS=1)", pytrace=False)
    pytest.skip(reason)


_built: dict[str, Path] = {}
_failed: dict[str, str] = {}


def client_python(name: str) -> Path:
    """The python of client venv ``name``, built on first use (about 45 s each, once); a venv that
    could not be built is not tried again by the same test run."""
    if name in _built:
        return _built[name]
    if name in _failed:
        unavailable(_failed[name])
    started = time.monotonic()
    python, error = ensure_venv(VENVS, name, CLIENT_VENVS[name])
    if python is None:
        _failed[name] = f"client venv {name!r} ({' '.join(CLIENT_VENVS[name])}) could not be built: {error}"
        unavailable(_failed[name])
    took = time.monotonic() - started
    if took > 5:
        print(f"built client venv {name} in {took:.0f} s", file=sys.stderr)
    _built[name] = python
    return python


def server_command(major: int) -> list[str]:
    """How to run ``mcp-tasks-redis`` on ``mcp`` ``major``.x."""
    if major == MCP_MAJOR:
        return product_command()
    given = shlex.split(os.environ.get(f"MCP_TASKS_V{major}_COMMAND", ""))
    if given:
        return given
    local = ROOT / (".venv" if major == 1 else f".venv{major}") / "bin" / "mcp-tasks-redis"
    if not local.exists():
        unavailable(
            f"no mcp {major}.x environment for the server: run `make venv{'' if major == 1 else major}`"
            f" or set MCP_TASKS_V{major}_COMMAND"
        )
    return [str(local)]


async def start_stack(
    stack: Stack, major: int, *, workers: int = 1
) -> tuple[ServerProcess, list[ProductProcess]]:
    """A server on ``mcp`` ``major``.x serving the demo tools, and its workers (this environment's:
    workers do not care which wire the server speaks)."""
    command = server_command(major)
    server, *started = await asyncio.gather(
        stack.start_server(f"server-v{major}", command=command),
        *(stack.start_worker(f"worker-{i}", concurrency=4) for i in range(1, workers + 1)),
    )
    assert isinstance(server, ServerProcess)
    return server, started


@dataclass
class ClientRun:
    """What one driver run printed: its JSON lines, in order, and its exit."""

    argv: list[str]
    returncode: int
    lines: list[dict[str, Any]]
    stderr: str
    elapsed_s: float
    raw: list[str] = field(default_factory=list[str])

    def all(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]

    def one(self, event: str) -> dict[str, Any]:
        found = self.all(event)
        assert len(found) == 1, f"expected one {event!r} line, got {len(found)}:\n{self.transcript()}"
        return found[0]

    def transcript(self) -> str:
        out = "\n".join(self.raw)
        return f"$ {shlex.join(self.argv)}\n{out}\n--- stderr (tail) ---\n{self.stderr[-4000:]}"


async def run_client(
    client: str, scenario: str, url: str, *options: str, timeout_s: float = CLIENT_TIMEOUT_S
) -> ClientRun:
    """Run driver ``drive_<client>.py`` for ``scenario`` against ``url``; it must exit 0 and end
    with a ``done`` line (a scenario reports what the client saw, expected errors included)."""
    python = client_python(client)
    argv = [str(python), str(HERE / f"drive_{client}.py"), url, scenario, *options]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        cwd=str(HERE),
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    raw: list[str] = []
    errors: list[bytes] = []

    async def read_lines(stream: asyncio.StreamReader) -> None:
        async for line in stream:
            if text := line.decode(errors="replace").strip():
                raw.append(text)

    async def read_all(stream: asyncio.StreamReader) -> None:
        errors.append(await stream.read())

    readers = asyncio.gather(read_lines(proc.stdout), read_all(proc.stderr))
    try:
        await asyncio.wait_for(asyncio.shield(readers), timeout_s)
        await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        await readers
        raise AssertionError(
            f"{client} {scenario} did not finish within {timeout_s:g} s:\n"
            + "\n".join(raw)
            + f"\n--- stderr ---\n{b''.join(errors).decode(errors='replace')[-4000:]}"
        ) from None
    lines: list[dict[str, Any]] = []
    for line in raw:
        try:
            parsed: Any = json.loads(line)
        except ValueError:
            continue  # a library's own print; kept in the transcript
        if isinstance(parsed, dict):
            lines.append(dict(parsed))  # pyright: ignore[reportUnknownArgumentType]
    stderr = b"".join(errors).decode(errors="replace")
    run = ClientRun(argv, proc.returncode or 0, lines, stderr, time.monotonic() - started, raw)
    assert run.returncode == 0, f"{client} {scenario} exited {run.returncode}:\n{run.transcript()}"
    finished = bool(lines) and lines[-1].get("event") == "done"
    assert finished, f"{client} {scenario} did not finish:\n{run.transcript()}"
    return run
