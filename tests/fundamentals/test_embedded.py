"""The embedded default Redis: both kinds start, serve other processes, restart, and leave nothing behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from mcp_tasks_redis.ops.embedded import EmbeddedRedis, EmbeddedRedisError, redis_answers, resolve_redis

HAS_REDIS_SERVER = shutil.which("redis-server") is not None
KINDS = [
    pytest.param(
        "redis-server", marks=pytest.mark.skipif(not HAS_REDIS_SERVER, reason="no redis-server on PATH")
    ),
    "fakeredis",
]


def client(url: str) -> Any:
    return cast(Any, redis.Redis).from_url(url, socket_timeout=5)


def port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_gone(embedded: EmbeddedRedis, port: int, pid: int | None, workdir: Path | None) -> None:
    assert not embedded.running
    assert not port_accepts(port), f"port {port} still accepts connections"
    if pid is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped, not just signalled
    if workdir is not None:
        assert not workdir.exists(), f"{workdir} was not removed"
    assert not [t for t in threading.enumerate() if t.name == f"fakeredis-{port}"]
    with pytest.raises(RuntimeError):
        _ = embedded.url


@pytest.mark.parametrize("kind", KINDS)
def test_starts_answers_and_leaves_nothing_running(kind: Any) -> None:
    embedded = EmbeddedRedis(kind)
    with embedded:
        assert embedded.kind == kind
        assert embedded.url == f"redis://127.0.0.1:{embedded.port}/0"
        assert embedded.description.startswith(f"{kind} ")
        assert f"127.0.0.1:{embedded.port}" in embedded.description
        assert redis_answers(embedded.url)
        port, pid, workdir = embedded.port, embedded.pid, embedded._workdir  # pyright: ignore[reportPrivateUsage]
        assert (pid is not None) == (kind == "redis-server")
    assert_gone(embedded, port, pid, workdir)
    embedded.stop()  # idempotent


@pytest.mark.parametrize("kind", KINDS)
def test_lua_scripts_pipelines_and_info_behave_like_redis(kind: Any) -> None:
    with EmbeddedRedis(kind) as embedded:
        r = client(embedded.url)
        script = "redis.call('SET', KEYS[1], ARGV[1], 'PX', 5000); return redis.call('GET', KEYS[1])"
        assert r.eval(script, 1, "k", "v") == b"v"
        assert 0 < r.pttl("k") <= 5000
        # EVALSHA -> NOSCRIPT -> EVAL must work on the same connection (stock fakeredis closes it)
        assert r.register_script("return ARGV[1] .. '!'")(args=["hi"]) == b"hi!"
        pipe = r.pipeline(transaction=False)
        pipe.set("s", "text").incr("s").get("s")
        replies = pipe.execute(raise_on_error=False)
        assert replies[0] is True
        assert isinstance(replies[1], redis.ResponseError)
        assert replies[2] == b"text"
        assert "redis_version" in r.info("server")  # arq's worker calls INFO at start-up
        r.close()


CHILD = textwrap.dedent(
    """
    import sys, redis
    r = redis.Redis.from_url(sys.argv[1], socket_timeout=10)
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"
    assert r.eval(script, 1, "ck", "cv") == b"cv"
    r.set("plain", "1")
    assert r.get("plain") == b"1"
    pubsub = r.pubsub()
    pubsub.subscribe("chan")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    print("READY", flush=True)
    message = pubsub.get_message(timeout=10)
    print(message["data"].decode() if message else "NO MESSAGE", flush=True)
    """
)


@pytest.mark.parametrize("kind", KINDS)
def test_serves_lua_and_pubsub_to_another_process(kind: Any) -> None:
    with EmbeddedRedis(kind) as embedded:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, embedded.url], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "READY"
            r = client(embedded.url)
            assert r.get("ck") == b"cv"
            # published from inside a Lua script, as the engine's state machine does
            assert r.eval("return redis.call('PUBLISH', 'chan', ARGV[1])", 0, "hello") == 1
            assert child.stdout.readline().strip() == "hello"
            assert child.wait(timeout=10) == 0
            r.close()
        finally:
            child.kill()
            child.wait()


@pytest.mark.parametrize("kind", KINDS)
def test_restart_keeps_port_and_appendonly_data(kind: Any, tmp_path: Path) -> None:
    with EmbeddedRedis(kind, appendonly=True, data_dir=tmp_path / "data") as embedded:
        port = embedded.port
        client(embedded.url).set("durable", "yes")
        embedded.restart()
        assert embedded.port == port
        assert client(embedded.url).get("durable") == b"yes"
    if kind == "redis-server":
        assert (tmp_path / "data").exists(), "a caller's data_dir is left in place"


def test_restart_without_appendonly_loses_data_fakeredis() -> None:
    with EmbeddedRedis("fakeredis") as embedded:
        client(embedded.url).set("volatile", "yes")
        embedded.restart()
        assert client(embedded.url).get("volatile") is None


def test_auto_falls_back_to_fakeredis_without_redis_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with EmbeddedRedis() as embedded:
        assert embedded.kind == "fakeredis"
        assert "no redis-server on PATH" in embedded.description
    with pytest.raises(EmbeddedRedisError, match="not on PATH"):
        EmbeddedRedis("redis-server").start()


def test_broken_redis_server_reports_log_tail_or_falls_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: cannot start, this is a stand-in'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedRedisError, match="this is a stand-in"):
        EmbeddedRedis("redis-server").start()
    with EmbeddedRedis() as embedded:
        assert embedded.kind == "fakeredis"
        assert "redis-server failed to start" in embedded.description


def test_not_running_state() -> None:
    embedded = EmbeddedRedis("fakeredis")
    assert not embedded.running
    assert "stopped" in repr(embedded)
    for attribute in ("url", "port", "kind", "description"):
        with pytest.raises(RuntimeError):
            getattr(embedded, attribute)
    with pytest.raises(RuntimeError):
        embedded.restart()


def test_redis_answers_is_false_when_nothing_listens() -> None:
    assert not redis_answers(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    assert not redis_answers("not a url")


def test_resolve_prefers_explicit_url() -> None:
    # never probed: an unreachable explicit URL is returned as is, nothing is started
    assert resolve_redis("redis://unreachable.invalid:1/0") == ("redis://unreachable.invalid:1/0", None)


def test_resolve_uses_a_default_that_answers() -> None:
    with EmbeddedRedis("fakeredis") as embedded:
        assert resolve_redis(None, default_url=embedded.url) == (embedded.url, None)


def test_resolve_starts_embedded_when_default_is_silent() -> None:
    url, embedded = resolve_redis(None, default_url=f"redis://127.0.0.1:{free_port()}/0")
    assert embedded is not None
    try:
        assert url == embedded.url
        assert redis_answers(url)
    finally:
        embedded.stop()
    assert not embedded.running
