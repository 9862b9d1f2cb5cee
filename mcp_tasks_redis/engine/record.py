"""The task record: what Redis holds about one task, decoded into a typed value.

The record is protocol-neutral. The wire adapters turn it into the `Task` shape of whichever MCP
generation they serve (``ttl`` vs ``ttlMs``, ``isError`` meaning failed or completed, ...).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


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


class Progress(BaseModel):
    """The last progress a tool reported: absolute ``progress`` out of ``total`` (percent by default)."""

    model_config = ConfigDict(frozen=True)

    progress: float
    total: float | None = None
    message: str | None = None


class TaskRecord(BaseModel):
    """One task as stored in its Redis hash."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    status: TaskStatus
    status_message: str | None = None
    created_at_ms: int
    updated_at_ms: int
    ttl_ms: int
    poll_interval_ms: int
    expires_at_ms: int
    owner: str | None = None
    session: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    progress_token: str | int | None = None
    meta: dict[str, Any] | None = None
    attempt: int = 0
    max_attempts: int = 1
    lease_owner: str | None = None
    lease_until_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    progress: Progress | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def created_at(self) -> datetime:
        return _datetime(self.created_at_ms)

    @property
    def updated_at(self) -> datetime:
        return _datetime(self.updated_at_ms)

    @classmethod
    def from_redis(cls, flat: list[bytes] | list[str]) -> TaskRecord:
        """Decode the flat ``[field, value, ...]`` list that HGETALL and the scripts return."""
        raw: dict[str, str] = {}
        for i in range(0, len(flat), 2):
            key, value = flat[i], flat[i + 1]
            raw[key.decode() if isinstance(key, bytes) else key] = (
                value.decode() if isinstance(value, bytes) else value
            )
        return cls(
            task_id=raw["id"],
            status=TaskStatus(raw["status"]),
            status_message=raw.get("msg"),
            created_at_ms=int(raw["created"]),
            updated_at_ms=int(raw["updated"]),
            ttl_ms=int(raw["ttl"]),
            poll_interval_ms=int(raw["poll"]),
            expires_at_ms=int(raw["expires"]),
            owner=raw.get("owner") or None,
            session=raw.get("session") or None,
            tool=raw.get("tool") or None,
            arguments=_json(raw.get("args")),
            progress_token=_json(raw.get("ptoken")),
            meta=_json(raw.get("meta")),
            attempt=int(raw.get("attempt", "0")),
            max_attempts=int(raw.get("max_attempts", "1")),
            lease_owner=raw.get("lease_owner") or None,
            lease_until_ms=int(raw["lease_until"]) if raw.get("lease_until") else None,
            result=_json(raw.get("result")),
            error=_json(raw.get("error")),
            progress=Progress.model_validate_json(raw["progress"]) if raw.get("progress") else None,
        )


def _json(value: str | None) -> Any:
    return None if value is None or value == "" else json.loads(value)


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
