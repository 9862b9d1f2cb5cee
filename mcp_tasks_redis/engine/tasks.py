"""Task state in Redis: create, read, change, cancel, answer, list and delete tasks.

Every change is one Lua script (engine/scripts): the state machine is enforced inside Redis, so
any number of server replicas and workers can act on the same task without corrupting it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_tasks_redis.engine.connection import RedisConnection
from mcp_tasks_redis.engine.errors import (
    InvalidTaskId,
    InvalidTransition,
    NotSerializable,
    QuotaExceeded,
    TaskIsTerminal,
    TaskNotFound,
)
from mcp_tasks_redis.engine.events import encode_event
from mcp_tasks_redis.engine.keyed import KeyedDispatch
from mcp_tasks_redis.engine.keys import GROUP, is_valid_task_id
from mcp_tasks_redis.engine.listing import Listing, ListScope, Page
from mcp_tasks_redis.engine.quotas import Quotas, owner_key
from mcp_tasks_redis.engine.record import Job, Progress, TaskRecord, TaskStatus
from mcp_tasks_redis.engine.replies import as_text as _text
from mcp_tasks_redis.engine.telemetry.metrics import PRIORITY_NAMES
from mcp_tasks_redis.engine.telemetry.tracing import META_KEY, create_span

_UNSET: Any = object()

# An index's expiry is set when this process first writes to it, then at most this often; it is
# set to outlive the longest task that can be added before the next refresh.
INDEX_REFRESH_MS = 3_600_000


def new_task_id() -> str:
    """192 random bits, URL-safe: a task id is a capability, so it must be unguessable."""
    return secrets.token_urlsafe(24)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise NotSerializable(f"{what} is not JSON-serializable: {e}") from e


@dataclass(frozen=True)
class _Write:
    """What `Tasks.create` writes besides the job."""

    task_id: str
    given: bool
    ttl_ms: int | None
    owner: str | None
    session: str | None
    tool: str | None
    dispatch: bool
    index: Sequence[ListScope]
    priority: int


class Tasks:
    """Create, read, change, cancel, answer and delete tasks (the server side of the engine)."""

    def __init__(self, conn: RedisConnection, keyed: KeyedDispatch | None = None) -> None:
        """``keyed``: the dispatcher that receives the jobs, when not the shards' streams."""
        self.conn = conn
        self.keyed = keyed
        self.quotas = Quotas(conn)
        self._listing = Listing(conn)
        self._index_expiry_set: dict[str, float] = {}

    async def list(
        self,
        *,
        scope: ListScope,
        cursor: str | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> Page:
        """One page of a listing (engine/listing.py)."""
        return await self._listing.list(scope=scope, cursor=cursor, limit=limit, newest_first=newest_first)

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
        index: Sequence[ListScope] = _UNSET,
        fresh_id: bool = False,
        priority: int = 1,
    ) -> TaskRecord:
        """Write a new `working` task (and, with ``dispatch``, its job) in one atomic step.

        ``arguments`` must be the JSON the client sent. A given ``task_id`` that exists already
        raises TaskAlreadyExists, unless ``fresh_id`` says it came from `new_task_id` (random
        enough never to collide), which spares the check. ``index`` names
        the listings the task joins: by default its owner's, else its session's, else none.
        ``priority`` is the level the job is dispatched at (0 high, 1 normal, 2 low).
        """
        given = task_id is not None and not fresh_id
        task_id = task_id if task_id is not None else new_task_id()
        if not is_valid_task_id(task_id):
            raise InvalidTaskId(task_id)
        write = _Write(task_id, given, ttl_ms, owner, session, tool, dispatch, index, priority)
        if not dispatch:
            return await self._write(write, Job(dict(arguments or {}), progress_token, dict(meta or {})))
        # A dispatched task is traced (its span context travels in the job) and counted.
        metrics = self.conn.metrics
        with create_span(tool, task_id, PRIORITY_NAMES[priority]) as carrier:
            # A new task is a trace of its own: a context copied from another task (a re-run's)
            # is dropped, and this create span's stored instead.
            job_meta = {k: v for k, v in (meta or {}).items() if k != META_KEY}
            if carrier:
                job_meta[META_KEY] = carrier
            try:
                record = await self._write(write, Job(dict(arguments or {}), progress_token, job_meta))
            except QuotaExceeded as e:
                metrics.quota_refused(tool, e.reason)
                raise
        metrics.task_created(tool, priority)
        return record

    async def _write(self, w: _Write, job: Job) -> TaskRecord:
        task_id, tool, owner, session, priority = w.task_id, w.tool, w.owner, w.session, w.priority
        limits = self.conn.limits
        shard = self.conn.keys.shard_of(task_id)
        ttl = limits.clamp_ttl(w.ttl_ms)
        try:
            job_json = job.to_json()
        except (TypeError, ValueError) as e:
            raise NotSerializable(f"Tool arguments are not JSON-serializable: {e}") from e
        entry: list[str | int] = ["id", task_id, "r", 1, "a", 1, "ttl", ttl, "job", job_json]
        record: list[str | int] = [
            "id",
            task_id,
            "st",
            "working",
            "ttl",
            ttl,
            "r",
            1,
            "a",
            1,
            "job",
            job_json,
        ]
        for field, value in (("tool", tool), ("own", owner), ("ses", session)):
            if value is not None:
                entry += [field, value]
                record += [field, value]
        if priority != 1:
            record += ["pl", priority]
        quota_owner = owner_key(owner, session)
        quota = self.quotas.spec(quota_owner)
        if quota:
            record += ["qo", quota_owner or ""]
        stream = shard.streams[priority]
        dispatch: list[str | int | bytes] = [*entry]
        mode, job_key, queue_key = ("1" if w.dispatch else "0"), stream, stream
        if w.dispatch and self.keyed is not None:
            keyed = self.keyed.job_for(task_id, now_ms())
            mode, job_key, queue_key = "k", keyed.job_key, keyed.queue_key
            dispatch = [keyed.payload]
        keys = [shard.task(task_id), job_key, queue_key, *self.quotas.keys(shard, quota_owner)]
        refresh = "0"
        index_ttl = limits.max_ttl_ms + limits.grace_ms + INDEX_REFRESH_MS
        index = w.index
        if index is _UNSET:
            index = [ListScope(owner=owner)] if owner is not None else []
            index = index or ([ListScope(session=session)] if session is not None else [])
        index_keys = [scope.key(shard) for scope in index]
        keys += index_keys
        if any([self._index_needs_expiry(key) for key in index_keys]):
            refresh = "1"
        created, entry_id = await self.conn.run(
            self.conn.scripts.create,
            keys,
            [
                task_id,
                ttl + limits.grace_ms,
                quota if w.dispatch else "",
                mode,
                "1" if w.given else "0",
                refresh,
                index_ttl,
                len(dispatch),
                *dispatch,
                *record,
            ],
            task_id=task_id,
            durable=True,
        )
        return TaskRecord(
            task_id=task_id,
            status=TaskStatus.WORKING,
            created_at_ms=int(created),
            updated_at_ms=int(created),
            ttl_ms=ttl,
            tool=tool,
            owner=owner,
            session=session,
            job=job,
            entry_id=_text(entry_id) or None,
        )

    def _index_needs_expiry(self, key: str) -> bool:
        last = self._index_expiry_set.get(key)
        now = time.monotonic()
        if last is not None and now - last < INDEX_REFRESH_MS / 1000:
            return False
        if len(self._index_expiry_set) > 100_000:
            self._index_expiry_set.clear()
        self._index_expiry_set[key] = now
        return True

    async def get(self, task_id: str) -> TaskRecord | None:
        if not is_valid_task_id(task_id):
            return None
        raw: dict[bytes, bytes] = await self.conn.call("hgetall", self.conn.keys.task(task_id))
        return TaskRecord.from_hash(raw) if raw else None

    async def update(
        self,
        task_id: str,
        *,
        status: TaskStatus | str | None = None,
        message: str | None = _UNSET,
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        fence: int | None = None,
    ) -> TaskStatus:
        """Apply one change atomically; returns the status after it.

        Raises TaskNotFound, TaskIsTerminal, InvalidTransition, or LeaseLost when ``fence`` (a
        run number) is no longer the task's run.
        """
        if not is_valid_task_id(task_id):
            raise InvalidTaskId(task_id)
        new_status = TaskStatus(status) if status is not None else None
        shard = self.conn.keys.shard_of(task_id)
        text: str = message if isinstance(message, str) else ""
        has_message = message is not _UNSET and message is not None
        try:
            after = await self.conn.run(
                self.conn.scripts.update,
                [shard.task(task_id), *shard.streams],
                [
                    task_id,
                    new_status.value if new_status else "",
                    "" if fence is None else fence,
                    now_ms(),
                    shard.channel,
                    GROUP,
                    "1" if has_message else "0",
                    text,
                    to_json(dict(result), "Task result") if result is not None else "",
                    to_json(dict(error), "Task error") if error is not None else "",
                    self.conn.limits.event_outcome_bytes,
                ],
                task_id=task_id,
            )
        except InvalidTransition as e:
            requested = new_status.value if new_status else "an update"
            cls = TaskIsTerminal if isinstance(e, TaskIsTerminal) else InvalidTransition
            raise cls(task_id, e.current, requested) from None
        return TaskStatus(_text(after))

    async def cancel(
        self, task_id: str, message: str = "Cancelled", *, tool: str | None = None
    ) -> TaskStatus:
        """Cancel an unfinished task; a cancel that lands first beats any completion.

        Returns the status the task had. Raises TaskNotFound, or TaskIsTerminal if it finished.
        ``tool``: the task's tool, when the caller read the task (the label it is counted under).
        """
        if not is_valid_task_id(task_id):
            raise TaskNotFound(task_id)
        shard = self.conn.keys.shard_of(task_id)
        try:
            before, quota_owner = await self.conn.run(
                self.conn.scripts.cancel,
                [shard.task(task_id), *shard.streams],
                [task_id, message, now_ms(), shard.channel, GROUP],
                task_id=task_id,
            )
        except TaskIsTerminal as e:
            raise TaskIsTerminal(task_id, e.current, "cancelled") from None
        self.conn.metrics.task_cancelled(tool)
        if _text(quota_owner):
            await self.quotas.release(shard, task_id, _text(quota_owner))
        return TaskStatus(_text(before))

    async def report_progress(self, task_id: str, progress: Progress) -> bool:
        """Store a running task's progress snapshot and publish it (one script, no status check:
        progress is never shown for a finished task). False when the task no longer exists."""
        shard = self.conn.keys.shard_of(task_id)
        data = progress.to_json()
        stored = await self.conn.run(
            self.conn.scripts.progress,
            [shard.task(task_id)],
            [
                task_id,
                to_json(data, "Progress"),
                shard.channel,
                encode_event(task_id, {"k": "progress", "p": data}),
            ],
            task_id=task_id,
        )
        return bool(stored)

    async def answer(self, task_id: str, answers: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Deliver the client's answers to input requests, by request key; returns the keys that
        answered an outstanding request (unknown and already answered keys are ignored).

        An answer is stored as a JSON-RPC response would carry it: ``{"result": ...}`` or
        ``{"error": {...}}``. Raises TaskNotFound for an unknown task.
        """
        if not is_valid_task_id(task_id):
            raise TaskNotFound(task_id)
        if not answers:
            return []
        shard = self.conn.keys.shard_of(task_id)
        pairs: list[str] = []
        for key, answer in answers.items():
            pairs += [key, to_json(dict(answer), "Input answer")]
        accepted: list[Any] = await self.conn.run(
            self.conn.scripts.answer_input,
            [shard.task(task_id)],
            [task_id, now_ms(), shard.channel, *pairs],
            task_id=task_id,
        )
        return [_text(key) for key in accepted]

    async def request_input(
        self, task_id: str, key: str, request: Mapping[str, Any], *, fence: int | None = None
    ) -> None:
        """Store an input request (``{method, params}``) under ``key``; the task goes
        input_required. Raises TaskNotFound, TaskIsTerminal, or LeaseLost past the ``fence``."""
        if not is_valid_task_id(task_id):
            raise InvalidTaskId(task_id)
        shard = self.conn.keys.shard_of(task_id)
        await self.conn.run(
            self.conn.scripts.request_input,
            [shard.task(task_id)],
            [
                task_id,
                "" if fence is None else fence,
                key,
                to_json(dict(request), "Input request"),
                now_ms(),
                shard.channel,
            ],
            task_id=task_id,
        )

    async def rerun(self, task_id: str) -> TaskRecord:
        """A new task that runs a finished task's tool again: same arguments, owner, session,
        progress token, priority and TTL; its job meta names the task it re-runs (``rerun_of``).

        The finished task stays as it ended (a terminal status never changes): a client that holds
        its id still sees it failed, and finds the new task where it lists its tasks (the same
        owner's or session's listing). Raises TaskNotFound, or InvalidTransition for a task that
        has not finished.
        """
        old = await self.get(task_id)
        if old is None:
            raise TaskNotFound(task_id)
        if not old.is_terminal:
            raise InvalidTransition(task_id, old.status.value, "a re-run")
        return await self.create(
            ttl_ms=old.ttl_ms,
            owner=old.owner,
            session=old.session,
            tool=old.tool,
            arguments=old.arguments,
            progress_token=old.progress_token,
            meta={**old.meta, "rerun_of": task_id},
            priority=old.priority,
            dispatch=True,
        )

    async def delete(self, task_id: str) -> bool:
        if not is_valid_task_id(task_id):
            return False
        shard = self.conn.keys.shard_of(task_id)
        owner, session = await self.conn.call("hmget", shard.task(task_id), "own", "ses")
        indexes = [shard.all_index]
        indexes += [shard.owner_index(_text(owner))] if owner else []
        indexes += [shard.session_index(_text(session))] if session else []
        deleted = await self.conn.run(
            self.conn.scripts.delete,
            [shard.task(task_id), *shard.streams, shard.inbox(task_id), shard.delayed, *indexes],
            [task_id, GROUP],
            task_id=task_id,
        )
        return bool(deleted)
