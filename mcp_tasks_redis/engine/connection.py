"""The engine's handle on Redis: the client, the key space, the limits, and the mapping of Redis
failures and script refusals onto the engine's exceptions.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcp_tasks_redis.engine.cancelling import unless_cancelled
from mcp_tasks_redis.engine.errors import (
    InvalidTransition,
    LeaseLost,
    QuotaExceeded,
    RedisUnavailable,
    TaskAlreadyExists,
    TaskIsTerminal,
    TaskNotFound,
)
from mcp_tasks_redis.engine.keys import KeySpace
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.lua import Arg, Script, Scripts, scripts
from mcp_tasks_redis.engine.telemetry.metrics import Metrics
from mcp_tasks_redis.engine.urls import RedisClient, connect, describe_url

__all__ = ["REDIS_DOWN", "RedisConnection", "connect", "describe_url", "pubsub_client", "refusal"]

log = logging.getLogger("mcp_tasks_redis.engine")

# What a call raises while Redis is out of reach, restarting or failing over. A write that reaches
# a master demoted by a failover answers READONLY: for the caller it is the same passing outage.
# A cluster client between a master's death and its replica's promotion cannot route (a
# RedisClusterException, which is no RedisError): the same passing outage.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    RedisClusterException,
    OSError,
)


def pubsub_client(client: RedisClient) -> aioredis.Redis:
    """A client of its own for the event subscriber, reaching the same deployment as ``client``.

    One Redis: its own pool, so that the subscribed connection runs none of the shared pool's
    health-check PINGs. A Sentinel master: a pool that asks the sentinels for the master at every
    (re)connect. A Redis Cluster: a plain connection to one master; a classic PUBLISH reaches the
    subscribers of every node, and the hub picks a master again after a failover.
    """
    if isinstance(client, RedisCluster):
        cluster: Any = client
        # Before its first command a cluster client knows only its startup nodes.
        known = cluster.get_primaries() or cluster.get_nodes()
        node: Any = random.choice(known or list(cluster.nodes_manager.startup_nodes.values()))
        options: dict[str, Any] = {**node.connection_kwargs, "health_check_interval": 0}
        # Through a pool of the node's own connection class: a node's connection options are
        # connection arguments (redis-py 8 adds some, e.g. ``himport_registry``, that the
        # ``Redis`` constructor refuses), as for the single-Redis client below.
        make: Any = aioredis.ConnectionPool
        return aioredis.Redis(connection_pool=make(connection_class=node.connection_class, **options))
    pool: Any = client.connection_pool
    kwargs: dict[str, Any] = {**pool.connection_kwargs, "health_check_interval": 0}
    if isinstance(pool, SentinelConnectionPool):
        managed: Any = pool
        return aioredis.Redis(
            connection_pool=SentinelConnectionPool(managed.service_name, managed.sentinel_manager, **kwargs)
        )
    return aioredis.Redis(
        connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


@dataclass
class RedisConnection:
    redis: RedisClient
    keys: KeySpace
    limits: TaskLimits = field(default_factory=TaskLimits)
    scripts: Scripts = field(default_factory=scripts)
    # Counts the outages each call meets (mcp_tasks_redis_errors_total, by script or command).
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def url(self) -> str:
        return describe_url(self.redis)

    async def run(
        self, script: Script, keys: list[str], args: list[Arg], *, task_id: str = "", durable: bool = False
    ) -> Any:
        """Run a script; refusals become engine exceptions, a lost Redis becomes RedisUnavailable.

        ``durable``: with `TaskLimits.replica_acks`, the reply waits until that many replicas have
        the write (WAIT on the script's own connection), so that a master lost right after it
        cannot take an acknowledged task with it. Not on a Redis Cluster, where redis-py cannot
        send WAIT on the write's connection (docs/topology-notes.md).
        """
        if durable and self.limits.replica_acks and not isinstance(self.redis, RedisCluster):
            return await self._run_durably(script, keys, args, task_id)
        try:
            return await unless_cancelled(await script(self.redis, keys, args))
        except ReadOnlyError as e:
            raise self._unavailable(script.name, e) from e
        except ResponseError as e:
            raise refusal(str(e), task_id) from None
        except REDIS_DOWN as e:
            raise self._unavailable(script.name, e) from e

    def _unavailable(self, operation: str, cause: BaseException) -> RedisUnavailable:
        self.metrics.redis_unavailable(operation)
        return RedisUnavailable(self.url, cause)

    async def _run_durably(self, script: Script, keys: list[str], args: list[Arg], task_id: str) -> Any:
        try:
            async with cast(Any, self.redis).client() as pinned:  # one connection for both commands
                reply = await script(pinned, keys, args)
                acked = await pinned.execute_command(
                    "WAIT", self.limits.replica_acks, self.limits.replica_wait_ms
                )
        except ReadOnlyError as e:
            raise self._unavailable(script.name, e) from e
        except ResponseError as e:
            raise refusal(str(e), task_id) from None
        except REDIS_DOWN as e:
            raise self._unavailable(script.name, e) from e
        if int(acked) < self.limits.replica_acks:
            log.warning(
                "task %s: written, but %s of %s replica(s) confirmed it",
                task_id,
                acked,
                self.limits.replica_acks,
            )
        return await unless_cancelled(reply)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One plain command, with the same error mapping."""
        try:
            return await unless_cancelled(await getattr(self.redis, method)(*args, **kwargs))
        except REDIS_DOWN as e:
            raise self._unavailable(method, e) from e

    async def pipeline(self, *commands: tuple[Any, ...], transaction: bool = False) -> list[Any]:
        """Several commands in one round trip, with the same error mapping; each command is
        ``(method, *args)``."""
        pipe: Any = self.redis.pipeline(transaction=transaction)
        for method, *args in commands:
            getattr(pipe, method)(*args)
        try:
            return await unless_cancelled(await pipe.execute())  # type: ignore[no-any-return]
        except REDIS_DOWN as e:
            raise self._unavailable(str(commands[0][0]) if commands else "pipeline", e) from e


def refusal(text: str, task_id: str) -> Exception:
    """The engine exception for a script's ``redis.error_reply`` (first word: the reason)."""
    words = text.split()
    code = words[0] if words else ""
    if code == "NOT_FOUND":
        return TaskNotFound(task_id)
    if code == "EXISTS":
        return TaskAlreadyExists(task_id)
    if code == "TERMINAL":
        return TaskIsTerminal(task_id, words[1], "an update")
    if code == "TRANSITION":
        return InvalidTransition(task_id, words[1], words[2] if len(words) > 2 else "the requested status")
    if code == "RATE":
        wait = int(words[1]) if len(words) > 1 and words[1].lstrip("-").isdigit() else None
        return QuotaExceeded("Too many tasks created by this caller; retry later", max(wait or 0, 0) or None)
    if code == "QUEUE_FULL":
        return QuotaExceeded(
            f"Too many tasks of this caller wait to run ({words[1]}); retry later", reason="queue"
        )
    if code == "LEASE_LOST":
        return LeaseLost(f"Task {task_id} is now run by another worker")
    return ResponseError(text)
