"""Redis URLs and clients: one Redis, a Redis Cluster, or the master of a Sentinel service.

``redis://``, ``rediss://`` and ``unix://`` reach one Redis; ``redis+cluster://`` a Redis Cluster
(the engine spreads its shards over the masters, engine/keys.py); ``redis+sentinel://`` the master a
set of sentinels name, following failovers. What each client does on failover is in
``docs/topology-notes.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis
import redis.asyncio as aioredis
import redis.cluster
import redis.sentinel
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""What :func:`connect` returns: a ``Redis`` (``redis://``, ``rediss://``, ``unix://``, and the master
of a ``redis+sentinel://`` service) or a ``RedisCluster`` (``redis+cluster://``)."""

SyncRedisClient: TypeAlias = redis.Redis | redis.cluster.RedisCluster
"""What :func:`connect_sync` returns."""

UrlKind = Literal["standalone", "cluster", "sentinel"]

CLUSTER_SCHEME = "redis+cluster"
SENTINEL_SCHEME = "redis+sentinel"
URL_SCHEMES: tuple[str, ...] = ("redis", "rediss", "unix", CLUSTER_SCHEME, SENTINEL_SCHEME)
"""Every scheme :func:`connect` understands."""

_REDIS_PY_MAJOR = int(redis.__version__.split(".")[0])

DEFAULT_CLUSTER_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_OPTION_PREFIX = "sentinel_"
"""Query options with this prefix (``sentinel_password=...``) are for the sentinels themselves."""


@dataclass(frozen=True)
class RedisUrl:
    """A parsed Redis URL: which client it selects, whom it reaches, and the client options it carries.

    ``options`` are keyword arguments of the redis-py client (``username``/``password`` from the
    user info, ``db`` from the path, and the query string cast as redis-py's own ``from_url`` casts
    it); ``sentinel_options`` are those of the connections to the sentinels.
    """

    kind: UrlKind
    url: str
    addresses: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    sentinel_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def describe(self) -> str:
        """The URL without credentials or options (for messages and logs)."""
        hosts = ",".join(f"{_bracket(host)}:{port}" for host, port in self.addresses)
        if self.kind == "cluster":
            return f"{CLUSTER_SCHEME}://{hosts}/"
        if self.kind == "sentinel":
            return f"{SENTINEL_SCHEME}://{hosts}/{self.service_name}/{self.options.get('db', 0)}"
        parts = urlsplit(self.url)
        netloc = parts.netloc.rpartition("@")[2]
        return f"{parts.scheme}://{netloc}{parts.path}"


