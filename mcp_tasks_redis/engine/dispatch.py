"""Job delivery through arq, kept behind this one module (DESIGN decision 5).

A job carries only the task id (the arguments live in the task record) and is serialized as
JSON, never pickle. The create script writes the job in arq's own layout in the same atomic step
as the task record, so a task can never exist without its job or the other way round; workers
run arq's `Worker`, woken through pub/sub instead of waiting out arq's poll delay.
"""

from __future__ import annotations

import json
from typing import Any

# arq's fixed key layout (arq/constants.py); arq has no key prefix option.
ARQ_JOB_PREFIX = "arq:job:"
ARQ_IN_PROGRESS_PREFIX = "arq:in-progress:"
ARQ_RETRY_PREFIX = "arq:retry:"
ARQ_RESULT_PREFIX = "arq:result:"

# The one function every job names; the worker resolves the tool from the task record.
JOB_FUNCTION = "mcp_tasks_redis.run_task"


def in_progress_lock_ms(max_ttl_ms: int) -> int:
    """How long arq's in-progress lock on a picked-up job lasts. The worker sets arq's job timeout
    to the longest TTL (so that arq never kills a tool), and arq keeps the lock for the longest job
    timeout + 10 s; the reaper reads the lock's age from its remaining time to live."""
    return max_ttl_ms + 10_000


def job_payload(task_id: str) -> str:
    """The job as arq's worker expects it: ``{t, f, a, k, et}``, JSON-encoded."""
    return json.dumps({"t": None, "f": JOB_FUNCTION, "a": [task_id], "k": {}, "et": 0})


def serialize(data: dict[str, Any]) -> bytes:
    """arq `job_serializer`: JSON only. arq's results are not kept (keep_result=0)."""
    return json.dumps(data, default=str).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    """arq `job_deserializer`: JSON only, so nothing written to Redis can run code on a worker."""
    value: Any = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("arq job payload is not a JSON object")
    return value  # pyright: ignore[reportUnknownVariableType]
