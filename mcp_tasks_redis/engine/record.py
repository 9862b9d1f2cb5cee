"""The task record: what Redis holds about one task, decoded into a typed value.

The record is protocol-neutral. The wire adapters turn it into the `Task` shape of whichever MCP
generation they serve (``ttl`` vs ``ttlMs``, ``isError`` meaning failed or completed, ...).

Field names in the Redis hash are short (they are repeated in every record):

========  ===================================================================================
``id``    task id
``st``    status
``msg``   status message written with the last status change
``c``     created (ms since the epoch)
``u``     last status change (ms)
``ttl``   time to live (ms), from creation
``tool``  the tool's name
``own``   the owning principal (authenticated callers), ``ses`` the creating session
``job``   JSON: what a worker needs to run the tool (arguments, progress token, client facts)
``q``     the id of the task's entry in its shard's dispatch stream (empty while it waits to
          be dispatched again), ``pl`` its priority level when not normal (0 high, 2 low)
``r``     run number: bumped at every delivery after the first; fences stale workers
``a``     attempts counted (a hand-back on shutdown does not count)
``w``     keyed dispatchers only (arq): the worker whose run is current; ``hb`` set when that run
          was handed back (engine/scripts/claim.lua)
``res``   JSON: the tool's result (CallToolResult shape), ``err`` a JSON-RPC error object
``in``    JSON: outstanding input requests by key, ``ans`` the answers by key
``p``     JSON: the latest progress snapshot ``{v, t, m, at}``
``use``   JSON: the last run's resource use (queue wait, run time, attempts, thread CPU)
========  ===================================================================================

Progress is written to ``p`` only, never to the status fields: a worker's progress write that
races a cancel can land on a cancelled task without changing what any reader sees of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mcp_tasks_redis.engine.replies import as_text as _text


class TaskStatus(StrEnum):
    WORKING = "working"
    INPUT_REQUIRED = "input_required"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Progress:
    """The last progress a tool reported: absolute ``progress`` out of ``total`` (percent by default)."""

    progress: float | None = None
    total: float | None = None
    message: str | None = None
    at_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"v": self.progress, "t": self.total, "m": self.message, "at": self.at_ms}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        return cls(data.get("v"), data.get("t"), data.get("m"), int(data.get("at") or 0))


@dataclass(frozen=True, slots=True)
class Job:
    """What a worker needs to run a task's tool; written once, at creation."""

    arguments: dict[str, Any] = field(default_factory=dict[str, Any])
    progress_token: str | int | None = None
    # Protocol facts the worker must respect without importing a wire adapter: the client's
    # input capabilities ("elicitation", "sampling"), the wire, trace context, policy values.
    meta: dict[str, Any] = field(default_factory=dict[str, Any])

    def to_json(self) -> str:
        data: dict[str, Any] = {"args": self.arguments}
        if self.progress_token is not None:
            data["pt"] = self.progress_token
        if self.meta:
            data["meta"] = self.meta
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> Job:
        if not raw:
            return cls()
        data: dict[str, Any] = json.loads(raw)
        return cls(data.get("args") or {}, data.get("pt"), data.get("meta") or {})


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task as stored in its Redis hash (see the module docstring for the fields)."""

    task_id: str
    status: TaskStatus
    created_at_ms: int
    updated_at_ms: int
    ttl_ms: int
    stored_message: str | None = None
    tool: str | None = None
    owner: str | None = None
    session: str | None = None
    job: Job = field(default_factory=Job)
    entry_id: str | None = None
    priority: int = 1
    run: int = 1
    attempt: int = 1
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])
    answers: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])
    progress: Progress | None = None
    usage: dict[str, Any] | None = None

    # -- what readers see ------------------------------------------------------------------------
    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def status_message(self) -> str | None:
        """The status change's message, or a newer progress message while the task runs."""
        progress = self.progress
        if not self.is_terminal and progress is not None and progress.message is not None:
            return progress.message if progress.at_ms >= self.updated_at_ms else self.stored_message
        return self.stored_message

    @property
    def last_updated_ms(self) -> int:
        if not self.is_terminal and self.progress is not None and self.progress.message is not None:
            return max(self.updated_at_ms, self.progress.at_ms)
        return self.updated_at_ms

    @property
    def created_at(self) -> datetime:
        return _datetime(self.created_at_ms)

    @property
    def updated_at(self) -> datetime:
        return _datetime(max(self.last_updated_ms, self.created_at_ms))

    @property
    def expires_at_ms(self) -> int:
        return self.created_at_ms + self.ttl_ms

    @property
    def arguments(self) -> dict[str, Any]:
        return self.job.arguments

    @property
    def progress_token(self) -> str | int | None:
        return self.job.progress_token

    @property
    def meta(self) -> dict[str, Any]:
        return self.job.meta

    @property
    def is_error_result(self) -> bool:
        """The tool answered with ``isError: true`` (the 2025 wire calls such a task failed)."""
        return self.result is not None and self.result.get("isError") is True

    # -- decoding ------------------------------------------------------------------------------
    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes] | dict[str, str]) -> TaskRecord | None:
        """Decode HGETALL's reply; None for a hash that is not (or no longer) a whole record."""
        h = {_text(k): _text(v) for k, v in raw.items()}
        if "st" not in h or "id" not in h:
            return None
        created = int(h.get("c") or 0)
        terminal = TaskStatus(h["st"]).is_terminal
        return cls(
            task_id=h["id"],
            status=TaskStatus(h["st"]),
            created_at_ms=created,
            updated_at_ms=int(h.get("u") or created),
            ttl_ms=int(h.get("ttl") or 0),
            stored_message=h.get("msg") or None,
            tool=h.get("tool") or None,
            owner=h.get("own") or None,
            session=h.get("ses") or None,
            job=Job.from_json(h.get("job")),
            entry_id=h.get("q") or None,
            priority=int(h.get("pl") or 1),
            run=int(h.get("r") or 1),
            attempt=int(h.get("a") or 1),
            result=_json(h.get("res")),
            error=_json(h.get("err")),
            input_requests={} if terminal else _prefixed(h, "in:", exclude="ans:"),
            answers=_prefixed(h, "ans:"),
            progress=Progress.from_json(json.loads(h["p"])) if h.get("p") else None,
            usage=_json(h.get("use")),
        )

    # -- applying an event to a cached record (waiters never re-read for what an event says) ----
    def with_event(self, event: dict[str, Any]) -> TaskRecord | None:
        """The record after ``event``; None when the event does not say enough (re-read)."""
        kind = event.get("k")
        if kind == "status":
            if event.get("big"):
                return None  # the outcome was too large to publish: read it from the record
            return replace(
                self,
                status=TaskStatus(event["st"]),
                stored_message=event.get("msg"),
                updated_at_ms=int(event.get("u") or self.updated_at_ms),
                result=event.get("res", self.result),
                error=event.get("err", self.error),
                input_requests={} if TaskStatus(event["st"]).is_terminal else self.input_requests,
            )
        if kind == "progress":
            return replace(self, progress=Progress.from_json(event.get("p") or {}))
        if kind == "input":
            requests = {**self.input_requests, event["key"]: event["req"]}
            return replace(
                self,
                status=TaskStatus.INPUT_REQUIRED,
                input_requests=requests,
                updated_at_ms=int(event.get("u") or self.updated_at_ms),
            )
        if kind == "answered":
            replies: dict[str, dict[str, Any]] = event.get("replies") or {}
            requests = {k: v for k, v in self.input_requests.items() if k not in replies}
            status = TaskStatus(event.get("st") or self.status)
            return replace(
                self,
                status=status,
                input_requests=requests,
                answers={**self.answers, **replies},
                updated_at_ms=int(event.get("u") or self.updated_at_ms),
            )
        return None


def _prefixed(h: dict[str, str], prefix: str, exclude: str | None = None) -> dict[str, dict[str, Any]]:
    """The JSON values of the fields named ``{prefix}{key}``, by key; with ``exclude``, those
    whose key also has a field ``{exclude}{key}`` are left out (input requests answered)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in h.items():
        if name.startswith(prefix):
            key = name[len(prefix) :]
            if exclude is None or exclude + key not in h:
                out[key] = json.loads(value)
    return out


def _json(value: str | None) -> Any:
    return None if not value else json.loads(value)


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
