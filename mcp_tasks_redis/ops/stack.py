"""The dev stack: Redis, one MCP server on Streamable HTTP and N worker processes, run as one unit.

`DevStack` is what `mcp-tasks-redis dev` and `demo` run and what the end-to-end tests start. It
picks a Redis (an explicit URL, else one answering on the default port, else an embedded one) and
says which; starts the server and the workers as child processes of the current Python, with the
same Redis URL and namespace; waits until the server's ``/health`` answers and every worker has
reported in; and on leaving (normally, on an error, on Ctrl-C or SIGTERM) stops the workers first
so they hand unfinished tasks back, then the server, then any Redis it started. Children get
SIGTERM, a bounded wait, then SIGKILL; nothing is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self, cast

import redis
import redis.exceptions

from mcp_tasks_redis.engine.keys import KeySpace
from mcp_tasks_redis.ops.embedded import EmbeddedRedis, EmbeddedRedisError, die_with_parent, redis_answers
from mcp_tasks_redis.settings import DEFAULT_APP, DEFAULT_REDIS_URL

__all__ = ["Child", "DevStack", "RedisChoice", "StackError", "choose_redis", "free_port", "http_health"]

_LOG_TAIL_LINES = 15


class StackError(RuntimeError):
    """The stack could not start or a part of it died; the message is meant for the user."""


@dataclass(frozen=True)
class RedisChoice:
    """The Redis a stack uses and a sentence saying which one it is and why."""

    url: str
    note: str


def choose_redis(
    url: str | None, *, default_url: str = DEFAULT_REDIS_URL
) -> tuple[RedisChoice, EmbeddedRedis | None]:
    """An explicit ``url`` (which must answer), else a Redis on ``default_url``, else an embedded one.

    The caller owns the returned `EmbeddedRedis` (if any) and stops it.
    """
    if url:
        if not redis_answers(url, timeout=2.0):
            hint = "start it, or unset REDIS_URL to use an embedded one"
            raise StackError(f"Redis at {url} is unreachable ({hint})")
        return RedisChoice(url, f"{url} (configured)"), None
    if redis_answers(default_url):
        return RedisChoice(default_url, f"{default_url} (already running on the default port)"), None
    embedded = EmbeddedRedis()
    try:
        embedded.start()
    except EmbeddedRedisError as e:
        raise StackError(f"no Redis configured and the embedded one failed to start: {e}") from e
    return RedisChoice(embedded.url, embedded.description), embedded


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_health(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """GET a ``/health`` URL: (True, body) when it answers 200 with status ok, else (False, why)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}: {e.read().decode(errors='replace')[:200]}"
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return False, f"no answer ({reason})"
    try:
        status = cast(dict[str, Any], json.loads(body)).get("status")
    except (ValueError, AttributeError):
        return False, f"unexpected answer: {body[:200]}"
    return (status == "ok"), body


def _quiet(_line: str) -> None:
    pass


