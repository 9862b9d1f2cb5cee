"""The embedded default Redis for the dev stack, the demo and the tests.

With no ``REDIS_URL``, :func:`resolve_redis` uses a Redis already answering on the default URL, or
starts an :class:`EmbeddedRedis`: ``redis-server`` from ``PATH`` on a free loopback port, or, where
there is none, an in-process fakeredis TCP server that other processes (workers, a test's
subprocesses) reach like any Redis, Lua scripts and pub/sub included. Whatever it starts it stops:
on :meth:`EmbeddedRedis.stop`, on leaving its ``with`` block, at interpreter exit, and (Linux)
when the parent process dies.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Self, cast

import fakeredis
import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from mcp_tasks_redis.engine.urls import connect_sync
from mcp_tasks_redis.settings import DEFAULT_REDIS_URL

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "Prefer", "RedisKind", "redis_answers", "resolve_redis"]

logger = logging.getLogger(__name__)

Prefer = Literal["auto", "redis-server", "fakeredis"]
RedisKind = Literal["redis-server", "fakeredis"]

_HOST = "127.0.0.1"
_LOG_TAIL_LINES = 30
_FAKEREDIS_VERSION: str = str(getattr(fakeredis, "__version__", "?"))


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started (the message carries the reason and log tail)."""


