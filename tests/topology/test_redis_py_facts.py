"""What redis-py and Redis 7.0 do on a real Redis Cluster and Sentinel setup: the facts the engine's
cluster and Sentinel paths are designed on (docs/topology-notes.md). Each test pins one behaviour,
so a redis-py or Redis upgrade that changes it fails here first. Where redis-py majors differ
(5.x / 6.x / 7.x against 8.x), the expectation says which.

    .venv/bin/pytest tests/topology/test_redis_py_facts.py
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from mcp_tasks_redis.engine.urls import connect
from tests.topology.servers import (
    ClusterTopology,
    RedisProcess,
    SentinelTopology,
    ask,
    info,
    key_slot,
)

pytest_plugins = ["tests.topology.servers"]

pytestmark = [pytest.mark.topology, pytest.mark.timeout(120)]

REDIS_PY = tuple(int(part) for part in redis.__version__.split(".")[:2])


def tag() -> str:
    """A fresh hash tag, so tests sharing the session's topology never share keys."""
    return uuid.uuid4().hex[:10]


# The clients are typed Any here: these tests probe what redis-py does at run time, across majors
# whose type hints differ (and are partly unknown to pyright).


def cluster_client(topology: ClusterTopology, **options: Any) -> Any:
    client = connect(topology.url, **options)
    assert isinstance(client, RedisCluster)
    return client


def sentinel_client(topology: SentinelTopology, **options: Any) -> Any:
    client = connect(topology.url, **options)
    assert isinstance(client, aioredis.Redis)
    return client


def plain_client(port: int) -> Any:
    """A plain client on one node (no cluster routing, no Sentinel)."""
    return aioredis.Redis(host="127.0.0.1", port=port)


