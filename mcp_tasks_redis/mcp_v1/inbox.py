"""The 2025 wire's queued messages: how an input request from a worker reaches the client.

On this wire the server delivers a task's requests (elicitation, sampling) on the client's
`tasks/result` stream. A worker stores each as a queued JSON-RPC request in the task's inbox; its
id names the task and the input key, so the client's reply can be routed back by any replica.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mcp_tasks_redis.mcp_v1.convert import related_task_meta

_PREFIX = "task-"


def input_request_id(task_id: str, key: str) -> str:
    """Never numeric: the SDK turns numeric-string ids into ints when it routes responses."""
    return f"{_PREFIX}{task_id}-{key}"


def parse_input_request_id(request_id: object) -> tuple[str, str] | None:
    """``(task_id, key)`` for an id made by `input_request_id` (or by the SDK's task context)."""
    if not isinstance(request_id, str) or not request_id.startswith(_PREFIX):
        return None
    task_id, sep, key = request_id[len(_PREFIX):].rpartition("-")
    if not sep or not task_id or not key:
        return None
    return task_id, key


def queued_input_request(task_id: str, key: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The inbox entry for one input request, in `RedisTaskMessageQueue`'s JSON layout."""
    given: dict[str, Any] = params.get("_meta") or {}
    meta = {**given, **related_task_meta(task_id)}
    request_id = input_request_id(task_id, key)
    return {
        "type": "request",
        "message": {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}},
        "timestamp": datetime.now(UTC).isoformat(),
        "original_request_id": request_id,
    }
