"""The hook through which an alternative dispatcher receives its jobs from the create script.

The default dispatcher is the shards' Redis Streams (engine/streams.py). A job queue that polls a
sorted set of job ids and keeps each job's payload in a string key of its own (arq is one) plugs
in here: it says, for a new task, which two keys to write and what payload to store, and the
create script writes them together with the record (``SET ... PX`` and ``ZADD``), so that a task
still never exists without its job. The engine knows nothing of the queue's payload format; the
dispatcher's module does (``mcp_tasks_redis.arq_dispatch`` for arq).

Such a queue has no pending-entry list to serve as the lease: its worker claims the run on the
record instead (engine/runtime/claimed.py), which bumps the run number and so fences out any
earlier run of the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class KeyedJob:
    """What the create script writes for a keyed dispatcher: the payload under ``job_key`` with
    an expiry, and the task id as a member of ``queue_key`` scored by its creation time."""

    job_key: str
    queue_key: str
    payload: bytes


class KeyedDispatch(Protocol):
    """A dispatcher whose jobs are a string key plus a member of a sorted-set queue."""

    @property
    def name(self) -> str:
        """Its name in settings and logs (``arq``)."""
        ...

    def job_key(self, task_id: str) -> str:
        """The key of a task's job (kept alive by its worker's claim while the job may run)."""
        ...

    def job_for(self, task_id: str, created_ms: int) -> KeyedJob:
        """The keys and payload of a new task's job (``created_ms``: this process's clock)."""
        ...