async def until(check: Callable[[], Awaitable[Any]], *, timeout_s: float, what: str) -> Any:
    """Await ``check()`` until it returns something truthy (Redis errors count as "not yet")."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = await check()
        except (RedisError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def key_on(topology: ClusterTopology, node: RedisProcess, *, not_slot: int | None = None) -> str:
    """A key whose slot ``node`` serves (and that is not in ``not_slot``)."""
    for i in range(100_000):
        key = f"facts:{{n{i}}}"
        slot = key_slot(key.encode())
        if slot != not_slot and topology.master_for_slot(slot) is node:
            return key
    raise AssertionError(f"no key found on {node}")


# -- cluster: scripts ----------------------------------------------------------------------------------


async def test_eval_and_evalsha_route_by_the_first_keys_slot(redis_cluster: ClusterTopology) -> None:
    t = tag()
    keys = [f"ns:{{{t}}}:a", f"ns:{{{t}}}:b"]
    source = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); return ARGV[1]"
    client = cluster_client(redis_cluster)
    owner = plain_client(redis_cluster.master_for_key(keys[0]).port)
    try:
        assert await client.eval(source, 2, *keys, "by-eval") == b"by-eval"
        assert await owner.mget(keys) == [b"by-eval", b"by-eval"]
        sha = await client.script_load(source)
        assert await client.evalsha(sha, 2, *keys, "by-evalsha") == b"by-evalsha"
        assert await owner.mget(keys) == [b"by-evalsha", b"by-evalsha"]
    finally:
        await client.aclose()
        await owner.aclose()


async def test_keys_of_two_slots_in_one_script_are_refused(redis_cluster: ClusterTopology) -> None:
    """Refused before it runs: by the client (RedisClusterException, which is *not* a RedisError), or
    by the server (ClusterCrossSlotError, a ResponseError) when redis-py 8 sends the very first
    command of a client that has not read the slot map yet."""
    t = tag()
    keys = [f"ns:{{{t}}}:a", f"ns:{{{t}x}}:b"]
    source = "redis.call('SET', KEYS[1], 'x'); return 1"
    fresh, initialized = cluster_client(redis_cluster), cluster_client(redis_cluster)
    try:
        with pytest.raises((RedisClusterException, ResponseError), match=r"same (key )?slot"):
            await fresh.eval(source, 2, *keys)
        await initialized.initialize()
        with pytest.raises(RedisClusterException, match="all keys must map to the same key slot"):
            await initialized.eval(source, 2, *keys)
        assert not issubclass(RedisClusterException, RedisError)
        assert await initialized.exists(keys[0]) == 0
    finally:
        await fresh.aclose()
        await initialized.aclose()


@pytest.mark.parametrize("shebang", ["", "#!lua\n"], ids=["plain", "shebang"])
async def test_scripts_touching_keys_not_in_keys(redis_cluster: ClusterTopology, shebang: str) -> None:
    """A key name built inside Lua: Redis 7.0 lets a plain script touch any key of its node (it
    breaks only when the key lives on another node, i.e. it depends on where the slots happen to
    be); a ``#!lua`` script may touch only keys of the declared key's slot. Neither catches an
    undeclared key of the same slot."""
    t = tag()
    declared = f"ns:{{{t}}}:record"
    owner = redis_cluster.master_for_key(declared)
    same_slot = f"ns:{{{t}}}:undeclared"
    other_slot_same_node = key_on(redis_cluster, owner, not_slot=key_slot(declared.encode()))
    other_node = key_on(
        redis_cluster, next(n for n in redis_cluster.nodes if n is not owner and _is_master(redis_cluster, n))
    )
    source = shebang + "return redis.call('SET', ARGV[1], 'x')"
    client = cluster_client(redis_cluster)
    try:
        assert await client.eval(source, 1, declared, same_slot) == b"OK"
        if shebang:
            with pytest.raises(ResponseError, match="do not hash to the same slot"):
                await client.eval(source, 1, declared, other_slot_same_node)
        else:
            assert await client.eval(source, 1, declared, other_slot_same_node) == b"OK"
        with pytest.raises(ResponseError, match=r"non local key|do not hash to the same slot"):
            await client.eval(source, 1, declared, other_node)
    finally:
        await client.aclose()


def _is_master(topology: ClusterTopology, node: RedisProcess) -> bool:
    return any(i.port == node.port and i.is_master and i.slots for i in topology.view())


# -- cluster: pipelines ---------------------------------------------------------------------------------


async def test_pipelines_across_slots_and_transactions(redis_cluster: ClusterTopology) -> None:
    """A plain pipeline may mix slots (redis-py splits it per node, keeps the order of replies); a
    transaction must keep to one slot, and redis-py 5.x refuses cluster transactions altogether."""
    t = tag()
    client = cluster_client(redis_cluster)
    try:
        pipe = client.pipeline()
        for i in range(9):
            pipe.set(f"p:{{{t}{i}}}", i)
        for i in range(9):
            pipe.get(f"p:{{{t}{i}}}")
        assert len({key_slot(f"p:{{{t}{i}}}".encode()) for i in range(9)}) > 1
        assert await pipe.execute() == [True] * 9 + [str(i).encode() for i in range(9)]

        if REDIS_PY < (6, 0):
            with pytest.raises(RedisClusterException, match="transaction is deprecated"):
                client.pipeline(transaction=True)
        else:
            same_slot: Any = client.pipeline(transaction=True)
            same_slot.set(f"t:{{{t}}}:a", 1)
            same_slot.incr(f"t:{{{t}}}:b")
            cross_slot: Any = client.pipeline(transaction=True)
            cross_slot.set(f"t:{{{t}}}:a", 1)
            cross_slot.incr(f"t:{{{t}x}}:b")
            assert await same_slot.execute() == [True, 1]
            with pytest.raises(RedisClusterException, match="same slot"):
                await cross_slot.execute()
    finally:
        await client.aclose()


# -- cluster: streams -----------------------------------------------------------------------------------


async def test_blocked_xreadgroup_is_woken_by_xadd_on_the_same_key(redis_cluster: ClusterTopology) -> None:
    stream = f"ns:{{{tag()}}}:jobs"
    owner = redis_cluster.master_for_key(stream)
    reader, writer = cluster_client(redis_cluster), cluster_client(redis_cluster)
    try:
        await reader.xgroup_create(stream, "workers", id="$", mkstream=True)
        read = asyncio.create_task(reader.xreadgroup("workers", "w1", {stream: ">"}, count=1, block=10_000))
        await until(
            lambda: asyncio.to_thread(lambda: int(info(owner.port, "clients")["blocked_clients"]) >= 1),
            timeout_s=5,
            what="the read to block on the stream's master",
        )
        added_at = time.monotonic()
        entry_id = await writer.xadd(stream, {"task": "t1"})
        got = await asyncio.wait_for(read, timeout=5)
        assert time.monotonic() - added_at < 1.0
        assert got == [[stream.encode(), [(entry_id, {b"task": b"t1"})]]]
    finally:
        await reader.aclose()
        await writer.aclose()


async def test_master_death_under_a_blocked_read_scripts_and_streams(redis_cluster: ClusterTopology) -> None:
    """The master of a stream's slot is SIGKILLed while a read is blocked on it: the read fails at
    once with ConnectionError (redis-py does not wait for the failover), so does every command for
    that slot until a replica is promoted, then the same client re-routes by itself; the consumer
    group and its pending entry survive (they were replicated); the script cache does not
    (NoScriptError, then EVAL works and the SHA is known again)."""
    t = tag()
    stream, record = f"ns:{{{t}}}:jobs", f"ns:{{{t}}}:record"
    source = "return redis.call('INCR', KEYS[1])"
    client = cluster_client(redis_cluster)
    try:
        await client.xgroup_create(stream, "workers", id="$", mkstream=True)
        entry_id = await client.xadd(stream, {"task": "t1"})
        assert await client.xreadgroup("workers", "w1", {stream: ">"}, count=1) != []
        sha = await client.script_load(source)
        assert await client.evalsha(sha, 1, record) == 1
        blocked = asyncio.create_task(
            client.xreadgroup("workers", "w1", {stream: ">"}, count=1, block=30_000)
        )
        owner = redis_cluster.master_for_key(stream)
        await until(
            lambda: asyncio.to_thread(lambda: int(info(owner.port, "clients")["blocked_clients"]) >= 1),
            timeout_s=5,
            what="the read to block",
        )
        old = redis_cluster.kill_master(stream)
        killed_at = time.monotonic()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(blocked, timeout=10)
        read_failed_after = time.monotonic() - killed_at

        errors: collections.Counter[str] = collections.Counter()
        promoted = asyncio.create_task(redis_cluster.wait_for_failover_async(stream, old))
        while True:
            try:
                await client.incr(record)
                break
            except RedisConnectionError as exc:
                errors[type(exc).__name__] += 1
                assert time.monotonic() - killed_at < 20, f"no success 20 s after the kill: {errors}"
                await asyncio.sleep(0.05)
        served_after = time.monotonic() - killed_at
        await promoted
        assert read_failed_after < 1.5, (
            f"the blocked read failed only {read_failed_after:.2f} s after the kill"
        )
        assert errors, "no error at all between the kill and the promotion"
        assert served_after < 10, f"first success {served_after:.2f} s after the kill"

        groups = await client.xinfo_groups(stream)
        assert [(g["name"], g["pending"]) for g in groups] == [(b"workers", 1)]
        pending = await client.xpending_range(stream, "workers", min="-", max="+", count=10)
        assert [p["message_id"] for p in pending] == [entry_id]
        with pytest.raises(NoScriptError):
            await client.evalsha(sha, 1, record)
        assert await client.eval(source, 1, record) == 3
        assert await client.evalsha(sha, 1, record) == 4
    finally:
        await client.aclose()


# -- cluster: pub/sub -----------------------------------------------------------------------------------


def test_the_asyncio_cluster_client_has_pubsub_from_redis_py_8() -> None:
    """Before redis-py 8.0 (5.3, 6.4, 7.0, 7.4 checked) the asyncio RedisCluster has no pubsub(),
    publish() or spublish(): a subscriber is a plain connection to one node, and PUBLISH goes
    through execute_command or a script."""
    for name in ("pubsub", "publish", "spublish"):
        assert hasattr(RedisCluster, name) == (REDIS_PY >= (8, 0)), name


async def test_publish_through_execute_command_on_any_redis_py(redis_cluster: ClusterTopology) -> None:
    channel = f"events:{tag()}"
    subscriber = plain_client(redis_cluster.nodes[0].port)
    pubsub = subscriber.pubsub()
    client = cluster_client(redis_cluster)
    try:
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1)
        await client.execute_command("PUBLISH", channel, "via-execute-command")
        message = await _next_message(pubsub)
        assert message is not None
        assert message["data"] == b"via-execute-command"
    finally:
        await pubsub.aclose()
        await subscriber.aclose()
        await client.aclose()


async def _next_message(
    pubsub: Any, *, sharded: bool = False, timeout_s: float = 5.0
) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sharded:
            message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.1)
        else:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            return cast(dict[str, Any], message)
    return None


async def test_classic_publish_from_lua_reaches_subscribers_on_every_node(
    redis_cluster: ClusterTopology,
) -> None:
    """PUBLISH (here from a script on one master) is broadcast over the cluster bus: a plain
    connection to any node, master or replica, receives it. Its reply counts only the publishing
    node's own subscribers."""
    channel = f"events:{tag()}"
    subscribers = [plain_client(node.port) for node in redis_cluster.nodes]
    pubsubs = [s.pubsub() for s in subscribers]
    client = cluster_client(redis_cluster)
    try:
        for pubsub in pubsubs:
            await pubsub.subscribe(channel)
            assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"  # type: ignore[index]
        key = f"ns:{{{tag()}}}:record"
        receivers = await client.eval(
            "return redis.call('PUBLISH', ARGV[1], ARGV[2])", 1, key, channel, "hello"
        )
        assert receivers == 1  # the subscriber on the publishing node only
        for pubsub in pubsubs:
            message = await _next_message(pubsub)
            assert message is not None
            assert message["data"] == b"hello"
    finally:
        for pubsub in pubsubs:
            await pubsub.aclose()
        for subscriber in subscribers:
            await subscriber.aclose()
        await client.aclose()


