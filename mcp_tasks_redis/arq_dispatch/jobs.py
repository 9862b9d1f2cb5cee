"""The server side of the arq dispatcher: the arq job each new task gets, JSON only.

`ArqDispatch` is the engine's keyed dispatcher (engine/keyed.py) for arq: the create script
writes, with the task's record, what arq's own ``enqueue_job`` would write: the job under
``arq:job:<task id>`` (arq's payload ``{t, f, a, k, et}``, serialized here with JSON) and the task
id in the worker's queue, a sorted set scored by the time to run (now). The arq job id is the
task id, so arq's per-job keys never collide and nothing maps one id to the other.

arq serializes with pickle unless told otherwise; anyone who can write to Redis could then run
code on the workers. Every worker that runs our jobs must use `json_serializer` and
`json_deserializer` (``job_serializer`` / ``job_deserializer`` in its WorkerSettings).
"""

from __future__ import annotations

import json
from typing import Any

from arq.constants import job_key_prefix
from arq.jobs import serialize_job

from mcp_tasks_redis.engine.keyed import KeyedJob

FUNCTION_NAME = "mcp_tasks_redis.run_task"
"""The name our task function is registered under in arq (the ``f`` of every job we enqueue)."""


def queue_name_for(namespace: str) -> str:
    """The default arq queue of a namespace: one queue per deployment, like its streams."""
    return f"{namespace}:arq:queue"


def json_serializer(data: dict[str, Any]) -> bytes:
    """arq's ``job_serializer``: JSON. A value JSON cannot hold (arq stores exceptions in its job
    results) is written as its type and text, never pickled."""
    return json.dumps(data, separators=(",", ":"), default=_describe).encode()


def json_deserializer(raw: bytes) -> dict[str, Any]:
    """arq's ``job_deserializer``: JSON."""
    data: dict[str, Any] = json.loads(raw)
    return data


def _describe(value: object) -> dict[str, str]:
    return {"type": type(value).__name__, "text": str(value)}


class ArqDispatch:
    """New tasks' jobs go to an arq queue (``queue_name``) instead of the shards' streams."""

    name = "arq"

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name

    @classmethod
    def for_namespace(cls, namespace: str, queue_name: str | None = None) -> ArqDispatch:
        return cls(queue_name or queue_name_for(namespace))

    def job_key(self, task_id: str) -> str:
        return job_key_prefix + task_id

    def job_for(self, task_id: str, created_ms: int) -> KeyedJob:
        # arq's own serialize_job builds the payload, so its format is arq's whatever the version.
        payload = serialize_job(FUNCTION_NAME, (task_id,), {}, None, created_ms, serializer=json_serializer)
        return KeyedJob(job_key=self.job_key(task_id), queue_key=self.queue_name, payload=payload)
