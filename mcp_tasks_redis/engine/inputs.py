"""Input mid-task and the task's inbox: requests stored on the task, replies routed through Redis.

A tool on a worker that needs the client (elicitation, sampling) stores its request under a key
and waits on Redis for the reply; the reply may reach any server replica, which writes it into
the task's reply slot. No in-process future is involved, so it works across processes.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_tasks_redis.engine.connection import RedisConnection
from mcp_tasks_redis.engine.errors import InvalidTaskId
from mcp_tasks_redis.engine.keys import is_valid_task_id
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.tasks import to_json


class Inputs:
    """Outstanding input requests of a task and the client's replies to them."""

    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn

    async def request(
        self,
        task_id: str,
        key: str,
        request: dict[str, Any],
        *,
        inbox_message: dict[str, Any] | None = None,
        fence: str | None = None,
    ) -> TaskRecord:
        """Store a request and move the task to input_required, in one step."""
        flat = await self.conn.run(
            self.conn.scripts.request_input,
            self.conn.keys.task_keys(task_id),
            [
                key,
                to_json(request, "Input request"),
                to_json(inbox_message, "Queued message") if inbox_message is not None else "",
                self.conn.keys.channel(task_id),
                self.conn.limits.event_stream_len,
                fence or "",
            ],
            task_id=task_id,
        )
        return TaskRecord.from_redis(flat)

    async def answer(self, task_id: str, key: str, reply: dict[str, Any]) -> bool:
        """Deliver the client's reply; False if no such request is outstanding."""
        if not is_valid_task_id(task_id):
            raise InvalidTaskId(task_id)
        answered = await self.conn.run(
            self.conn.scripts.answer_input,
            self.conn.keys.task_keys(task_id),
            [key, to_json(reply, "Input reply"), self.conn.keys.channel(task_id)],
            task_id=task_id,
        )
        return bool(answered)

    async def take_reply(self, task_id: str, key: str) -> dict[str, Any] | None:
        """Remove and return the reply to ``key`` if it has arrived."""
        replies = self.conn.keys.replies(task_id)
        raw, _ = await self.conn.transaction(("hget", replies, key), ("hdel", replies, key))
        return None if raw is None else json.loads(raw)

    async def pending(self, task_id: str) -> dict[str, dict[str, Any]]:
        raw: dict[bytes, bytes] = await self.conn.call("hgetall", self.conn.keys.inputs(task_id))
        return {k.decode(): json.loads(v) for k, v in raw.items()}


class Inbox:
    """Per-task FIFO of JSON messages for the client (the 2025 wire delivers them on tasks/result)."""

    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn

    async def push(self, task_id: str, message: dict[str, Any]) -> int:
        if not is_valid_task_id(task_id):
            raise InvalidTaskId(task_id)
        length = await self.conn.run(
            self.conn.scripts.inbox_push,
            self.conn.keys.task_keys(task_id),
            [to_json(message, "Queued message"), self.conn.keys.channel(task_id)],
            task_id=task_id,
        )
        return int(length)

    async def pop(self, task_id: str) -> dict[str, Any] | None:
        raw = await self.conn.call("lpop", self.conn.keys.inbox(task_id))
        return None if raw is None else json.loads(raw)

    async def peek(self, task_id: str) -> dict[str, Any] | None:
        raw = await self.conn.call("lindex", self.conn.keys.inbox(task_id), 0)
        return None if raw is None else json.loads(raw)

    async def length(self, task_id: str) -> int:
        return int(await self.conn.call("llen", self.conn.keys.inbox(task_id)))

    async def clear(self, task_id: str) -> list[dict[str, Any]]:
        key = self.conn.keys.inbox(task_id)
        raw, _ = await self.conn.transaction(("lrange", key, 0, -1), ("delete", key))
        return [json.loads(item) for item in raw]