@pytest.mark.skipif(REDIS_PY < (8, 0), reason="the asyncio cluster client has pubsub() from redis-py 8")
async def test_sharded_publish_from_lua(redis_cluster: ClusterTopology) -> None:
    """SPUBLISH works in a script when its channel is passed in KEYS (the channel is a key for the
    slot check); the asyncio ClusterPubSub SSUBSCRIBEs on the channel's shard."""
    t = tag()
    channel = f"ns:{{{t}}}:events"
    client = cluster_client(redis_cluster)
    await client.initialize()  # ClusterPubSub does not read the slot map itself (SlotNotCoveredError)
    pubsub: Any = client.pubsub()
    try:
        await pubsub.ssubscribe(channel)
        published = await client.eval(
            "return redis.call('SPUBLISH', KEYS[1], ARGV[1])", 1, channel, "sharded"
        )
        assert published == 1
        message = await _next_message(pubsub, sharded=True)
        assert message is not None
        assert (message["type"], message["data"]) == ("smessage", b"sharded")
        owner = redis_cluster.master_for_key(channel)
        undeclared = key_on(redis_cluster, owner, not_slot=key_slot(channel.encode()))
        with pytest.raises(ResponseError, match="do not hash to the same slot"):
            await client.eval("#!lua\nreturn redis.call('SPUBLISH', ARGV[1], 'x')", 1, channel, undeclared)
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_subscriptions_when_a_master_dies(redis_cluster: ClusterTopology) -> None:
    """A plain connection subscribed on the dead master fails with ConnectionError and never
    recovers by itself (it reconnects only to that address); one subscribed on another node keeps
    receiving PUBLISH through the failover; from redis-py 8, a sharded ClusterPubSub subscribes
    again on the slot's new master by itself."""
    t = tag()
    channel, shard_channel = f"events:{t}", f"ns:{{{t}}}:events"
    victim = redis_cluster.master_for_key(shard_channel)
    bystander = next(n for n in redis_cluster.nodes if n is not victim and _is_master(redis_cluster, n))
    on_victim, on_bystander = plain_client(victim.port), plain_client(bystander.port)
    sub_victim, sub_bystander = on_victim.pubsub(), on_bystander.pubsub()
    client = cluster_client(redis_cluster)
    await client.initialize()
    sharded: Any = client.pubsub() if REDIS_PY >= (8, 0) else None
    try:
        await sub_victim.subscribe(channel)
        await sub_bystander.subscribe(channel)
        if sharded is not None:
            await sharded.ssubscribe(shard_channel)
            await sharded.get_sharded_message(timeout=1)
        for pubsub in (sub_victim, sub_bystander):
            await pubsub.get_message(timeout=1)

        old = redis_cluster.kill_master(shard_channel)
        await redis_cluster.wait_for_failover_async(shard_channel, old)
        await client.execute_command("PUBLISH", channel, "after")
        message = await _next_message(sub_bystander)
        assert message is not None
        assert message["data"] == b"after"
        with pytest.raises(RedisConnectionError):
            await sub_victim.get_message(timeout=1)
        with pytest.raises(RedisConnectionError):
            await sub_victim.get_message(timeout=1)

        if sharded is not None:
            received = None
            deadline = time.monotonic() + 10
            while received is None and time.monotonic() < deadline:
                await client.spublish(shard_channel, "sharded-after")
                try:
                    received = await _next_message(sharded, sharded=True, timeout_s=0.3)
                except RedisConnectionError:
                    await asyncio.sleep(0.1)
            assert received is not None
            assert received["data"] == b"sharded-after"
    finally:
        if sharded is not None:
            await sharded.aclose()
        for pubsub in (sub_victim, sub_bystander):
            await pubsub.aclose()
        await on_victim.aclose()
        await on_bystander.aclose()
        await client.aclose()


