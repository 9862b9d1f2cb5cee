"""Start, watch and stop the product's real processes, for tests on either `mcp` major.

A :class:`Stack` is the set of processes of one test: server replicas over Streamable HTTP,
workers, and the parameters of a stdio server, all on one Redis and one key namespace. Each
process logs JSON lines (``MCP_TASKS_LOG_FORMAT=json``) to its own file, so a test can wait for
a line (``task <id> started``) and read its timestamp. Everything a stack started is stopped
when it closes (SIGTERM, then SIGKILL after a deadline), even when the test failed; the logs are
attached to the test report so a failure shows what every process said.

Also a pytest plugin (``pytest_plugins = ["tests.integration.stack"]``): the ``stack`` and
``engine`` fixtures live here, and it loads ``redis_fixtures`` unless a conftest already did.
Nothing here imports an MCP client: the 2025-11-25 client helpers and scenarios are in
``procs.py``, the SEP-2663 ones in ``tests/v2``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from mcp_tasks_redis.engine.engine import TaskEngine

if TYPE_CHECKING:
    from mcp.client.stdio import StdioServerParameters

__all__ = [
    "LOG_POLL_S",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "LogRecord",
    "ProductProcess",
    "ServerProcess",
    "Stack",
    "free_port",
    "product_command",
    "started_on",
    "wait_for",
]

STOP_TIMEOUT_S = 5.0
"""How long a process gets to exit after SIGTERM before it is killed."""

START_TIMEOUT_S = 20.0
"""Deadline for a server to answer /health or a worker to log that it started."""

LOG_POLL_S = 0.02

# The Redis fixtures come from tests/redis_fixtures.py. A tests/conftest.py registers it as
# `redis_fixtures` (and is always imported before the modules under it); until one does, this
# plugin pulls it in under its package name, so the integration modules work either way.
pytest_plugins = [] if "redis_fixtures" in sys.modules else ["tests.redis_fixtures"]


# Resolved once here, so the forked child only makes the call (no dynamic loading before exec).
_PRCTL: Any = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_test_run() -> None:
    """``preexec_fn`` (Linux): the child gets SIGTERM if the test process dies without cleaning up
    (PR_SET_PDEATHSIG; processes are started from the main thread, whose exit is what it tracks)."""
    _PRCTL(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def product_command() -> list[str]:
    """How to run ``mcp-tasks-redis`` with this interpreter's environment."""
    script = Path(sys.executable).parent / "mcp-tasks-redis"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from mcp_tasks_redis.ops.cli import main; main()"]


async def wait_for(
    check: Callable[[], Any], *, timeout_s: float, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class LogRecord:
    """One line a product process logged (JSON lines; anything else is kept as ``msg``)."""

    ts: float | None
    level: str
    logger: str
    msg: str
    task_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict[str, Any])

    @classmethod
    def parse(cls, line: str) -> LogRecord:
        try:
            data: Any = json.loads(line)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls(ts=None, level="", logger="", msg=line)
        record: dict[str, Any] = data  # pyright: ignore[reportUnknownVariableType]
        ts = record.get("ts")
        return cls(
            ts=float(ts) if isinstance(ts, int | float) else None,
            level=str(record.get("level", "")),
            logger=str(record.get("logger", "")),
            msg=str(record.get("msg", "")),
            task_id=record.get("task_id"),
            raw=record,
        )


