"""The 2025 wire's input requests: how a worker's elicitation or sampling reaches the client.

A worker stores each request on the task under a key, as ``{method, params}``. On this wire the
server sends it to the client as a JSON-RPC request whose id names the task and the key, so that
whichever replica the client reaches can deliver it (again, after a reconnect) and route the
client's reply back to the task by the id alone.
"""

from __future__ import annotations

from typing import Any

from mcp.types import ClientCapabilities

from mcp_tasks_redis.mcp_v1.convert import related_task_meta

# The client capability each kind of input request needs.
INPUT_KINDS = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling"}

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


def jsonrpc_request(task_id: str, key: str, request: dict[str, Any]) -> dict[str, Any]:
    """One stored input request as the JSON-RPC request the client receives."""
    params: dict[str, Any] = dict(request.get("params") or {})
    params["_meta"] = {**(params.get("_meta") or {}), **related_task_meta(task_id)}
    return {
        "jsonrpc": "2.0",
        "id": input_request_id(task_id, key),
        "method": request["method"],
        "params": params,
    }


def input_capabilities(capabilities: ClientCapabilities | None) -> list[str]:
    """The kinds of input request a client can answer (stored with its tasks: a worker asks only
    for what the client that made the task declared, and sessions get only what they can answer)."""
    if capabilities is None:
        return []
    return [name for name in ("elicitation", "sampling") if getattr(capabilities, name) is not None]
