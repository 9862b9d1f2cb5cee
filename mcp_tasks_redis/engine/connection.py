"""The engine's handle on Redis: client, key space, limits, and the mapping of Redis failures
and script refusals onto the engine's exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from mcp_tasks_redis.engine.errors import (
    InvalidTransition,
    RedisUnavailable,
    TaskAlreadyExists,
    TaskError,
    TaskIsTerminal,
    TaskNotFound,
)
from mcp_tasks_redis.engine.keys import KeySpace
from mcp_tasks_redis.engine.lua import Arg, Script, Scripts, scripts


@dataclass(frozen=True)
class TaskLimits:
    """Bounds and defaults that every process of one deployment must agree on."""

    default_ttl_ms: int = 3_600_000
    min_ttl_ms: int = 1_000
    max_ttl_ms: int = 7 * 86_400_000
    poll_interval_ms: int = 500
    # How long an unfinished task outlives its TTL so that a reaper can still fail it visibly.
    grace_ms: int = 60_000
    lease_ms: int = 30_000
    max_attempts: int = 3
    event_stream_len: int = 100
    list_page_size: int = 50

    def clamp_ttl(self, requested: int | None) -> int:
        if requested is None:
            return self.default_ttl_ms
        return max(self.min_ttl_ms, min(self.max_ttl_ms, requested))


class LeaseLost(TaskError):
    """The worker no longer holds the task's lease: another worker took it over."""


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client that reconnects by itself after Redis comes back."""
    options.setdefault("socket_connect_timeout", 5)
    options.setdefault("socket_keepalive", True)
    options.setdefault("retry_on_timeout", True)
    return aioredis.Redis.from_url(url, **options)  # type: ignore[no-any-return]


def describe_url(client: aioredis.Redis) -> str:
    pool: Any = client.connection_pool
    kwargs = cast(dict[str, Any], pool.connection_kwargs)
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


@dataclass
class RedisConnection:
    redis: aioredis.Redis
    keys: KeySpace
    limits: TaskLimits = field(default_factory=TaskLimits)
    scripts: Scripts = field(default_factory=scripts)

    @property
    def url(self) -> str:
        return describe_url(self.redis)

    async def run(self, script: Script, keys: list[str], args: list[Arg], *, task_id: str = "") -> Any:
        """Run a script; refusals become engine exceptions, a lost Redis becomes RedisUnavailable."""
        try:
            return await script(self.redis, keys, args)
        except ResponseError as e:
            raise _refusal(str(e), task_id) from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise RedisUnavailable(self.url, e) from e

    async def call(self, method: str, *args: Any) -> Any:
        """One plain command, with the same error mapping."""
        try:
            return await getattr(self.redis, method)(*args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise RedisUnavailable(self.url, e) from e

    async def transaction(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Several plain commands in one MULTI/EXEC round trip, with the same error mapping;
        each command is ``(method, *args)``."""
        pipe: Any = self.redis.pipeline(transaction=True)
        for method, *args in commands:
            getattr(pipe, method)(*args)
        try:
            return await pipe.execute()  # type: ignore[no-any-return]
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise RedisUnavailable(self.url, e) from e


def _refusal(text: str, task_id: str) -> Exception:
    words = text.split()
    code = words[0] if words else ""
    if code == "NOT_FOUND":
        return TaskNotFound(task_id)
    if code == "EXISTS":
        return TaskAlreadyExists(task_id)
    if code == "TERMINAL":
        return TaskIsTerminal(task_id, words[1], "an update")
    if code == "TRANSITION":
        return InvalidTransition(task_id, words[1], "the requested status")
    if code == "LEASE_LOST":
        return LeaseLost(f"Lease on task {task_id} was taken over by another worker")
    return ResponseError(text)
