"""Helpers for the SEP-2663 tests: real `mcp` 2.x clients against the product's server processes.

`tasks_client` opens the SDK's `Client` over Streamable HTTP declaring the tasks extension (and
elicitation, so that workers may ask); `plain_client` declares nothing. `TaskNotes` collects the
``notifications/tasks`` a client receives. `RawRequest` sends any params (hostile tests), with or
without the ``Mcp-Name`` header. `namespace_state` snapshots what a namespace holds in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from mcp.client.client import Client
from mcp.client.context import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult, Request
from redis.asyncio import Redis

from mcp_tasks_redis.mcp_v2.client import TasksClientExtension
from mcp_tasks_redis.mcp_v2.protocol import TaskNotificationParams


class TaskNotes:
    """The ``notifications/tasks`` one client received, in arrival order."""

    def __init__(self) -> None:
        self.items: list[TaskNotificationParams] = []
        self._changed = asyncio.Event()

    async def __call__(self, params: TaskNotificationParams) -> None:
        self.items.append(params)
        self._changed.set()

    def of(self, task_id: str) -> list[TaskNotificationParams]:
        return [n for n in self.items if n.task_id == task_id]

    async def wait(self, check: Callable[[], Any], timeout_s: float, what: str) -> Any:
        async with asyncio.timeout(timeout_s):
            while not (value := check()):
                self._changed.clear()
                await self._changed.wait()
        return value


async def _refuse_elicitation(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="decline")


@contextlib.asynccontextmanager
async def tasks_client(
    url: str, extension: TasksClientExtension | None = None, **options: Any
) -> AsyncIterator[Client]:
    """A client declaring the tasks extension and elicitation (answered through ``extension``)."""
    options.setdefault("elicitation_callback", _refuse_elicitation)
    async with Client(url, extensions=[extension or TasksClientExtension()], **options) as client:
        yield client


@contextlib.asynccontextmanager
async def plain_client(url: str) -> AsyncIterator[Client]:
    """A client that declares no extension at all."""
    async with Client(url) as client:
        yield client


class RawRequest(Request[dict[str, Any] | None, str]):
    """Any method with any params, without an ``Mcp-Name`` header."""


class RawTaskRequest(Request[dict[str, Any] | None, str]):
    """Any tasks/* method with any params; ``Mcp-Name`` names ``params.taskId`` (a string)."""

    name_param = "taskId"


async def namespace_state(redis: Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of the namespace with its content; worker health reports and the dispatch
    streams (whose consumer-group bookkeeping changes at each worker read) are left out."""
    state: dict[bytes, Any] = {}
    scan = cast(Any, redis).scan_iter(match=f"{namespace}:*", count=1000)
    async for key in scan:
        name = bytes(key)
        kind = (await redis.type(name)).decode()  # type: ignore[union-attr]
        if b":worker" in name or kind == "stream":
            continue
        state[name] = await _content(redis, name, kind)
    return state


async def _content(redis: Redis, name: bytes, kind: str) -> Any:
    """A key's content, compared by value: DUMP is not stable for an unchanged key (a hash in
    hashtable encoding serializes in its dict's order, which lookups change by rehashing)."""
    r = cast(Any, redis)
    if kind == "hash":
        return ("hash", await r.hgetall(name))
    if kind == "zset":
        return ("zset", await r.zrange(name, 0, -1, withscores=True))
    if kind == "list":
        return ("list", await r.lrange(name, 0, -1))
    if kind == "set":
        return ("set", frozenset(await r.smembers(name)))
    return (kind, await r.get(name) if kind == "string" else await r.dump(name))
