"""What the extension's handlers share: engine, registry, limits, and the errors they answer.

One `TasksState` per extension. Every handler reads and writes Redis only, so any replica built
over the same Redis answers for any task.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.mcp_v2.identity import current_owner, may_access

if TYPE_CHECKING:
    from mcp_tasks_redis.mcp_v2.legacy_relay import LegacyRelays

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class TasksState:
    engine: TaskEngine
    registry: ToolRegistry
    max_argument_bytes: int = 1_000_000
    progress_min_interval: float = 0.1
    # What this process pushes to handshake-era connections (legacy.py makes it on first use).
    legacy_relays: LegacyRelays | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.engine.metrics.declare_tools(self.registry.names(), "server")

    @property
    def poll_interval_ms(self) -> int:
        return self.engine.limits.poll_interval_ms

    async def task_for_caller(self, task_id: str) -> TaskRecord:
        """The task, if it exists and the caller may see it; else the one -32602 for both (an
        unknown id and another owner's id must be indistinguishable)."""
        record = await self.engine.tasks.get(task_id)
        if record is None or not may_access(record, current_owner()):
            raise invalid_params(f"Failed to retrieve task: Task not found ({task_id[:128]})")
        return record


def invalid_params(message: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=message)


def reporting_redis_outages(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Redis out of reach is a JSON-RPC internal error (-32603) that says so; left to the SDK, any
    unexpected exception becomes an anonymous "Internal server error"."""

    @functools.wraps(handler)
    async def handle(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await handler(*args, **kwargs)
        except RedisUnavailable as e:
            raise MCPError(code=INTERNAL_ERROR, message=str(e)) from None

    return handle


def dump(value: Any) -> Any:
    """A model (or anything else) as the JSON the client sent."""
    dumper = getattr(value, "model_dump", None)
    return dumper(mode="json", by_alias=True, exclude_none=True) if callable(dumper) else value