class ProductProcess:
    """One product process whose stderr goes to ``log_path``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.started_at = time.time()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # signals to the test runner's group never reach it
            preexec_fn=_die_with_test_run if _PRCTL is not None else None,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    # -- logs ----------------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def records(self) -> list[LogRecord]:
        return [LogRecord.parse(line) for line in self.log_text().splitlines() if line.strip()]

    def find(self, text: str) -> LogRecord | None:
        """The first logged line whose message contains ``text``."""
        return next((r for r in self.records() if text in r.msg), None)

    def find_all(self, text: str) -> list[LogRecord]:
        return [r for r in self.records() if text in r.msg]

    async def wait_for_log(self, text: str, timeout_s: float = 10.0) -> LogRecord:
        """Wait until a line containing ``text`` is logged; fail early if the process died."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.find(text)
            if found is not None:
                return found
            if not self.alive:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before logging {text!r}:\n{self.tail()}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} did not log {text!r} within {timeout_s:g} s:\n{self.tail()}")
            await asyncio.sleep(LOG_POLL_S)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- signals -------------------------------------------------------------------------------
    def send(self, sig: signal.Signals) -> None:
        if self.alive:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (a crashed worker)."""
        self.send(signal.SIGKILL)
        self.popen.wait(STOP_TIMEOUT_S)

    def terminate(self) -> None:
        """SIGTERM, without waiting (see :meth:`wait_exit`)."""
        self.send(signal.SIGTERM)

    async def wait_exit(self, timeout_s: float) -> int:
        """Wait (without blocking the event loop) until the process exited; its exit code."""
        await wait_for(
            lambda: self.popen.poll() is not None,
            timeout_s=timeout_s,
            interval=0.02,
            what=f"{self.name} to exit",
        )
        return int(self.popen.returncode)

    def stop(self) -> None:
        """SIGTERM; SIGKILL if still running after :data:`STOP_TIMEOUT_S`. Idempotent."""
        try:
            if self.alive:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(STOP_TIMEOUT_S)
        finally:
            self._log.close()


class ServerProcess(ProductProcess):
    """A server replica over Streamable HTTP."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, port: int) -> None:
        super().__init__(name, argv, env, log_path)
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.base_url}/mcp"

    async def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive:
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}")
            if await asyncio.to_thread(self._healthy):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} not healthy within {timeout_s:g} s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


