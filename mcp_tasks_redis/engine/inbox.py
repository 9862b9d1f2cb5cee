"""A per-task FIFO of JSON messages for the client, shared by every process.

It backs the mcp SDK's `TaskMessageQueue` contract, which accepts messages for any task id, known
to the store or not: the queue and the store are separate interfaces a server may pair as it
likes. Each push refreshes the list's expiry (the deployment's default TTL plus grace), so an
inbox outlives its last message by that much and never stays behind without one.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_tasks_redis.engine.connection import RedisConnection
from mcp_tasks_redis.engine.errors import InvalidTaskId
from mcp_tasks_redis.engine.events import encode_event
from mcp_tasks_redis.engine.keys import is_valid_task_id
from mcp_tasks_redis.engine.tasks import to_json


class Inbox:
    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn

    def _key(self, task_id: str) -> str:
        if not is_valid_task_id(task_id):
            raise InvalidTaskId(task_id)
        return self.conn.keys.shard_of(task_id).inbox(task_id)

    async def push(self, task_id: str, message: dict[str, Any]) -> int:
        key = self._key(task_id)
        limits = self.conn.limits
        length, _, _ = await self.conn.pipeline(
            ("rpush", key, to_json(message, "Queued message")),
            ("pexpire", key, limits.default_ttl_ms + limits.grace_ms),
            ("publish", self.conn.keys.shard_of(task_id).channel, encode_event(task_id, {"k": "message"})),
        )
        return int(length)

    async def notify(self, task_id: str, kind: str) -> None:
        """Wake every waiter on the task in every process with an event of ``kind``."""
        channel = self.conn.keys.shard_of(task_id).channel
        await self.conn.call("publish", channel, encode_event(task_id, {"k": kind}))

    async def pop(self, task_id: str) -> dict[str, Any] | None:
        raw = await self.conn.call("lpop", self._key(task_id))
        return None if raw is None else json.loads(raw)

    async def peek(self, task_id: str) -> dict[str, Any] | None:
        raw = await self.conn.call("lindex", self._key(task_id), 0)
        return None if raw is None else json.loads(raw)

    async def length(self, task_id: str) -> int:
        return int(await self.conn.call("llen", self._key(task_id)))

    async def clear(self, task_id: str) -> list[dict[str, Any]]:
        key = self._key(task_id)
        raw, _ = await self.conn.pipeline(("lrange", key, 0, -1), ("delete", key), transaction=True)
        return [json.loads(item) for item in raw]
