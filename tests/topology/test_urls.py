"""Redis URLs: ``redis+cluster://`` and ``redis+sentinel://`` next to ``redis://``, ``rediss://`` and
``unix://``; parsed (no server needed), then connected to a real cluster and Sentinel setup.

    .venv/bin/pytest tests/topology/test_urls.py
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis
import redis.cluster
from pydantic import ValidationError
from redis.asyncio.cluster import RedisCluster

from mcp_tasks_redis.engine.urls import SOCKET_TIMEOUT_S, connect, connect_sync, describe_url, parse_redis_url
from mcp_tasks_redis.ops.embedded import redis_answers
from mcp_tasks_redis.settings import Settings
from tests.topology.servers import ClusterTopology, SentinelTopology, ask, free_ports, poll

pytest_plugins = ["tests.topology.servers"]


# -- parsing -----------------------------------------------------------------------------------------


def test_cluster_url_lists_every_startup_node_with_default_port() -> None:
    url = parse_redis_url("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002/")
    assert url.kind == "cluster"
    assert url.addresses == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert dict(url.options) == {}
    assert url.describe() == "redis+cluster://10.0.0.1:7000,10.0.0.2:6379,[::1]:7002/"


def test_cluster_url_options_are_cast_like_redis_py() -> None:
    url = parse_redis_url(
        "redis+cluster://app:s%40cret@h1:7000,h2:7001?socket_timeout=2.5&socket_keepalive=false"
        "&max_connections=20&client_name=api"
    )
    assert dict(url.options) == {
        "username": "app",
        "password": "s@cret",
        "socket_timeout": 2.5,
        "socket_keepalive": False,
        "max_connections": 20,
        "client_name": "api",
    }
    assert "s@cret" not in url.describe()


@pytest.mark.parametrize("url", ["redis+cluster://h:1/0", "redis+cluster://h:1"])
def test_cluster_url_accepts_database_zero_only(url: str) -> None:
    assert parse_redis_url(url).kind == "cluster"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://h:1/2", "only database 0"),
        ("redis+cluster://h:1/?db=3", "only database 0"),
        ("redis+cluster://h:1,:2/", "missing host"),
        ("redis+cluster://h:notaport/", "bad host:port"),
        ("redis+cluster://h:1/?socket_timeout=soon", "socket_timeout"),
        ("redis+sentinel://h:1/", "service_name"),
        ("redis+sentinel://h:1", "service_name"),
        ("redis+sentinel://h:1/svc/one", "must be a number"),
        ("redis+sentinel://h:1/svc/0/extra", "service_name"),
        ("http://h:1/", "must start with one of"),
        ("redis+sentinels://h:1/svc", "must start with one of"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)


def test_bad_url_message_hides_the_password() -> None:
    with pytest.raises(ValueError, match="only database 0") as info:
        parse_redis_url("redis+cluster://user:hunter2@h:1/5")
    assert "hunter2" not in str(info.value)


def test_sentinel_url_service_db_credentials_and_sentinel_options() -> None:
    url = parse_redis_url(
        "redis+sentinel://app:pw@s1:26380,s2/my%20service/2"
        "?socket_timeout=3&sentinel_password=spw&sentinel_username=sentry&sentinel_socket_timeout=0.5"
    )
    assert url.kind == "sentinel"
    assert url.addresses == (("s1", 26380), ("s2", 26379))
    assert url.service_name == "my service"
    assert dict(url.options) == {"username": "app", "password": "pw", "db": 2, "socket_timeout": 3.0}
    assert dict(url.sentinel_options) == {"password": "spw", "username": "sentry", "socket_timeout": 0.5}
    assert url.describe() == "redis+sentinel://s1:26380,s2:26379/my service/2"


@pytest.mark.parametrize("url", ["redis://h:6379/1", "rediss://u:p@h:6380/0", "unix:///tmp/redis.sock?db=2"])
def test_single_server_urls_are_left_to_redis_py(url: str) -> None:
    parsed = parse_redis_url(url)
    assert (parsed.kind, parsed.url, parsed.addresses) == ("standalone", url, ())


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0",
        "rediss://h:6380/0",
        "unix:///tmp/redis.sock",
        "redis+cluster://h1:7000,h2:7001/",
        "redis+sentinel://s1:26379,s2:26379/mymaster",
    ],
)
def test_settings_accept_every_scheme(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h/", "redis_url must start with redis://"),
        ("redis+sentinel://s1:26379/", "service_name"),
        ("redis+cluster://h:1/4", "only database 0"),
    ],
)
def test_settings_refuse_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(redis_url=url)


def test_connect_builds_the_right_client_without_connecting() -> None:
    cluster = connect("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/?socket_timeout=9")
    assert isinstance(cluster, RedisCluster)
    assert cluster.get_connection_kwargs()["socket_timeout"] == 9.0
    sentinel = connect("redis+sentinel://127.0.0.1:26379/svc/3")
    assert isinstance(sentinel, aioredis.Redis)
    kwargs: dict[str, Any] = cast(Any, sentinel).connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["socket_timeout"]) == (3, SOCKET_TIMEOUT_S)
    assert describe_url(sentinel) == "redis+sentinel://127.0.0.1:26379/svc/3"
    plain: Any = connect("redis://127.0.0.1:6390/0")
    # Finite, and longer than any blocking read the engine makes (5 s).
    assert plain.connection_pool.connection_kwargs["socket_timeout"] == SOCKET_TIMEOUT_S > 5


# -- against real topologies -------------------------------------------------------------------------


@pytest.mark.topology
async def test_cluster_url_reaches_the_cluster(redis_cluster: ClusterTopology) -> None:
    client = connect(redis_cluster.url)
    try:
        assert isinstance(client, RedisCluster)
        # keys in every slot range: the client routes each to its master
        for tag in ("a", "b", "c", "d", "e", "f"):
            await client.set(f"url-test:{{{tag}}}", tag)
            assert await client.get(f"url-test:{{{tag}}}") == tag.encode()
        masters = {i.port for i in redis_cluster.view() if i.is_master and i.slots}
        assert {n.port for n in client.get_primaries()} == masters
        assert describe_url(client).startswith("redis+cluster://127.0.0.1:")
    finally:
        await client.aclose()
    sync_client = connect_sync(redis_cluster.url)
    try:
        assert isinstance(sync_client, redis.cluster.RedisCluster)
        assert sync_client.get("url-test:{a}") == b"a"
    finally:
        sync_client.close()
    assert redis_answers(redis_cluster.url)


@pytest.mark.topology
async def test_one_live_startup_node_is_enough(redis_cluster: ClusterTopology) -> None:
    dead = free_ports(2)
    live = redis_cluster.nodes[-1].address
    client = connect(f"redis+cluster://127.0.0.1:{dead[0]},{live},127.0.0.1:{dead[1]}/")
    try:
        await client.set("url-test:{one}", "1")
        assert await client.get("url-test:{one}") == b"1"
    finally:
        await client.aclose()


@pytest.mark.topology
async def test_sentinel_url_reaches_the_master(redis_sentinel: SentinelTopology) -> None:
    master = redis_sentinel.master()
    client: Any = connect(redis_sentinel.url + "/2")
    try:
        await client.set("url-test", "sentinel")
        info: dict[str, Any] = await client.info("replication")
        assert info["role"] == "master"
        assert client.connection_pool.connection_kwargs["db"] == 2
        direct: Any = aioredis.Redis(port=master.port, db=2)
        try:
            assert await direct.get("url-test") == b"sentinel"
        finally:
            await direct.aclose()
    finally:
        await client.aclose()
    sync_client = connect_sync(redis_sentinel.url + "/2")
    try:
        assert sync_client.get("url-test") == b"sentinel"
    finally:
        sync_client.close()
    assert redis_answers(redis_sentinel.url)


@pytest.mark.topology
async def test_closing_a_sentinel_client_closes_its_sentinel_connections(
    redis_sentinel: SentinelTopology,
) -> None:
    """The sentinel_* query options reach the connections to the sentinels (here their client name,
    seen in CLIENT LIST on the sentinels), and closing the client closes those connections too."""
    name = f"url-test-{uuid.uuid4().hex[:8]}"

    def ours() -> int:
        return sum(
            str(ask(s.port, "CLIENT", "LIST")).count(f"name={name} ") for s in redis_sentinel.sentinels
        )

    client: Any = connect(f"{redis_sentinel.url}?sentinel_client_name={name}")
    await client.ping()
    assert ours() >= 1
    await client.aclose()
    await asyncio.to_thread(poll, lambda: ours() == 0, timeout_s=5, what="the sentinel connections to close")


@pytest.mark.parametrize(
    "template", ["redis+cluster://127.0.0.1:{}/", "redis+sentinel://127.0.0.1:{}/mymaster"]
)
def test_unreachable_topologies_do_not_answer_quickly(template: str) -> None:
    """(redis-py 8 retries 3 times with back-off by default: ~8 s for a Sentinel URL, unless told not to.)"""
    url = template.format(free_ports(1)[0])
    started = time.monotonic()
    assert not redis_answers(url, timeout=0.3)
    assert time.monotonic() - started < 2