def _sync_client(url: str, timeout: float) -> redis.Redis:
    # redis-py 5 leaves **kwargs and replies untyped
    factory = cast(Any, redis.Redis).from_url
    return cast(redis.Redis, factory(url, socket_connect_timeout=timeout, socket_timeout=timeout))


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis at ``url`` answers PING within ``timeout`` seconds, False on any error.

    Any URL the engine accepts: for ``redis+cluster://`` a node of the cluster must answer (the
    client reads the slot map from it first), for ``redis+sentinel://`` the master the sentinels
    name."""
    # No retries: an answer within `timeout` or none (redis-py 8 retries 3 times with back-off,
    # which makes an unreachable Sentinel setup take ~8 s to refuse).
    quick: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    quick["retry"] = Retry(NoBackoff(), 0)
    try:
        with contextlib.closing(connect_sync(url, **quick)) as client:
            return bool(cast(Any, client).ping())
    except (ValueError, OSError, redis.exceptions.RedisError, redis.exceptions.RedisClusterException):
        return False


def resolve_redis(
    url: str | None, *, default_url: str = DEFAULT_REDIS_URL
) -> tuple[str, EmbeddedRedis | None]:
    """Pick the Redis for a command that may run on an embedded default.

    An explicit ``url`` is used as is (never probed). Else a Redis answering on ``default_url`` is
    used. Else an :class:`EmbeddedRedis` is started and returned: the caller owns it and stops it.
    """
    if url:
        return url, None
    if redis_answers(default_url):
        return default_url, None
    embedded = EmbeddedRedis()
    embedded.start()
    return embedded.url, embedded


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` so that the child gets SIGTERM when its parent dies (Linux, main thread
    only: PR_SET_PDEATHSIG fires when the forking *thread* ends, which a worker thread soon may)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG

    return preexec


@functools.cache
def _fake_handler_class() -> type[Any] | None:
    """fakeredis' TCP request handler, patched to behave like Redis where arq and redis-py need it.

    fakeredis 2.40's handler closes the connection after any error reply (``-ERR``, ``-NOSCRIPT``):
    redis-py's ``register_script`` (EVALSHA, NOSCRIPT, EVAL on the closed connection) then fails,
    and a pipeline loses every reply after a failed command. Here the error becomes the reply and
    the connection stays open. fakeredis also has no INFO, which arq's worker calls at start-up;
    it gets a minimal INFO text.
    """
    try:
        from fakeredis._clients._tcp_server import TCPFakeRequestHandler
    except ImportError:  # pragma: no cover - a fakeredis refactor; fall back to the stock handler
        return None
    reply_errors = (redis.exceptions.ResponseError, redis.exceptions.AuthenticationError)
    info = f"# Server\r\nredis_version:7.0.0\r\nfakeredis_version:{_FAKEREDIS_VERSION}\r\n"
    info += f"redis_mode:standalone\r\nprocess_id:{os.getpid()}\r\n# Memory\r\nused_memory_human:?\r\n"

    class Handler(TCPFakeRequestHandler):
        def setup(self) -> None:
            super().setup()
            client: Any = self.current_client
            read_response: Callable[..., Any] = client.read_response

            def read_response_like_redis(*args: Any, **kwargs: Any) -> Any:
                try:
                    return read_response(*args, **kwargs)
                except reply_errors as exc:
                    return info.encode() if str(exc).startswith("unknown command 'info'") else exc

            client.read_response = read_response_like_redis

    return Handler


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"
    except OSError:
        return "(no log)"


class EmbeddedRedis:
    """A Redis this process starts on a free loopback port, and stops again.

    ``prefer="auto"`` runs ``redis-server`` from ``PATH`` and falls back to an in-process fakeredis
    TCP server when there is none (or it fails to start); ``"redis-server"`` or ``"fakeredis"``
    forces one. With ``appendonly=True`` data survives :meth:`restart` (redis-server: AOF in the
    data directory; fakeredis: kept in memory). ``data_dir`` is redis-server's ``--dir``, left in
    place; by default a temporary directory is used and removed on stop. Use as a context manager,
    or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        prefer: Prefer = "auto",
        *,
        appendonly: bool = False,
        data_dir: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.prefer: Prefer = prefer
        self.appendonly = appendonly
        self.start_timeout = start_timeout
        self._data_dir = data_dir
        self._lock = threading.RLock()
        self._kind: RedisKind | None = None
        self._port: int | None = None
        self._description = self._fallback_reason = ""
        self._binary = "redis-server"
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._fake: fakeredis.TcpFakeServer | None = None
        self._fake_thread: threading.Thread | None = None
        self._fake_data: fakeredis.FakeServer | None = None

    def _require(self) -> tuple[RedisKind, int]:
        if self._kind is None or self._port is None:
            raise RuntimeError("EmbeddedRedis is not running")
        return self._kind, self._port

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._kind is not None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def port(self) -> int:
        """The loopback TCP port it listens on."""
        return self._require()[1]

    @property
    def kind(self) -> RedisKind:
        """``"redis-server"`` (a subprocess) or ``"fakeredis"`` (in this process)."""
        return self._require()[0]

    @property
    def description(self) -> str:
        """One human line, e.g. ``redis-server 7.0.15 on 127.0.0.1:40123 (embedded, stops on exit)``."""
        self._require()
        return self._description

    @property
    def pid(self) -> int | None:
        """The redis-server process id, or None (fakeredis runs in this process)."""
        return self._process.pid if self._process is not None else None

    def __repr__(self) -> str:
        return f"<EmbeddedRedis {self._description if self._kind else 'stopped'}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> Self:
        """Start the server and wait until it answers PING; a no-op when already running."""
        with self._lock:
            if self._kind is not None:
                return self
            binary = shutil.which("redis-server")
            if self.prefer == "redis-server" and binary is None:
                raise EmbeddedRedisError("redis-server was requested but is not on PATH")
            if self.prefer == "fakeredis" or binary is None:
                self._fallback_reason = (
                    "requested" if self.prefer == "fakeredis" else "no redis-server on PATH"
                )
                self._start_fake(port=None, keep_data=False)
            else:
                try:
                    self._start_server(binary, port=None)
                except EmbeddedRedisError as exc:
                    if self.prefer == "redis-server":
                        raise
                    logger.warning("embedded redis-server failed, using fakeredis instead: %s", exc)
                    self._fallback_reason = "redis-server failed to start"
                    self._start_fake(port=None, keep_data=False)
            atexit.register(self.stop)
            logger.info("started %s", self._description)
            return self

    def stop(self) -> None:
        """Stop the server, wait until it is gone and remove its temporary directory. Idempotent."""
        with self._lock:
            atexit.unregister(self.stop)
            if self._kind is not None:
                logger.info("stopping %s", self._description)
            self._stop_server()
            self._stop_fake()
            self._fake_data = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            self._kind = self._port = None

    def restart(self) -> None:
        """Stop, then start again on the same port (redis-server: with the same data directory).

        Clients see their connections drop, as with a real Redis restart; data survives only with
        ``appendonly=True``. Used by chaos tests.
        """
        with self._lock:
            kind, port = self._require()
            try:
                if kind == "redis-server":
                    self._stop_server()
                    self._start_server(self._binary, port=port)
                else:
                    self._stop_fake()
                    self._start_fake(port=port, keep_data=self.appendonly)
            except BaseException:
                self.stop()
                raise

    def _start_server(self, binary: str, *, port: int | None) -> None:
        """Run redis-server on ``port`` (None: a free one, retried if another process takes it)."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="mcp-tasks-redis-"))
        data_dir = self._data_dir or self._workdir
        data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1 if port is not None else 3):
            try:
                self._spawn_server(binary, port if port is not None else _free_port(), data_dir)
                return
            except EmbeddedRedisError as exc:
                if port is not None or attempt == 2 or "Address already in use" not in str(exc):
                    if port is None:
                        shutil.rmtree(self._workdir, ignore_errors=True)
                        self._workdir = None
                    raise

    def _spawn_server(self, binary: str, port: int, data_dir: Path) -> None:
        assert self._workdir is not None
        log_path = self._workdir / "redis.log"
        args = [binary, "--port", str(port), "--bind", _HOST, "--daemonize", "no", "--logfile", ""]
        args += ["--save", "", "--appendonly", "yes" if self.appendonly else "no", "--dir", str(data_dir)]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for the dev stack must not kill Redis first
                preexec_fn=die_with_parent(),
            )
        url = f"redis://{_HOST}:{port}/0"
        deadline = time.monotonic() + self.start_timeout
        while not redis_answers(url, timeout=0.2) or process.poll() is not None:
            if process.poll() is not None:  # also when something else answers on the port we picked
                raise EmbeddedRedisError(
                    f"redis-server exited with code {process.returncode} while starting on port {port};"
                    f" log tail ({log_path}):\n{_log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                _terminate(process)
                raise EmbeddedRedisError(
                    f"redis-server did not answer PING on port {port} within {self.start_timeout:.1f}s;"
                    f" log tail ({log_path}):\n{_log_tail(log_path)}"
                )
            time.sleep(0.02)
        info: dict[str, Any] = {}
        with contextlib.suppress(redis.exceptions.RedisError), contextlib.closing(_sync_client(url, 2)) as c:
            info = cast(dict[str, Any], cast(Any, c).info("server"))
        if int(info.get("process_id", process.pid)) != process.pid:  # another Redis took the port
            _terminate(process)
            raise EmbeddedRedisError(f"port {port} was taken by another Redis: Address already in use")
        self._binary, self._process, self._port, self._kind = binary, process, port, "redis-server"
        version = info.get("redis_version", "?")
        self._description = f"redis-server {version} on {_HOST}:{port} (embedded, stops on exit)"

    def _stop_server(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            self._process = None

    def _start_fake(self, *, port: int | None, keep_data: bool) -> None:
        try:
            server = fakeredis.TcpFakeServer((_HOST, port or 0), server_version=(7, 0))
        except OSError as exc:
            raise EmbeddedRedisError(f"fakeredis could not bind {_HOST}:{port or 0}: {exc}") from exc
        server.daemon_threads = True  # an unstopped server must never hold up interpreter exit
        handler = _fake_handler_class()
        if handler is not None:
            server.RequestHandlerClass = handler
        if keep_data and self._fake_data is not None:
            server.fake_server = self._fake_data
        self._fake_data = server.fake_server
        bound = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fakeredis-{bound}",
            daemon=True,
        )
        thread.start()
        self._fake, self._fake_thread, self._port, self._kind = server, thread, bound, "fakeredis"
        if not redis_answers(self.url, timeout=2.0):
            self._stop_fake()
            self._kind = None
            raise EmbeddedRedisError(f"fakeredis TCP server on port {bound} does not answer PING")
        self._description = (
            f"fakeredis {_FAKEREDIS_VERSION} on {_HOST}:{bound}"
            f" (embedded in-process, {self._fallback_reason}; stops on exit)"
        )

    def _stop_fake(self) -> None:
        server, thread = self._fake, self._fake_thread
        self._fake = self._fake_thread = None
        if server is not None:
            server.shutdown()  # ends serve_forever and tells every connection handler to finish
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)


def _terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (Redis flushes its AOF and exits), then SIGKILL after ``timeout``; always reaps."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
