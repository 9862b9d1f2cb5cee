"""Task state in Redis: create, read, change, list and delete tasks through atomic scripts.

Every change is one Lua script (engine/scripts): the state machine is enforced inside Redis, so
any number of server replicas and workers can act on the same task without corrupting it.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_tasks_redis.engine.connection import RedisConnection
from mcp_tasks_redis.engine.dispatch import ARQ_JOB_PREFIX, job_payload
from mcp_tasks_redis.engine.errors import (
    InvalidCursor,
    InvalidTaskId,
    InvalidTransition,
    NotSerializable,
    TaskIsTerminal,
)
from mcp_tasks_redis.engine.keys import is_valid_task_id
from mcp_tasks_redis.engine.record import Progress, TaskRecord, TaskStatus

_UNSET: Any = object()


def new_task_id() -> str:
    """192 random bits, URL-safe: a task id is a capability, so it must be unguessable."""
    return secrets.token_urlsafe(24)


def to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise NotSerializable(f"{what} is not JSON-serializable: {e}") from e


@dataclass(frozen=True)
class ListScope:
    """Which index a listing reads: one owner's tasks, one session's, or every task."""

    owner: str | None = None
    session: str | None = None


@dataclass(frozen=True)
class Page:
    tasks: list[TaskRecord]
    next_cursor: str | None


class Tasks:
    """Create, read, change, list and delete tasks."""

    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn

    def _task_keys(self, task_id: str) -> list[str]:
        return self.conn.keys.task_keys(task_id)

    async def create(
        self,
        *,
        task_id: str | None = None,
        ttl_ms: int | None = None,
        owner: str | None = None,
        session: str | None = None,
        tool: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        progress_token: str | int | None = None,
        meta: Mapping[str, Any] | None = None,
        dispatch: bool = False,
    ) -> TaskRecord:
        """Write a new `working` task (and, with ``dispatch``, its job) in one atomic step."""
        task_id = task_id if task_id is not None else new_task_id()
        if not is_valid_task_id(task_id):
            raise InvalidTaskId(task_id)
        keys, limits = self.conn.keys, self.conn.limits
        pairs: list[str | int] = ["max_attempts", limits.max_attempts]
        for name, value in (("owner", owner), ("session", session), ("tool", tool)):
            if value is not None:
                pairs += [name, value]
        if arguments is not None:
            pairs += ["args", to_json(dict(arguments), "Tool arguments")]
        if progress_token is not None:
            pairs += ["ptoken", to_json(progress_token, "Progress token")]
        if meta:
            pairs += ["meta", to_json(dict(meta), "Task metadata")]
        indexes = [keys.index]
        if owner is not None:
            indexes.append(keys.owner_index(owner))
        if session is not None:
            indexes.append(keys.session_index(session))
        flat = await self.conn.run(
            self.conn.scripts.create,
            [*self._task_keys(task_id), keys.active, keys.queue, job_key(task_id), *indexes],
            [
                task_id,
                limits.clamp_ttl(ttl_ms),
                limits.poll_interval_ms,
                limits.grace_ms,
                job_payload(task_id) if dispatch else "",
                keys.wake_channel,
                limits.lease_ms,
                *pairs,
            ],
            task_id=task_id,
        )
        return TaskRecord.from_redis(flat)

    async def get(self, task_id: str) -> TaskRecord | None:
        if not is_valid_task_id(task_id):
            return None
        flat = await self.conn.call("hgetall", self.conn.keys.task(task_id))
        if not flat:
            return None
        return TaskRecord.from_redis([x for kv in flat.items() for x in kv])

    async def update(
        self,
        task_id: str,
        *,
        status: TaskStatus | str | None = None,
        message: str | None = _UNSET,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
        fence: str | None = None,
    ) -> TaskRecord:
        """Apply one change atomically. Raises TaskNotFound, TaskIsTerminal, InvalidTransition."""
        if not is_valid_task_id(task_id):
            raise InvalidTaskId(task_id)
        new_status = TaskStatus(status) if status is not None else None
        try:
            flat = await self.conn.run(
                self.conn.scripts.update,
                [*self._task_keys(task_id), self.conn.keys.active],
                [
                    new_status.value if new_status else "",
                    "0" if message is _UNSET or message is None else "1",
                    "" if message is _UNSET or message is None else message,
                    to_json(dict(result), "Task result") if result is not None else "",
                    to_json(dict(error), "Task error") if error is not None else "",
                    progress.model_dump_json() if progress is not None else "",
                    fence or "",
                    self.conn.keys.channel(task_id),
                    self.conn.limits.event_stream_len,
                ],
                task_id=task_id,
            )
        except InvalidTransition as e:
            requested = new_status.value if new_status else "an update"
            cls = TaskIsTerminal if isinstance(e, TaskIsTerminal) else InvalidTransition
            raise cls(task_id, e.current, requested) from None
        return TaskRecord.from_redis(flat)

    async def cancel(self, task_id: str, message: str = "Cancelled") -> TaskRecord:
        """Cancel a task that has not finished; a cancel that lands first beats any completion."""
        return await self.update(task_id, status=TaskStatus.CANCELLED, message=message)

    async def delete(self, task_id: str) -> bool:
        if not is_valid_task_id(task_id):
            return False
        keys = self.conn.keys
        deleted = await self.conn.run(
            self.conn.scripts.delete,
            [*self._task_keys(task_id), keys.active, keys.index],
            [task_id, keys.namespace],
            task_id=task_id,
        )
        return bool(deleted)

    async def list(
        self,
        *,
        scope: ListScope | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> Page:
        """One page of tasks by creation time. The cursor is stable while tasks are added."""
        keys = self.conn.keys
        scope = scope or ListScope()
        if scope.owner is not None:
            index = keys.owner_index(scope.owner)
        elif scope.session is not None:
            index = keys.session_index(scope.session)
        else:
            index = keys.index
        limit = limit or self.conn.limits.list_page_size
        order = "desc" if newest_first else "asc"
        after_score, after_id = ("", "") if cursor is None else decode_cursor(cursor, order)
        rows: list[Any] = await self.conn.run(
            self.conn.scripts.list,
            [index],
            [order, limit, after_score, after_id, f"{keys.namespace}:task:"],
        )
        records = [TaskRecord.from_redis(row[1]) for row in rows]
        if len(records) <= limit:
            return Page(records, None)
        # The cursor holds the last row's index score (not its creation time: see create.lua).
        last_score = int(float(rows[limit - 1][0]))
        return Page(records[:limit], encode_cursor(last_score, records[limit - 1].task_id, order))


def job_key(task_id: str) -> str:
    return ARQ_JOB_PREFIX + task_id


def encode_cursor(score: int, task_id: str, order: str) -> str:
    raw = json.dumps([order, score, task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[str, str]:
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
    return str(decoded[1]), decoded[2]