def parse_redis_url(url: str) -> RedisUrl:
    """Parse any URL :func:`connect` accepts; ``ValueError`` names what is wrong with it.

    - ``redis://``, ``rediss://``, ``unix://``: one Redis, as ``redis.asyncio.Redis.from_url`` reads it;
    - ``redis+cluster://[user:pass@]host:port[,host2:port2...][/][?options]``: a Redis Cluster, every
      listed node a startup node (port 6379 when left out); db 0 only;
    - ``redis+sentinel://[user:pass@]host:port[,host2:port2...]/service_name[/db][?options]``: the
      master of ``service_name`` as the listed sentinels name it (port 26379 when left out). The user
      info authenticates to the Redis servers; ``sentinel_username`` / ``sentinel_password`` (and any
      other ``sentinel_*`` option) in the query are for the sentinels.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in URL_SCHEMES:
        shown = ", ".join(f"{s}://" for s in URL_SCHEMES)
        raise ValueError(f"Redis URL must start with one of {shown}; got {_redact(url)!r}")
    if scheme not in (CLUSTER_SCHEME, SENTINEL_SCHEME):
        parse_url(url)  # redis-py's own checks (option values), raising ValueError
        return RedisUrl("standalone", url)
    netloc, _, path_and_query = rest.partition("/")
    path, _, query = path_and_query.partition("?")
    if "?" in netloc:  # "redis+cluster://h:1?x=1" without a slash before the query
        netloc, _, query = netloc.partition("?")
    userinfo, _, hosts = netloc.rpartition("@")
    default_port = DEFAULT_CLUSTER_PORT if scheme == CLUSTER_SCHEME else DEFAULT_SENTINEL_PORT
    addresses = tuple(_address(item, default_port, url) for item in hosts.split(","))
    pairs = parse_qsl(query, keep_blank_values=True)
    main_query = urlencode([(k, v) for k, v in pairs if not k.startswith(SENTINEL_OPTION_PREFIX)])
    options = _options(userinfo, main_query)
    segments = [unquote(s) for s in path.split("/") if s]
    if scheme == CLUSTER_SCHEME:
        if segments not in ([], ["0"]) or options.get("db", 0) != 0:
            raise ValueError(f"a Redis Cluster has only database 0; got {_redact(url)!r}")
        options.pop("db", None)
        return RedisUrl("cluster", url, addresses, options=MappingProxyType(options))
    if not 1 <= len(segments) <= 2:
        raise ValueError(
            f"redis+sentinel:// needs /service_name[/db] after the sentinels; got {_redact(url)!r}"
        )
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(
                f"the database in a redis+sentinel:// URL must be a number; got {_redact(url)!r}"
            )
        options.setdefault("db", int(segments[1]))
    sentinel_query = urlencode(
        [
            (k.removeprefix(SENTINEL_OPTION_PREFIX), v)
            for k, v in pairs
            if k.startswith(SENTINEL_OPTION_PREFIX)
        ]
    )
    sentinel_options = _options("", sentinel_query)
    sentinel_options.pop("db", None)
    return RedisUrl(
        "sentinel",
        url,
        addresses,
        service_name=segments[0],
        options=MappingProxyType(options),
        sentinel_options=MappingProxyType(sentinel_options),
    )


def _address(item: str, default_port: int, url: str) -> tuple[str, int]:
    try:
        parts = urlsplit("//" + item)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValueError(f"bad host:port {item!r} in {_redact(url)!r}: {exc}") from None
    if not host:
        raise ValueError(f"missing host in {_redact(url)!r}")
    return unquote(host), port if port is not None else default_port


def _options(userinfo: str, query: str) -> dict[str, Any]:
    """User info and query options cast as redis-py's ``parse_url`` casts them."""
    auth = f"{userinfo}@" if userinfo else ""
    parsed = cast(dict[str, Any], parse_url(f"redis://{auth}localhost" + (f"/?{query}" if query else "")))
    for key in ("host", "port", "connection_class", "path"):
        parsed.pop(key, None)
    return parsed


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    return f"{scheme}{sep}{netloc}{slash}{tail}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# Longer than any blocking read the engine makes (a worker's XREADGROUP blocks for 5 s): redis-py
# 8 reads with a 5 s socket timeout by default, which cuts every idle blocking read short with a
# TimeoutError and, through the client's own retries, stalls it for 10 s (Redis) or 55 s
# (RedisCluster) (measured: docs/topology-notes.md). Still finite, so that a connection whose peer
# vanished without a reset is noticed. A `?socket_timeout=` in the URL must exceed it too.
SOCKET_TIMEOUT_S = 30.0


def _with_defaults(options: dict[str, Any]) -> dict[str, Any]:
    options.setdefault("socket_timeout", SOCKET_TIMEOUT_S)
    options.setdefault("socket_connect_timeout", 5)
    options.setdefault("socket_keepalive", True)
    return options


def _retry_on_timeout(options: dict[str, Any]) -> None:
    # redis-py 5.x retries (once) only when asked; from 6.0 TimeoutError is retried by default and
    # the flag is deprecated (a DeprecationWarning per client).
    if _REDIS_PY_MAJOR < 6:
        options.setdefault("retry_on_timeout", True)


