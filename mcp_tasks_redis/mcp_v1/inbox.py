"""The 2025 wire's input requests: how a worker's elicitation or sampling reaches the client.

On this wire the server delivers a task's requests on the client's `tasks/result` stream. A
worker stores each on the task as the JSON-RPC request to send; its id names the task and the
input key, so whichever replica the client reaches can deliver it (again, after a reconnect) and
route the client's reply back to the task's reply slot.
"""

from __future__ import annotations

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
    task_id, sep, key = request_id[len(_PREFIX) :].rpartition("-")
    if not sep or not task_id or not key:
        return None
    return task_id, key


def input_request(task_id: str, key: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One input request as the JSON-RPC request the client receives on `tasks/result`."""
    given: dict[str, Any] = params.get("_meta") or {}
    meta = {**given, **related_task_meta(task_id)}
    return {
        "jsonrpc": "2.0",
        "id": input_request_id(task_id, key),
        "method": method,
        "params": {**params, "_meta": meta},
    }