@dataclass
class Child:
    """One process of the stack."""

    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class DevStack:
    """Redis + one Streamable HTTP server + ``workers`` worker processes; a context manager.

    ``port=None`` picks a free port. ``log_path`` collects the children's logs (stdout and stderr);
    without it they write to this process's stderr. ``say`` receives one line per step taken.
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        app: str = DEFAULT_APP,
        host: str = "127.0.0.1",
        port: int | None = None,
        redis_url: str | None = None,
        namespace: str = "mcp-tasks",
        log_level: str = "INFO",
        log_path: Path | None = None,
        extra_env: dict[str, str] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self.workers, self.app, self.host = workers, app, host
        self.port = port if port is not None else free_port(host)
        self.namespace, self.log_level, self.log_path = namespace, log_level, log_path
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self._requested_redis = redis_url
        self._extra_env = dict(extra_env or {})
        self._say: Callable[[str], None] = say or _quiet
        self._embedded: EmbeddedRedis | None = None
        self._redis: RedisChoice | None = None
        self._log: IO[bytes] | None = None
        self.server: Child | None = None
        self.worker_children: list[Child] = []
        self._stopped = False

    # -- what it runs ------------------------------------------------------------------------
    @property
    def redis(self) -> RedisChoice:
        if self._redis is None:
            raise RuntimeError("DevStack is not started")
        return self._redis

    @property
    def started(self) -> bool:
        """True once a Redis was chosen (it stays True after stop, for clean-up by the caller)."""
        return self._redis is not None

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def embedded(self) -> EmbeddedRedis | None:
        return self._embedded

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def health_url(self) -> str:
        return f"{self.base_url}/health"

    @property
    def children(self) -> list[Child]:
        """Workers first: the order they are stopped in."""
        return [*self.worker_children, *([self.server] if self.server else [])]

    def env(self) -> dict[str, str]:
        """The environment every child gets: this one, plus the stack's Redis and namespace."""
        env = dict(os.environ)
        env.update(self._extra_env)
        # Both names: Settings prefers MCP_TASKS_REDIS_URL over REDIS_URL, and either may be set.
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "MCP_TASKS_REDIS_URL": self.redis_url,
                "MCP_TASKS_NAMESPACE": self.namespace,
                "MCP_TASKS_APP": self.app,
                "MCP_TASKS_LOG_LEVEL": self.log_level,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def command(self, *args: str) -> list[str]:
        """argv of a ``mcp-tasks-redis`` subcommand run by this Python (``-m`` puts the cwd on sys.path,
        so an ``--app`` module next to the user is found as it is by the parent)."""
        return [sys.executable, "-m", "mcp_tasks_redis.ops.cli", *args]

    # -- start -------------------------------------------------------------------------------
    def start(self) -> Self:
        try:
            self._redis, self._embedded = choose_redis(self._requested_redis)
            self._say(f"redis:   {self._redis.note}")
            if self.log_path is not None:
                self._log = self.log_path.open("ab")
            serve = ["serve", "--transport", "streamable-http", "--host", self.host, "--port", str(self.port)]
            self.server = self._spawn("server", *serve)
            for i in range(1, self.workers + 1):
                self.worker_children.append(self._spawn(f"worker {i}", "worker"))
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._say(f"server:  {self.mcp_url} (pid {self.server.pid})")
        if self.worker_children:
            pids = ", ".join(str(w.pid) for w in self.worker_children)
            self._say(f"workers: {len(self.worker_children)} (pids {pids}), namespace {self.namespace!r}")
        return self

    def _spawn(self, name: str, *args: str) -> Child:
        out: IO[bytes] | None = self._log
        process = subprocess.Popen(
            self.command(*args),
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=out,  # None: inherit ours (children log to stderr)
            stderr=subprocess.STDOUT if out is not None else None,
            # Own process group: a Ctrl-C in the terminal reaches only us, and we stop the children
            # in order (workers first, so they hand their tasks back while Redis is still up).
            process_group=0,
            preexec_fn=die_with_parent(),
        )
        return Child(name, process)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        server_ok, why = False, "not started"
        while True:
            self.check_alive()
            if not server_ok:
                server_ok, why = http_health(self.health_url, timeout=1.0)
            reported = self.reported_workers() if server_ok else set[int]()
            if server_ok and len(reported) >= len(self.worker_children):
                return
            if time.monotonic() > deadline:
                missing = (
                    "server /health: " + why
                    if not server_ok
                    else (f"{len(self.worker_children) - len(reported)} worker(s) never reported in")
                )
                raise StackError(
                    f"the stack did not come up within {self.start_timeout:g}s ({missing})" + self._log_tail()
                )
            time.sleep(0.1)

    def reported_workers(self) -> set[int]:
        """Pids of this stack's workers that have a live health report in Redis."""
        keys = KeySpace(self.namespace)
        ours = {w.pid for w in self.worker_children}
        try:
            client: Any = cast(Any, redis.Redis).from_url(self.redis_url, socket_timeout=2)
            with contextlib.closing(client):
                members: list[bytes] = client.zrange(keys.workers, 0, -1)
                # Worker ids are host:pid:random; only a live health key counts, not a stale member.
                live = [m.decode() for m in members if client.exists(keys.worker(m.decode()))]
        except (redis.exceptions.RedisError, OSError):
            return set()
        pids = {int(p) for w in live if len(parts := w.split(":")) >= 3 and (p := parts[-2]).isdigit()}
        return pids & ours

    def check_alive(self) -> None:
        """Raise `StackError` if any child has exited."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise StackError(f"{child.name} (pid {child.pid}) exited with code {code}" + self._log_tail())

    def _log_tail(self) -> str:
        if self.log_path is None:
            return ""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError:
            return ""
        return f"; last lines of {self.log_path}:\n" + "\n".join(lines) if lines else ""

    def wait(self, poll: float = 0.5) -> Child:
        """Block until a child exits on its own; return it. (Ctrl-C / SIGTERM interrupt this.)"""
        while True:
            for child in self.children:
                if not child.alive:
                    return child
            time.sleep(poll)

    # -- stop --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Workers (SIGTERM, bounded wait, SIGKILL), then the server, then an embedded Redis."""
        if self._stopped:
            return
        self._stopped = True
        running = [c for c in self.children if c.alive]
        if running or self._embedded is not None:
            parts = [c.name for c in running] + (["embedded Redis"] if self._embedded is not None else [])
            self._say(f"stopping: {', '.join(parts)}")
        with _hurry_on_signal() as hurry:
            _terminate([w.process for w in self.worker_children], self.stop_timeout, hurry)
            if self.server is not None:
                _terminate([self.server.process], self.stop_timeout, hurry)
        if self._embedded is not None:
            self._embedded.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def _hurry_on_signal() -> Generator[threading.Event]:
    """While stopping, another Ctrl-C or SIGTERM means "kill them now", not an aborted clean-up."""
    hurry = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hurry
        return

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        hurry.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield hurry
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _terminate(processes: list[subprocess.Popen[bytes]], timeout: float, hurry: threading.Event) -> None:
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline and not hurry.is_set():
        time.sleep(0.05)
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        process.wait()
