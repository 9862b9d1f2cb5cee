"""Listing tasks: one owner's, one session's, or a store's, newest or oldest first, by pages.

Tasks join the listing indexes they are created with (engine/tasks.py). A listing merges the
indexes of every shard; its cursor is opaque and stable while tasks are added, and tasks that
expired are pruned from an index on the way.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp_tasks_redis.engine.connection import RedisConnection
from mcp_tasks_redis.engine.errors import InvalidCursor
from mcp_tasks_redis.engine.keys import Shard, is_valid_task_id
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.replies import as_text as _text


@dataclass(frozen=True)
class ListScope:
    """A listing index: one owner's tasks, one session's, or (neither given) the store-wide one
    that tasks join only when created with it (the mcp SDK's TaskStore lists all its tasks)."""

    owner: str | None = None
    session: str | None = None

    def key(self, shard: Shard) -> str:
        if self.owner is not None:
            return shard.owner_index(self.owner)
        if self.session is not None:
            return shard.session_index(self.session)
        return shard.all_index


@dataclass(frozen=True)
class Page:
    tasks: list[TaskRecord]
    next_cursor: str | None


class Listing:
    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn

    async def list(
        self,
        *,
        scope: ListScope,
        cursor: str | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> Page:
        """One page of a listing by creation time, merged over the shards. The cursor is stable
        while tasks are added; tasks that expired are pruned from the index on the way."""
        limit = limit or self.conn.limits.list_page_size
        order = "desc" if newest_first else "asc"
        after = None if cursor is None else decode_cursor(cursor, order)
        rows: list[tuple[float, str, TaskRecord]] = []
        for shard in self.conn.keys.all_shards:
            rows += await self._page_of_index(scope.key(shard), shard.task, order, after, limit + 1)
        rows.sort(key=lambda row: (row[0], row[1]), reverse=newest_first)
        page = rows[: limit + 1]
        if len(page) <= limit:
            return Page([row[2] for row in page], None)
        score, task_id, _ = page[limit - 1]
        return Page([row[2] for row in page[:limit]], encode_cursor(int(score), task_id, order))

    async def _page_of_index(
        self,
        index: str,
        record_key: Callable[[str], str],
        order: str,
        after: tuple[int, str] | None,
        want: int,
    ) -> list[tuple[float, str, TaskRecord]]:
        out: list[tuple[float, str, TaskRecord]] = []
        offset = 0
        while len(out) < want:
            if order == "desc":
                top = "+inf" if after is None else after[0]
                chunk = await self.conn.call("zrevrangebyscore", index, top, "-inf", offset, want, True)
            else:
                low = "-inf" if after is None else after[0]
                chunk = await self.conn.call("zrangebyscore", index, low, "+inf", offset, want, True)
            if not chunk:
                break
            offset += len(chunk)
            candidates = [(score, _text(member)) for member, score in chunk]
            if after is not None:
                # Members sharing the cursor's score were already returned if they sort before it.
                candidates = [
                    (s, m)
                    for s, m in candidates
                    if int(s) != after[0] or (m < after[1] if order == "desc" else m > after[1])
                ]
            raws = await self.conn.pipeline(*[("hgetall", record_key(m)) for _, m in candidates])
            gone: list[str] = []
            for (score, member), raw in zip(candidates, raws, strict=True):
                record = TaskRecord.from_hash(raw) if raw else None
                if record is None:
                    gone.append(member)
                else:
                    out.append((score, member, record))
            if gone:
                await self.conn.call("zrem", index, *gone)
                offset -= len(gone)
        return out


def encode_cursor(score: int, task_id: str, order: str) -> str:
    raw = json.dumps([order, score, task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded: Any = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 3  # pyright: ignore[reportUnknownArgumentType]
        or decoded[0] != order
        or not isinstance(decoded[1], int)
        or isinstance(decoded[1], bool)  # JSON true/false are ints to Python, not scores to Redis
        or not isinstance(decoded[2], str)
        or not is_valid_task_id(decoded[2])
    ):
        raise InvalidCursor(cursor)
    return decoded[1], decoded[2]