def connect(url: str, **options: Any) -> RedisClient:
    """A client for any URL of :func:`parse_redis_url`, reconnecting by itself after Redis comes back.

    Options from the URL's query string win over ``options``, as with redis-py's ``from_url``.
    A ``redis+cluster://`` URL gives a ``RedisCluster`` (it follows MOVED/ASK and re-reads the
    slot map after a failover); a ``redis+sentinel://`` URL gives a ``Redis`` whose connections
    ask the sentinels for the master whenever they (re)connect; closing it closes the connections
    to the sentinels too.
    """
    target = parse_redis_url(url)
    options = _with_defaults(dict(options))
    if target.kind == "standalone":
        _retry_on_timeout(options)
        return aioredis.Redis.from_url(url, **options)  # type: ignore[no-any-return]
    if target.kind == "cluster":
        options.update(target.options)
        nodes = [ClusterNode(host, port) for host, port in target.addresses]
        cluster: Any = RedisCluster  # (redis-py 5.x's hints call it abstract)
        return cast(RedisCluster, cluster(startup_nodes=nodes, **options))
    _retry_on_timeout(options)
    options.update(target.options)
    sentinel_kwargs = _sentinel_kwargs(options, target)
    sentinel: Any = Sentinel(list(target.addresses), sentinel_kwargs=sentinel_kwargs, **options)
    return cast(aioredis.Redis, sentinel.master_for(target.service_name, redis_class=_SentinelMaster))


def connect_sync(url: str, **options: Any) -> SyncRedisClient:
    """The blocking twin of :func:`connect` (for the operations commands), same URLs, same options."""
    target = parse_redis_url(url)
    options = _with_defaults(dict(options))
    if target.kind == "standalone":
        _retry_on_timeout(options)
        return cast(redis.Redis, cast(Any, redis.Redis).from_url(url, **options))
    if target.kind == "cluster":
        options.update(target.options)
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in target.addresses]
        sync_cluster: Any = redis.cluster.RedisCluster
        return cast(redis.cluster.RedisCluster, sync_cluster(startup_nodes=nodes, **options))
    _retry_on_timeout(options)
    options.update(target.options)
    sentinel_kwargs = _sentinel_kwargs(options, target)
    sentinel: Any = redis.sentinel.Sentinel(
        list(target.addresses), sentinel_kwargs=sentinel_kwargs, **options
    )
    return cast(redis.Redis, sentinel.master_for(target.service_name, redis_class=_SyncSentinelMaster))


def _sentinel_kwargs(options: dict[str, Any], target: RedisUrl) -> dict[str, Any]:
    """Options of the connections to the sentinels: the socket options and the retry policy of the
    client (redis-py itself copies only the socket options, so its default retries, with back-off
    in redis-py 8, would still apply to the sentinels), then the URL's ``sentinel_*`` options."""
    kwargs = {k: v for k, v in options.items() if k.startswith("socket_") or k == "retry"}
    kwargs.update(target.sentinel_options)
    return kwargs


class _SentinelMaster(aioredis.Redis):
    """The master of a Sentinel service; closing it also closes its connections to the sentinels
    (redis-py leaves those to the ``Sentinel`` object, which :func:`connect` does not hand out)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool: Any = self.connection_pool
        manager: Any = getattr(pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()


class _SyncSentinelMaster(redis.Redis):
    """:class:`_SentinelMaster` for :func:`connect_sync`."""

    def close(self) -> None:
        super().close()
        pool: Any = self.connection_pool
        manager: Any = getattr(pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()


def describe_url(client: RedisClient) -> str:
    """Where a client points, without credentials (for errors and logs)."""
    if isinstance(client, RedisCluster):
        nodes = cast(Any, client).get_nodes() or list(cast(Any, client).nodes_manager.startup_nodes.values())
        hosts = ",".join(f"{_bracket(str(n.host))}:{n.port}" for n in nodes)
        return f"{CLUSTER_SCHEME}://{hosts}/"
    pool: Any = client.connection_pool
    kwargs = cast(dict[str, Any], pool.connection_kwargs)
    if isinstance(pool, SentinelConnectionPool):
        managed: Any = pool
        sentinels: list[Any] = list(getattr(managed.sentinel_manager, "sentinels", []))
        hosts = ",".join(
            f"{_bracket(str(s.connection_pool.connection_kwargs.get('host', '?')))}:"
            f"{s.connection_pool.connection_kwargs.get('port', '?')}"
            for s in sentinels
        )
        return f"{SENTINEL_SCHEME}://{hosts}/{managed.service_name}/{kwargs.get('db', 0)}"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
