"""Pytest plugin: the Redis the tests run against, per-test key namespaces, and Redis clients.

Register it from ``tests/conftest.py`` (``pytest_plugins = ["redis_fixtures"]``, with ``tests/`` on
``sys.path``, as pytest's default rootdir-relative import arranges for a ``tests/`` without
``__init__.py``).

Which Redis (decided once per session, shown in the pytest header):
1. ``MCP_TASKS_TEST_REDIS_URL`` when set and not empty;
2. with ``MCP_TASKS_TEST_NO_REDIS=1``: an embedded fakeredis TCP server, never anything else;
3. a Redis answering on 127.0.0.1:6379;
4. an :class:`EmbeddedRedis` started on first use (redis-server from PATH, else fakeredis) and
   stopped at the end of the session.

Fixtures: ``redis_url`` and ``redis_kind`` (session), ``namespace`` (a fresh key prefix per test,
deleted afterwards, with the key-hygiene check), ``redis`` (an async client on ``redis_url``) and
``fake_redis`` (an in-process fakeredis async client with Lua, for fast unit tests).

Key hygiene: when a test that used ``namespace`` ends, every key under ``{namespace}:`` must have a
TTL, except keys ending in one of :data:`HYGIENE_EXEMPT_SUFFIXES`; otherwise the test errors at
teardown with the key names. ``@pytest.mark.no_key_hygiene`` opts a test out. The check is skipped
when the test itself already failed. Only the namespace's own keys are deleted: this plugin never
flushes a Redis.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast
from uuid import uuid4

import fakeredis
import pytest
import pytest_asyncio
from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis

from mcp_tasks_redis.ops.embedded import EmbeddedRedis, redis_answers

HYGIENE_EXEMPT_SUFFIXES: tuple[str, ...] = (":q", ":q:high", ":q:low")
"""Key-name endings allowed to exist without a TTL: the shards' dispatch streams, which carry the
workers' consumer group for the deployment's whole life (their entries are deleted as jobs end;
tests/fundamentals/test_dispatch.py checks that)."""

ENV_REDIS_URL = "MCP_TASKS_TEST_REDIS_URL"
ENV_NO_REDIS = "MCP_TASKS_TEST_NO_REDIS"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"

RedisTestKind = Literal["external", "local", "redis-server", "fakeredis"]
"""``external``: MCP_TASKS_TEST_REDIS_URL; ``local``: 127.0.0.1:6379; else the embedded kind."""


@dataclass
class _Plan:
    kind: RedisTestKind
    url: str | None  # None: start an EmbeddedRedis of `kind` on first use
    note: str
    started: str = ""  # description of the embedded Redis once started


_PLAN = pytest.StashKey[_Plan]()
_CALL_FAILED = pytest.StashKey[bool]()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _make_plan() -> _Plan:
    url = os.environ.get(ENV_REDIS_URL, "").strip()
    if url:
        return _Plan("external", url, f"{url} (from {ENV_REDIS_URL})")
    if _flag(ENV_NO_REDIS):
        return _Plan("fakeredis", None, f"embedded fakeredis ({ENV_NO_REDIS}=1), started on first use")
    if redis_answers(LOCAL_REDIS_URL):
        return _Plan("local", LOCAL_REDIS_URL, f"{LOCAL_REDIS_URL} (answering locally)")
    if shutil.which("redis-server"):
        return _Plan("redis-server", None, "embedded redis-server from PATH, started on first use")
    return _Plan("fakeredis", None, "embedded fakeredis (no redis-server on PATH), started on first use")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "no_key_hygiene: do not require a TTL on every key the test leaves in its namespace"
    )
    config.stash[_PLAN] = _make_plan()


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"redis: {config.stash[_PLAN].note}"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    plan = config.stash.get(_PLAN, None)
    if plan is not None and plan.started:
        terminalreporter.write_line(f"redis: {plan.started}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(scope="session")
def _redis_target(pytestconfig: pytest.Config) -> Iterator[tuple[str, RedisTestKind]]:
    plan = pytestconfig.stash[_PLAN]
    if plan.url is not None:
        yield plan.url, plan.kind
        return
    prefer: Literal["auto", "fakeredis"] = "fakeredis" if plan.kind == "fakeredis" else "auto"
    with EmbeddedRedis(prefer) as embedded:
        plan.started = embedded.description
        yield embedded.url, embedded.kind


@pytest.fixture(scope="session")
def redis_url(_redis_target: tuple[str, RedisTestKind]) -> str:
    """URL of the session's Redis (see the module docstring for how it is chosen)."""
    return _redis_target[0]


@pytest.fixture(scope="session")
def redis_kind(_redis_target: tuple[str, RedisTestKind]) -> RedisTestKind:
    """Which Redis ``redis_url`` is: ``external``, ``local``, ``redis-server`` or ``fakeredis``."""
    return _redis_target[1]


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def namespace_keys(client: SyncRedis, namespace: str) -> list[bytes]:
    """Every key under ``{namespace}:`` (SCAN MATCH, never KEYS)."""
    scan = cast(Any, client).scan_iter  # redis-py 5 leaves **kwargs untyped
    return [bytes(key) for key in scan(match=f"{_glob_escape(namespace)}:*", count=1000)]


def keys_without_ttl(client: SyncRedis, keys: list[bytes]) -> list[str]:
    """Names of ``keys`` that exist with no TTL and do not end in an exempt suffix."""
    pipe = cast(Any, client).pipeline(transaction=False)
    for key in keys:
        pipe.pttl(key)
    ttls: list[int] = pipe.execute()
    names = [key.decode(errors="replace") for key, ttl in zip(keys, ttls, strict=True) if ttl == -1]
    return sorted(name for name in names if not name.endswith(HYGIENE_EXEMPT_SUFFIXES))


def delete_keys(client: SyncRedis, keys: list[bytes], batch: int = 500) -> None:
    for start in range(0, len(keys), batch):
        client.delete(*keys[start : start + batch])


@pytest.fixture
def namespace(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    """A key namespace of this test alone; its keys are checked for TTLs and deleted afterwards."""
    ns = f"t-{uuid4().hex[:12]}"
    yield ns
    check = request.node.get_closest_marker("no_key_hygiene") is None and not request.node.stash.get(
        _CALL_FAILED, False
    )
    client: SyncRedis = cast(Any, SyncRedis).from_url(redis_url, socket_timeout=10)
    try:
        keys = namespace_keys(client, ns)
        offenders = keys_without_ttl(client, keys) if check and keys else []
        delete_keys(client, keys)
    finally:
        client.close()
    if offenders:
        pytest.fail(
            f"key hygiene: {len(offenders)} key(s) under {ns}:* have no TTL: {', '.join(offenders)}"
            " (give them a TTL, list a suffix in HYGIENE_EXEMPT_SUFFIXES, or mark the test"
            " @pytest.mark.no_key_hygiene)",
            pytrace=False,
        )


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[AsyncRedis]:
    """An async client (bytes replies) on the session's Redis, closed after the test."""
    client: AsyncRedis = cast(Any, AsyncRedis).from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def fake_redis() -> AsyncIterator[AsyncRedis]:
    """A fresh in-process fakeredis async client (Lua via lupa), sharing nothing with other tests."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(version=(7, 0)), decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()