# -- socket timeouts and protocol ---------------------------------------------------------------------


def test_redis_py_default_socket_timeout() -> None:
    """redis-py 8 gives every client a 5 s read timeout (5.x-7.x: none), which cuts a longer BLOCK
    short; connect() sets none (see test_urls)."""
    expected = 5 if REDIS_PY >= (8, 0) else None
    classes: list[Any] = [aioredis.Redis, RedisCluster]
    for cls in classes:
        assert inspect.signature(cls.__init__).parameters["socket_timeout"].default == expected


async def test_a_block_longer_than_the_socket_timeout_fails(
    redis_cluster: ClusterTopology, redis_sentinel: SentinelTopology
) -> None:
    """No redis-py in range extends the read timeout for XREADGROUP BLOCK: a block longer than
    socket_timeout raises TimeoutError (after the client's own retries); connect()'s default (a
    read timeout above the engine's longest block) waits the block out."""
    stream = f"ns:{{{tag()}}}:jobs"
    for url in (redis_cluster.url, redis_sentinel.url):
        short, default = connect(url, socket_timeout=0.3), connect(url)
        try:
            await default.xgroup_create(stream, "workers", id="$", mkstream=True)
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                await short.xreadgroup("workers", "w1", {stream: ">"}, count=1, block=1500)
            assert time.monotonic() - started < 30
            started = time.monotonic()
            assert await default.xreadgroup("workers", "w1", {stream: ">"}, count=1, block=1500) == []
            assert 1.4 < time.monotonic() - started < 3
        finally:
            await short.aclose()
            await default.aclose()