class Stack:
    """The product processes of one test, on one Redis and namespace; :meth:`close` stops them all."""

    def __init__(self, redis_url: str, namespace: str, workdir: Path, **settings: str | int) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.workdir = workdir
        self.settings = {f"MCP_TASKS_{k.upper()}": str(v) for k, v in settings.items()}
        # MCP_TASKS_TEST_DISPATCHER=arq runs the suites that use a Stack with the arq dispatcher
        # (`make test-arq`; the [arq] extra installed): servers enqueue into arq, workers are arq's.
        dispatcher = os.environ.get("MCP_TASKS_TEST_DISPATCHER")
        if dispatcher:
            self.settings.setdefault("MCP_TASKS_DISPATCHER", dispatcher)
            self.settings.setdefault("MCP_TASKS_ARQ_POLL_DELAY_S", "0.02")
            # arq's lease is its job timeout + 10 s: short, so that a lost run is retried in tests.
            self.settings.setdefault("MCP_TASKS_ARQ_JOB_TIMEOUT_S", "10")
        self.processes: list[ProductProcess] = []
        self.stdio_logs: list[Path] = []
        self._counter = 0

    def configure(self, **settings: str | int) -> None:
        """Set ``MCP_TASKS_*`` settings (``lease_ms=3000``) for the processes started from now on."""
        self.settings.update({f"MCP_TASKS_{k.upper()}": str(v) for k, v in settings.items()})

    def env(self, **overrides: str | int) -> dict[str, str]:
        """The environment of a product process: nothing inherited that could point elsewhere."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_TASKS_") and k != "REDIS_URL"}
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "MCP_TASKS_NAMESPACE": self.namespace,
                "MCP_TASKS_LOG_FORMAT": "json",
                "MCP_TASKS_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.settings)
        env.update({f"MCP_TASKS_{k.upper()}": str(v) for k, v in overrides.items()})
        return env

    def _log_path(self, name: str) -> Path:
        self._counter += 1
        return self.workdir / f"{self._counter:02d}-{name}.log"

    async def start_server(
        self, name: str = "server", *, command: list[str] | None = None, **overrides: str | int
    ) -> ServerProcess:
        """A server replica over Streamable HTTP on a free port, returned once /health answers.
        ``command`` runs ``mcp-tasks-redis`` from another environment (e.g. the other mcp major's)."""
        port = free_port()
        argv = [
            *(command or product_command()),
            "serve",
            "--transport",
            "streamable-http",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        server = ServerProcess(name, argv, self.env(**overrides), self._log_path(name), port)
        self.processes.append(server)
        await server.wait_healthy()
        return server

    async def start_worker(
        self, name: str = "worker", *, concurrency: int = 10, **overrides: str | int
    ) -> ProductProcess:
        """A worker process, returned once it logged that it started."""
        argv = [*product_command(), "worker", "--concurrency", str(concurrency)]
        worker = ProductProcess(name, argv, self.env(**overrides), self._log_path(name))
        self.processes.append(worker)
        await worker.wait_for_log("started:", timeout_s=START_TIMEOUT_S)
        return worker

    def stdio_params(self, **overrides: str | int) -> StdioServerParameters:
        """How ``stdio_client`` starts a server over stdio (it owns and stops that process)."""
        from mcp.client.stdio import StdioServerParameters

        command = product_command()
        return StdioServerParameters(
            command=command[0],
            args=[*command[1:], "serve", "--transport", "stdio"],
            env=self.env(**overrides),
            cwd=str(self.workdir),
        )

    def stdio_log(self, name: str = "stdio-server") -> Path:
        """A fresh log file for a stdio server's stderr (attached to the report like the others)."""
        path = self._log_path(name)
        self.stdio_logs.append(path)
        return path

    def close(self) -> None:
        """Stop every process, in parallel-ish: SIGTERM to all first, then wait / kill each."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send(signal.SIGTERM)
        for process in self.processes:
            process.stop()

    def report(self) -> str:
        parts = [
            f"===== {p.name} (pid {p.pid}, exit {p.popen.returncode}) =====\n{p.tail(200)}"
            for p in self.processes
        ]
        parts += [
            f"===== {path.name} =====\n{path.read_text(errors='replace')}"
            for path in self.stdio_logs
            if path.exists()
        ]
        return "\n".join(parts)


@pytest.fixture
def stack(request: pytest.FixtureRequest, redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Stack]:
    """A :class:`Stack` on the test's Redis and namespace (settings: :meth:`Stack.configure`). All
    its processes are stopped at teardown, before the namespace's key-hygiene check, and their logs
    are attached to the test report (shown when the test fails)."""
    processes = Stack(redis_url, namespace, tmp_path)
    try:
        yield processes
    finally:
        processes.close()
        request.node.add_report_section("teardown", "product logs", processes.report())


async def started_on(
    workers: list[ProductProcess], task_id: str, *, attempt: int | None = None, timeout_s: float = 10.0
) -> tuple[ProductProcess, LogRecord]:
    """The worker that logged starting ``task_id`` (that attempt, if given), and the line."""
    suffix = "" if attempt is None else f"(attempt {attempt})"

    def find() -> tuple[ProductProcess, LogRecord] | None:
        for worker in workers:
            for record in worker.find_all(f"task {task_id} started:"):
                if record.msg.endswith(suffix):
                    return worker, record
        return None

    found: tuple[ProductProcess, LogRecord] = await wait_for(
        find, timeout_s=timeout_s, interval=LOG_POLL_S, what=f"a worker to start task {task_id} {suffix}"
    )
    return found


@pytest_asyncio.fixture
async def engine(redis_url: str, namespace: str) -> AsyncIterator[TaskEngine]:
    """A `TaskEngine` of the test process on the stack's Redis and namespace (and its dispatcher:
    see MCP_TASKS_TEST_DISPATCHER)."""
    dispatcher = None
    if os.environ.get("MCP_TASKS_TEST_DISPATCHER") == "arq":
        from mcp_tasks_redis.arq_dispatch import ArqDispatch

        dispatcher = ArqDispatch.for_namespace(namespace)
    task_engine = TaskEngine.from_url(redis_url, namespace=namespace, dispatcher=dispatcher)
    try:
        yield task_engine
    finally:
        await task_engine.close()
