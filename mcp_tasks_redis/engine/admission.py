"""What a server decides when it accepts a task call: its priority level and the policy facts
its job carries to the workers (both wires use this, so both decide alike)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.policy import CallBounds, Policy, priority_level
from mcp_tasks_redis.engine.registry import ToolSpec


@dataclass(frozen=True)
class Admission:
    """How one task call is dispatched."""

    priority: int
    meta: dict[str, Any]


def admit(spec: ToolSpec, limits: TaskLimits, call_meta: Mapping[str, Any] | None) -> Admission:
    """The level and job facts of a task call; PolicyError when its ``_meta`` asks for an
    unknown priority (a call may lower its priority, or raise it up to the server's bound)."""
    policy: Policy = spec.policy.resolved(limits.default_policy())
    bounds = CallBounds(highest_priority=limits.call_priority_max)  # type: ignore[arg-type]
    priority = bounds.priority_for(dict(call_meta or {}), policy.priority or "normal")
    attempts = policy.retry.attempts if policy.retry is not None else limits.max_attempts
    return Admission(priority_level(priority), {"attempts": attempts})