async def test_redis_py_8_speaks_resp3_with_resp2_shaped_replies(redis_cluster: ClusterTopology) -> None:
    stream = f"ns:{{{tag()}}}:jobs"
    client = cluster_client(redis_cluster)
    try:
        await client.initialize()
        client_info = await client.execute_command(
            "CLIENT", "INFO", target_nodes=client.get_node_from_key(stream)
        )
        text = client_info.decode() if isinstance(client_info, bytes) else str(client_info)
        assert f"resp={3 if REDIS_PY >= (8, 0) else 2}" in text
        await client.xgroup_create(stream, "workers", id="$", mkstream=True)
        entry_id = await client.xadd(stream, {"f": "v"})
        got = await client.xreadgroup("workers", "w1", {stream: ">"}, count=1)
        assert got == [[stream.encode(), [(entry_id, {b"f": b"v"})]]]
        assert await client.eval("return {1, 'x', {2}, false}", 1, stream) == [1, b"x", [2], None]
    finally:
        await client.aclose()


# -- Sentinel ------------------------------------------------------------------------------------------


async def test_sentinel_master_sigkill_errors_and_recovery(redis_sentinel: SentinelTopology) -> None:
    """Commands in flight and after a master SIGKILL fail with ConnectionError (connection refused
    while the sentinels still name the dead master, then MasterNotFoundError, a ConnectionError,
    while they agree it is down), never ReadOnlyError or TimeoutError; the same client works again
    shortly after the promotion. A pub/sub connection from master_for subscribes again on the new
    master by itself."""
    client, publisher = sentinel_client(redis_sentinel), sentinel_client(redis_sentinel)
    subscriber = sentinel_client(redis_sentinel)
    pubsub = subscriber.pubsub()
    try:
        await client.set("facts:counter", 0)
        await pubsub.subscribe("facts:events")
        await pubsub.get_message(timeout=1)
        old = redis_sentinel.kill_master()
        killed_at = time.monotonic()
        promoted = asyncio.create_task(redis_sentinel.wait_for_failover_async(old))
        errors: collections.Counter[str] = collections.Counter()
        while True:
            try:
                await client.incr("facts:counter")
                break
            except RedisConnectionError as exc:
                errors[type(exc).__name__] += 1
                assert time.monotonic() - killed_at < 20, f"no success 20 s after the kill: {errors}"
                await asyncio.sleep(0.05)
        served_after = time.monotonic() - killed_at
        await promoted
        promoted_after = time.monotonic() - killed_at
        assert errors, "no error at all between the kill and the promotion"
        assert set(errors) <= {"ConnectionError", "MasterNotFoundError"}, errors
        assert served_after < promoted_after + 3

        received = None
        deadline = time.monotonic() + 10
        while received is None and time.monotonic() < deadline:
            await publisher.publish("facts:events", "after-failover")
            try:
                received = await _next_message(pubsub, timeout_s=0.3)
            except RedisConnectionError:
                await asyncio.sleep(0.1)
        assert received is not None
        assert received["data"] == b"after-failover"
    finally:
        await pubsub.aclose()
        for c in (client, publisher, subscriber):
            await c.aclose()


@pytest.mark.slow
async def test_sentinel_manual_failover_leaves_clients_on_the_old_master(
    redis_sentinel: SentinelTopology,
) -> None:
    """SENTINEL FAILOVER with the old master alive: the replica is promoted at once, but the old
    master stays a master until a sentinel converts it (~10 s later), and a master_for client keeps
    writing to it over its open connection; those acknowledged writes are gone afterwards."""
    client = sentinel_client(redis_sentinel)
    try:
        old = redis_sentinel.master()
        await client.set("facts:before", 1)
        assert (
            ask(redis_sentinel.sentinels[0].port, "SENTINEL", "FAILOVER", redis_sentinel.service_name) == "OK"
        )
        new = await redis_sentinel.wait_for_failover_async(old)
        acked: list[str] = []
        while await asyncio.to_thread(lambda: info(old.port, "replication")["role"]) == "master":
            key = f"facts:split:{len(acked)}"
            await client.set(key, 1)
            acked.append(key)
            assert len(acked) < 100_000
            await asyncio.sleep(0.01)
        assert acked, "the old master was demoted before any write reached it"
        on_new = plain_client(new.port)
        try:
            await until(lambda: on_new.exists("facts:before"), timeout_s=5, what="replicated data")
            assert await on_new.exists(*acked) == 0
        finally:
            await on_new.aclose()
    finally:
        await client.aclose()


async def test_wait_tells_which_writes_survive_a_master_sigkill(redis_sentinel: SentinelTopology) -> None:
    """With the replica lagging (stopped for 0.3 s), a master SIGKILL loses writes it acknowledged.
    A write followed by WAIT 1 100 on the same connection (one pipeline) that WAIT confirmed (>= 1)
    is never among them; WAIT answers 0 for the writes the replica did not get."""
    client = sentinel_client(redis_sentinel)
    acked: dict[str, int | None] = {}
    stop = asyncio.Event()

    async def writer(name: str, with_wait: bool) -> None:
        batch_no = 0
        while not stop.is_set():
            keys = [f"facts:{name}:{batch_no}:{i}" for i in range(100)]
            pipe: Any = client.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, "x" * 1000)
            if with_wait:
                pipe.execute_command("WAIT", 1, 100)
            try:
                replies = await pipe.execute()
            except RedisConnectionError:
                await asyncio.sleep(0.05)
                continue
            for key in keys:
                acked[key] = int(replies[-1]) if with_wait else None
            batch_no += 1

    try:
        writers = [
            asyncio.create_task(writer(f"{mode}{i}", mode == "wait"))
            for mode in ("plain", "wait")
            for i in range(4)
        ]
        await until(lambda: asyncio.sleep(0.05, len(acked) > 20_000), timeout_s=20, what="writes to pile up")
        replica = next(n for n in redis_sentinel.data_nodes if n is not redis_sentinel.master())
        assert replica.popen is not None
        replica.popen.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(0.3)  # the lag itself: this is what is being simulated
            old = redis_sentinel.kill_master()
        finally:
            replica.popen.send_signal(signal.SIGCONT)
        new = await redis_sentinel.wait_for_failover_async(old)
        stop.set()
        await asyncio.gather(*writers)
        on_new = plain_client(new.port)
        try:
            keys = list(acked)
            present: list[int] = []
            for start in range(0, len(keys), 1000):
                pipe: Any = on_new.pipeline(transaction=False)
                for key in keys[start : start + 1000]:
                    pipe.exists(key)
                present += await pipe.execute()
        finally:
            await on_new.aclose()
        lost = {k for k, there in zip(keys, present, strict=True) if not there}
        plain_lost = [k for k in lost if acked[k] is None]
        confirmed_lost = [k for k in lost if (n := acked[k]) is not None and n >= 1]
        unconfirmed = [k for k, v in acked.items() if v == 0]
        assert plain_lost, "no acknowledged write was lost without WAIT: the test did not create the risk"
        assert confirmed_lost == []
        assert unconfirmed, "WAIT never answered 0 although the replica was stopped"
    finally:
        stop.set()
        await client.aclose()
